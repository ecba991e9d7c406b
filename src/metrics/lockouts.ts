/**
 * Lockout events, from the main thread's lockout (step 2) and the step-1 workers alike: counted
 * and logged with names and counts only, never what was sent.
 */
import type { LockEvent, LockFactor } from '../auth/lockout.js';
import type { Logger } from '../shared/log.js';
import type { DaemonMetrics } from './daemon-metrics.js';

type LockoutMetrics = Pick<DaemonMetrics, 'lockouts' | 'lockoutRefusals'>;

/** A secret locked after a burst of wrong guesses. */
export function recordLock(logger: Pick<Logger, 'warn'>, metrics: LockoutMetrics, event: LockEvent): void {
  metrics.lockouts.inc({ factor: event.factor });
  logger.warn(event, lockMessage(event));
}

/** Attempts refused unchecked because their secret was locked, by factor. */
export function countRefusals(metrics: LockoutMetrics, refusals: Partial<Record<LockFactor, number>>): void {
  for (const [factor, count] of Object.entries(refusals)) metrics.lockoutRefusals.inc({ factor }, count);
}

function lockMessage(event: LockEvent): string {
  if (event.user === undefined) {
    const attempts = event.factor.startsWith('step1') ? 'step-1 knock' : 'step-2 request';
    return `app locked after ${event.failures} wrong keys within ${event.windowSeconds} s: every ${attempts} for it is refused for ${event.lockSeconds} s (lockout_app_failures)`;
  }
  return `one-time code locked after ${event.failures} wrong codes with this user's right key within ${event.windowSeconds} s: refused for ${event.lockSeconds} s; someone else may hold the key (lockout_user_failures)`;
}
