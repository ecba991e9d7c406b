/**
 * One-time codes already accepted: a code of a secret is accepted once, whichever step, app or
 * user presents it. The daemon keeps one cache for its whole life (a config reload does not
 * touch it) and saves it in `state_dir` (daemon/used-codes-file.ts), so that neither a SIGHUP
 * nor a restart lets a sniffed `otp` or `token` work a second time inside its window.
 */
import { createHash } from 'node:crypto';

/** One accepted code: whose secret, which time step, and until when it could still be accepted. */
export interface UsedCode {
  /** A digest of the secret (never the secret itself): see `secretScope`. */
  scope: string;
  /** The TOTP time step of the code. */
  counter: number;
  /** Unix seconds after which the code is outside every verifier window and can be forgotten. */
  expiresAt: number;
}

/**
 * Bounded: each secret holds at most (2·window + 1) live entries for about 90 s, so the bound is
 * only reached by thousands of secrets in use at once. A full cache refuses new codes (fail
 * closed) rather than forget a used one.
 */
export const MAX_USED_CODES = 16_384;

export interface UsedCodesOptions {
  maxEntries?: number;
  /** Called after every accepted code (not one marked used from elsewhere), to save the cache and share it. */
  onChange?: (code: UsedCode) => void;
  /** Called when a code was refused because the cache is full. */
  onFull?: () => void;
  /**
   * Where the codes live: default in this thread's memory; the daemon passes one in shared
   * memory, so that a code claimed by one step-1 worker thread is used for every other one.
   */
  store?: UsedCodeStore;
}

/** Names a secret in the cache without storing it: 128 bits of SHA-256 over its decoded bytes. */
export function secretScope(secret: Buffer): string {
  return createHash('sha256').update('knock-port used code\0').update(secret).digest('hex').slice(0, 32);
}

/** What a claim did: the code is now used (`claimed`), was used already, or the cache is full. */
export type ClaimOutcome = 'claimed' | 'used' | 'full';

/**
 * The used codes themselves. `claim` is atomic: of two claims of one code at the same time,
 * from any thread, exactly one gets `claimed`.
 */
export interface UsedCodeStore {
  refuseThrough(counter: number): void;
  isUsed(scope: string, counter: number, nowSeconds: number): boolean;
  claim(code: UsedCode, nowSeconds: number, maxEntries: number): ClaimOutcome;
  restore(codes: readonly UsedCode[], nowSeconds: number, maxEntries: number): number;
  list(nowSeconds: number): UsedCode[];
  readonly size: number;
}

export class UsedCodes {
  private readonly store: UsedCodeStore;
  private readonly maxEntries: number;

  constructor(private readonly options: UsedCodesOptions = {}) {
    this.maxEntries = options.maxEntries ?? MAX_USED_CODES;
    this.store = options.store ?? new MemoryUsedCodeStore();
  }

  /**
   * Treats every code of time steps up to `counter` as used: for when the saved cache could not
   * be read, so that no code that may have been used before the restart works again.
   */
  refuseThrough(counter: number): void {
    this.store.refuseThrough(counter);
  }

  isUsed(scope: string, counter: number, nowSeconds: number): boolean {
    return this.store.isUsed(scope, counter, nowSeconds);
  }

  /** Records an accepted code; false (and the code must be refused) when it was used already or the cache is full. */
  add(code: UsedCode, nowSeconds: number): boolean {
    const outcome = this.store.claim(code, nowSeconds, this.maxEntries);
    if (outcome === 'full') this.options.onFull?.();
    if (outcome !== 'claimed') return false;
    this.options.onChange?.(code);
    return true;
  }

  /**
   * Marks a code accepted elsewhere (another gateway of the cluster) as used here, without
   * onChange; true when it was not already known. The cache being full is reported as for add.
   */
  markUsed(code: UsedCode, nowSeconds: number): boolean {
    const outcome = this.store.claim(code, nowSeconds, this.maxEntries);
    if (outcome === 'full') this.options.onFull?.();
    return outcome === 'claimed';
  }

  /** Restores saved codes (at start): expired ones are dropped, and at most `maxEntries` kept, latest expiry first. */
  restore(codes: readonly UsedCode[], nowSeconds: number): number {
    return this.store.restore(codes, nowSeconds, this.maxEntries);
  }

  /** The codes still live, for saving. */
  list(nowSeconds: number): UsedCode[] {
    return this.store.list(nowSeconds);
  }

  get size(): number {
    return this.store.size;
  }
}

/** The codes in this thread's memory. */
export class MemoryUsedCodeStore implements UsedCodeStore {
  private readonly codes = new Map<string, UsedCode>();
  /** Every counter up to this one counts as used, for every secret (see `refuseThrough`). */
  private refusedThrough = -Infinity;
  private nextPrune = 0;

  refuseThrough(counter: number): void {
    this.refusedThrough = Math.max(this.refusedThrough, counter);
  }

  isUsed(scope: string, counter: number, nowSeconds: number): boolean {
    if (counter <= this.refusedThrough) return true;
    const code = this.codes.get(key(scope, counter));
    return code !== undefined && code.expiresAt > nowSeconds;
  }

  claim(code: UsedCode, nowSeconds: number, maxEntries: number): ClaimOutcome {
    if (this.isUsed(code.scope, code.counter, nowSeconds)) return 'used';
    this.prune(nowSeconds, this.codes.size >= maxEntries);
    if (this.codes.size >= maxEntries) return 'full';
    this.codes.set(key(code.scope, code.counter), { ...code });
    return 'claimed';
  }

  restore(codes: readonly UsedCode[], nowSeconds: number, maxEntries: number): number {
    const live = codes.filter((code) => code.expiresAt > nowSeconds).sort((a, b) => b.expiresAt - a.expiresAt);
    for (const code of live) {
      if (this.codes.size >= maxEntries) break;
      this.codes.set(key(code.scope, code.counter), { ...code });
    }
    return this.codes.size;
  }

  list(nowSeconds: number): UsedCode[] {
    this.prune(nowSeconds, true);
    return [...this.codes.values()];
  }

  get size(): number {
    return this.codes.size;
  }

  /** Forgets expired codes: at most once a second unless `force` (a full cache, or a save). */
  private prune(nowSeconds: number, force: boolean): void {
    if (!force && nowSeconds < this.nextPrune) return;
    this.nextPrune = nowSeconds + 1;
    for (const [name, code] of this.codes) if (code.expiresAt <= nowSeconds) this.codes.delete(name);
  }
}

function key(scope: string, counter: number): string {
  return `${scope}:${counter}`;
}
