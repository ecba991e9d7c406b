/**
 * Everything that outlives a config reload, in one place: a reload builds new inspectors, a new
 * firewall and listeners from the new config and keeps all of this, so a reload is never a
 * fresh budget, a forgotten lock or a replayable code. The used codes also outlive a restart
 * (saved in state_dir); the cookie secret does not (see freshCookieSecret).
 */
import { SecretLockout, lockoutPolicy, type LockEvent, type LockFactor } from '../auth/lockout.js';
import { PerMinuteLimiter } from '../auth/ratelimit.js';
import { TotpVerifier } from '../auth/totp.js';
import type { GlobalConfig } from '../config/types.js';
import type { Logger } from '../shared/log.js';
import { createSharedState, SharedLockoutStates, SharedSourceBudget, SharedUsedCodeStore, type SharedStateBuffers } from '../step1/shared-state.js';
import { SavedUsedCodes } from './used-codes-file.js';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomCookieSecret } from '../step1/cookie.js';

export interface LastingState {
  /**
   * Shared memory of the step-1 worker threads and step 2: per-source budgets, the
   * retransmission table, lockout counts and used one-time codes. Worker restarts keep it too.
   */
  readonly shared: SharedStateBuffers;
  /** Keys the step-1 SYN cookies (saved in state_dir). */
  readonly cookieSecret: Buffer;
  /** The used one-time codes (in `shared`), saved in state_dir. */
  readonly usedCodes: SavedUsedCodes;
  /** One verifier for both steps, on those used codes. */
  readonly totp: TotpVerifier;
  /** Wrong guesses per secret across all sources, for both steps (counts in `shared`). */
  readonly lockout: SecretLockout;
  /** Step-2 requests per source per minute. */
  readonly step2Limiter: PerMinuteLimiter;
}

export interface LastingStateHooks {
  logger: Logger;
  /** A secret was locked in this thread (step 2): log and count it. */
  onLock(event: LockEvent): void;
  onRefused(factor: LockFactor): void;
  /** Reports a degraded condition for `health`. */
  onProblem(problem: string): void;
}

/** Loads (or creates) the saved parts from state_dir and sets up the rest from the first config. */
export async function openLastingState(global: GlobalConfig, hooks: LastingStateHooks): Promise<LastingState> {
  const cookieSecret = await freshCookieSecret(global.stateDir);
  const shared = createSharedState(global.rateLimitPerMinute);
  const usedCodes = await SavedUsedCodes.open({
    stateDir: global.stateDir,
    logger: hooks.logger,
    store: new SharedUsedCodeStore(shared),
    onFull: () => hooks.onProblem('one-time codes refused: the used-code cache is full (see the error log)'),
  });
  // The same counts as the step-1 workers', in shared memory: one budget per secret for both steps.
  const lockout = new SecretLockout(lockoutPolicy(global), {
    states: new SharedLockoutStates(shared),
    onLock: (event) => hooks.onLock(event),
    onRefused: (factor) => hooks.onRefused(factor),
  });
  return {
    shared,
    cookieSecret,
    usedCodes,
    totp: new TotpVerifier(1, undefined, usedCodes.codes),
    lockout,
    step2Limiter: new PerMinuteLimiter(global.rateLimitPerMinute),
  };
}

/** A reload's limits and lockout policy, applied to the state it keeps (the counts carry over). */
export function applyReloadedLimits(state: LastingState, global: GlobalConfig): void {
  state.lockout.setPolicy(lockoutPolicy(global));
  SharedSourceBudget.setLimit(state.shared, global.rateLimitPerMinute);
  state.step2Limiter.setLimit(global.rateLimitPerMinute);
}

/**
 * A new step-1 cookie secret for every start, never a saved one. A client whose knock got no
 * answer keeps retransmitting it (its kernel does, for minutes, after curl gave up); a new
 * daemon does not know what its predecessor decided about that segment, so with the old secret
 * a retransmitted knock would open a window again, after a revoke too. A knock in flight across a
 * restart fails instead, and the client knocks again. The file earlier versions kept is removed.
 */
async function freshCookieSecret(stateDir: string): Promise<Buffer> {
  await rm(join(stateDir, 'step1-cookie.key'), { force: true });
  return randomCookieSecret();
}
