import { BoundedMap } from '../bounded-map.js';

const MINUTE_MS = 60_000;

/** Hits of one key in the current and the previous fixed minute. */
interface Window {
  minute: number;
  current: number;
  previous: number;
}

/**
 * Per-key limit over a sliding minute (e.g. per client IP and step), in constant memory
 * per key: the previous minute's count, weighted by how much of it still overlaps the
 * sliding window, plus the current minute's. At most `maxKeys` keys are tracked, the
 * oldest forgotten first, so a flood from many addresses cannot grow it without bound
 * (a forgotten key merely starts counting again).
 */
export class PerMinuteLimiter {
  private readonly windows: BoundedMap<string, Window>;

  constructor(
    private readonly limitPerMinute: number,
    maxKeys = 100_000,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.windows = new BoundedMap(maxKeys);
  }

  /** Records a hit for `key`; false (and not counted) when the key is over its limit. */
  allow(key: string): boolean {
    const now = this.now();
    const minute = Math.floor(now / MINUTE_MS);
    let window = this.windows.get(key);
    if (window === undefined) {
      window = { minute, current: 0, previous: 0 };
      this.windows.set(key, window);
    } else if (window.minute !== minute) {
      window.previous = window.minute === minute - 1 ? window.current : 0;
      window.current = 0;
      window.minute = minute;
    }
    const overlap = 1 - (now - minute * MINUTE_MS) / MINUTE_MS;
    if (window.current + window.previous * overlap >= this.limitPerMinute) return false;
    window.current++;
    return true;
  }

  get size(): number {
    return this.windows.size;
  }
}
