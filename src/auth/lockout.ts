/**
 * Failure budgets per secret, counted across every source address. Per-source limits alone let
 * an attacker with many addresses guess a 6-digit code quickly (10,000 addresses at 60 tries a
 * minute each find a ±1-step TOTP code in about a minute), so wrong guesses are also counted
 * against what they guess at, and that secret is locked for a while after a burst of them:
 *
 * - a wrong one-time code (step-1 `otp`, step-2 `token`) sent with a user's right key counts
 *   against that user's code for that step, and locks only it (other users are unaffected);
 * - a wrong key counts against the app (per step), and locks that app's step.
 *
 * While locked, attempts are refused without being checked, so a right code or key is refused
 * exactly like a wrong one: the lock is no oracle. The attempts are not counted either, and a
 * lock ends on time whatever happens meanwhile.
 */
import { BoundedMap } from '../shared/bounded-map.js';
import type { GlobalConfig } from '../config/types.js';

export const LOCK_FACTORS = ['step1-key', 'step1-otp', 'step2-key', 'step2-token'] as const;
/** What a lock covers: an app's keys of one step, or one user's one-time code of one step. */
export type LockFactor = (typeof LOCK_FACTORS)[number];

export interface LockoutPolicy {
  /** Wrong one-time codes of one user (per step) within `windowSeconds` that lock that user's code; 0: never. */
  userFailures: number;
  /** Wrong keys for one app (per step) within `windowSeconds` that lock the app's step; 0: never. */
  appFailures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export interface LockEvent {
  factor: LockFactor;
  app: string;
  /** For a one-time code: whose. */
  user?: string;
  failures: number;
  windowSeconds: number;
  lockSeconds: number;
}

export interface LockoutOptions {
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** A factor was just locked (log it, count it). */
  onLock?: (event: LockEvent) => void;
  /** An attempt was refused because its factor is locked. */
  onRefused?: (factor: LockFactor) => void;
  /**
   * Where the counts live: default in this thread's memory (exact failure times); the daemon,
   * `replay` and `watch` pass the step-1 lockout table (step1/state/lockout-table.ts), in shared
   * memory in the daemon so that every step-1 worker thread and step 2 count the same budgets.
   */
  states?: LockoutStates;
}

/**
 * Failure counts and locks by factor, app and (for a one-time code) user. `fail` counts one
 * failure at `now` and returns true when it completes a burst (the factor is then locked until
 * `now + lockMs`); failures while locked are not counted. The parts come apart, not joined into
 * one key, so that the daemon's check of a knock builds no string.
 */
export interface LockoutStates {
  isLocked(factor: LockFactor, app: string, user: string | undefined, now: number): boolean;
  fail(factor: LockFactor, app: string, user: string | undefined, now: number, threshold: number, windowMs: number, lockMs: number): boolean;
}

interface FactorState {
  /** Times of the failures still inside the window, oldest first. */
  failures: number[];
  lockedUntil: number;
}

/** Apps × users × factors of any sane config fit; only names from the config are ever keys. */
const MAX_FACTORS = 100_000;

export class SecretLockout {
  private readonly states: LockoutStates;
  private readonly now: () => number;

  constructor(
    private policy: LockoutPolicy,
    private readonly options: LockoutOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.states = options.states ?? new MemoryLockoutStates();
  }

  /** A reloaded config's policy; counts and locks in progress are kept. */
  setPolicy(policy: LockoutPolicy): void {
    this.policy = policy;
  }

  /**
   * True (and counted as a refusal) while the factor is locked: the caller must then refuse the
   * attempt without checking the secret. `user` only for one-time codes.
   */
  isLocked(factor: LockFactor, app: string, user?: string): boolean {
    if (!this.states.isLocked(factor, app, user, this.now())) return false;
    this.options.onRefused?.(factor);
    return true;
  }

  /** Counts a wrong guess at the factor; locks it when that completes a burst. */
  fail(factor: LockFactor, app: string, user?: string): void {
    const threshold = user === undefined ? this.policy.appFailures : this.policy.userFailures;
    if (threshold <= 0) return;
    const { windowSeconds, lockSeconds } = this.policy;
    if (!this.states.fail(factor, app, user, this.now(), threshold, windowSeconds * 1000, lockSeconds * 1000)) return;
    this.options.onLock?.({ factor, app, ...(user === undefined ? {} : { user }), failures: threshold, windowSeconds, lockSeconds });
  }
}

/** The counts in this thread's memory: the exact time of every failure still in the window. */
export class MemoryLockoutStates implements LockoutStates {
  private readonly states = new BoundedMap<string, FactorState>(MAX_FACTORS);

  isLocked(factor: LockFactor, app: string, user: string | undefined, now: number): boolean {
    const state = this.states.get(keyOf(factor, app, user));
    return state !== undefined && state.lockedUntil > now;
  }

  fail(factor: LockFactor, app: string, user: string | undefined, now: number, threshold: number, windowMs: number, lockMs: number): boolean {
    const key = keyOf(factor, app, user);
    let state = this.states.get(key);
    if (state === undefined) {
      state = { failures: [], lockedUntil: 0 };
      this.states.set(key, state);
    }
    if (state.lockedUntil > now) return false;
    const windowStart = now - windowMs;
    while (state.failures.length > 0 && state.failures[0]! <= windowStart) state.failures.shift();
    state.failures.push(now);
    if (state.failures.length < threshold) return false;
    state.failures = [];
    state.lockedUntil = now + lockMs;
    return true;
  }
}

function keyOf(factor: LockFactor, app: string, user: string | undefined): string {
  // App and user names cannot contain a space (see config/schema.ts), so keys cannot collide.
  return user === undefined ? `${factor} ${app}` : `${factor} ${app} ${user}`;
}

/** The policy a config asks for. */
export function lockoutPolicy(
  global: Pick<GlobalConfig, 'lockoutUserFailures' | 'lockoutAppFailures' | 'lockoutWindowSeconds' | 'lockoutSeconds'>,
): LockoutPolicy {
  return {
    userFailures: global.lockoutUserFailures,
    appFailures: global.lockoutAppFailures,
    windowSeconds: global.lockoutWindowSeconds,
    lockSeconds: global.lockoutSeconds,
  };
}
