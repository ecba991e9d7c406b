/**
 * The daemon's memory of degraded conditions for `health`: each is logged when first seen (or
 * seen again after a quiet spell) and reported while recent, so a transient condition an
 * attacker can provoke neither floods the log nor sticks until a restart.
 */
import type { Logger } from '../shared/log.js';

/** How long a degraded condition stays in the health report after it was last seen. */
export const PROBLEM_MEMORY_MS = 60_000;

export class ProblemMemory {
  /** Message → when it was last seen (ms since the epoch). */
  private readonly lastSeen = new Map<string, number>();

  constructor(
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a degraded condition; logs it unless it was already seen within the memory. */
  note(problem: string): void {
    const now = this.now();
    const last = this.lastSeen.get(problem);
    if (last === undefined || now - last > PROBLEM_MEMORY_MS) this.logger.warn(problem);
    this.lastSeen.set(problem, now);
  }

  /** The condition is over (e.g. a later self-heal worked): no longer reported. */
  clear(problem: string): void {
    this.lastSeen.delete(problem);
  }

  /** Conditions seen within the memory, in the order they were first noted. */
  recent(): string[] {
    const now = this.now();
    return [...this.lastSeen].filter(([, seen]) => now - seen <= PROBLEM_MEMORY_MS).map(([problem]) => problem);
  }
}
