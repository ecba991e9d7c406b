/**
 * Per-key sliding one-minute limit (e.g. per client IP and step), bounded in memory:
 * at most `maxKeys` keys are tracked, the oldest evicted first, so a flood from many
 * spoofed addresses cannot grow it without bound.
 */
export class PerMinuteLimiter {
  private readonly hits = new Map<string, number[]>();

  constructor(
    private readonly limitPerMinute: number,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Records a hit for `key`; false when the key is over its limit for the last minute. */
  allow(key: string): boolean {
    const now = this.now();
    const windowStart = now - 60_000;
    let times = this.hits.get(key);
    if (times) {
      this.hits.delete(key); // re-insert below to keep Map order = least recently used first
      while (times.length > 0 && times[0]! <= windowStart) times.shift();
    } else {
      times = [];
    }
    const allowed = times.length < this.limitPerMinute;
    if (allowed) times.push(now);
    this.hits.set(key, times);
    if (this.hits.size > this.maxKeys) {
      const oldest = this.hits.keys().next().value;
      if (oldest !== undefined) this.hits.delete(oldest);
    }
    return allowed;
  }

  get size(): number {
    return this.hits.size;
  }
}
