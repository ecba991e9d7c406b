/**
 * `knock-port run --trial SECONDS`: the gate is installed as usual and removed again when SECONDS
 * pass without `knock-port confirm`, like `netplan try` or a commit-confirm. This is the clock and
 * the confirmation; what "removed" means (the daemon uninstalls and exits) is the daemon's.
 */
import { NotInTrialError } from './errors.js';
import type { TrialHealth } from './protocol.js';

/** The longest trial `--trial` takes: long enough to knock from a second terminal, short enough to come back in. */
export const MAX_TRIAL_SECONDS = 3600;

export const NOT_IN_TRIAL = 'this daemon is not in a trial (it was started without --trial, or the trial was confirmed already): nothing to confirm';

export class Trial {
  private readonly deadline: number;
  private timer: NodeJS.Timeout | undefined;

  /** Starts the clock: `onExpiry` runs once, after `seconds`, unless confirm() or cancel() came first. */
  constructor(
    readonly seconds: number,
    onExpiry: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.deadline = now() + seconds * 1000;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      onExpiry();
    }, seconds * 1000);
  }

  /** Still waiting for a confirmation. */
  get pending(): boolean {
    return this.timer !== undefined;
  }

  /** Whole seconds until the gate is removed (0 once due). */
  secondsLeft(): number {
    return Math.max(0, Math.ceil((this.deadline - this.now()) / 1000));
  }

  /** The gate stays; returns the seconds that were left. Throws NotInTrialError when nothing waits. */
  confirm(): number {
    if (!this.pending) throw new NotInTrialError(NOT_IN_TRIAL);
    const left = this.secondsLeft();
    this.cancel();
    return left;
  }

  /** Stops the clock without a confirmation (the daemon stops). */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** What `health` shows while the trial waits; undefined once confirmed or over. */
  health(): TrialHealth | undefined {
    return this.pending ? { seconds: this.seconds, secondsLeft: this.secondsLeft() } : undefined;
  }
}
