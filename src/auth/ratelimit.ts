import { BoundedMap } from '../bounded-map.js';

/**
 * Per-key sliding one-minute limit (e.g. per client IP and step), bounded in memory:
 * at most `maxKeys` keys are tracked, the oldest forgotten first, so a flood from many
 * addresses cannot grow it without bound (a forgotten key merely starts counting again).
 */
export class PerMinuteLimiter {
  private readonly hits: BoundedMap<string, number[]>;

  constructor(
    private readonly limitPerMinute: number,
    maxKeys = 100_000,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.hits = new BoundedMap(maxKeys);
  }

  /** Records a hit for `key`; false when the key is over its limit for the last minute. */
  allow(key: string): boolean {
    const now = this.now();
    const windowStart = now - 60_000;
    let times = this.hits.get(key);
    if (times === undefined) {
      times = [];
      this.hits.set(key, times);
    }
    while (times.length > 0 && times[0]! <= windowStart) times.shift();
    if (times.length >= this.limitPerMinute) return false;
    times.push(now);
    return true;
  }

  get size(): number {
    return this.hits.size;
  }
}
