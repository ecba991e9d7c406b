/**
 * Per-minute rate limiting of knocks, per source prefix and step, in bounded memory so that a
 * flood from many source addresses cannot exhaust the daemon.
 */
import { BoundedMap } from '../shared/bounded-map.js';

const BUCKET_MS = 5_000;
/** 12 buckets make the minute; one more so the window never starts inside it (strict, not lenient). */
const BUCKETS = 60_000 / BUCKET_MS + 1;

/** One key's hits in 5-second buckets, as a ring. */
interface Window {
  /** Index (time / BUCKET_MS) of the newest bucket written. */
  newest: number;
  counts: Uint16Array | Uint32Array;
}

/**
 * Per-key limit of `limitPerMinute` hits in any minute (e.g. per client IP and step), in
 * constant memory per key: hits are counted in 5-second buckets and every bucket that
 * overlaps the last minute counts whole, so the N+1st hit within a minute is always
 * refused (a hit may be remembered up to 5 s longer than a minute). At most `maxKeys`
 * keys are tracked, the oldest forgotten first, so a flood from many addresses cannot
 * grow it without bound (a forgotten key merely starts counting again).
 */
export class PerMinuteLimiter {
  private readonly windows: BoundedMap<string, Window>;

  constructor(
    private limitPerMinute: number,
    maxKeys = 100_000,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.windows = new BoundedMap(maxKeys);
  }

  /** Records a hit for `key`; false (and not counted) when the key is at its limit. */
  allow(key: string): boolean {
    const bucket = Math.floor(this.now() / BUCKET_MS);
    let window = this.windows.get(key);
    if (window === undefined) {
      const counts = this.limitPerMinute < 0xffff ? new Uint16Array(BUCKETS) : new Uint32Array(BUCKETS);
      window = { newest: bucket, counts };
      this.windows.set(key, window);
    } else {
      advance(window, bucket);
      // A reload raised the limit past what 16-bit counts hold.
      if (window.counts instanceof Uint16Array && this.limitPerMinute >= 0xffff) window.counts = Uint32Array.from(window.counts);
    }
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) total += window.counts[i]!;
    if (total >= this.limitPerMinute) return false;
    window.counts[bucket % BUCKETS]!++;
    return true;
  }

  get size(): number {
    return this.windows.size;
  }

  /** A reloaded config's limit; the hits already counted stay (a reload is no fresh budget). */
  setLimit(limitPerMinute: number): void {
    this.limitPerMinute = limitPerMinute;
  }
}

/** Empties the buckets that have left the window since the key was last seen. */
function advance(window: Window, bucket: number): void {
  const elapsed = bucket - window.newest;
  if (elapsed <= 0) return;
  for (let step = 1; step <= Math.min(elapsed, BUCKETS); step++) window.counts[(window.newest + step) % BUCKETS] = 0;
  window.newest = bucket;
}
