/**
 * The per-source-prefix rate budget of `step1_2_rate_limit_per_minute` knocks, in shared memory.
 *
 * Buffer: HEADER, then one lock word per set, then the sets, each of WAYS entries laid out as PREFIX.
 */
import { SourcePrefixKey } from '../../packet/address.js';
import { keyedHash, layout, powerOfTwo, type SharedStateBuffers } from './layout.js';
import { lock, unlock } from './lock.js';
import type { SipHash24 } from '../siphash.js';

const BUCKET_MS = 5_000;
/** 12 five-second buckets make the minute, plus one so the window never starts inside it (as PerMinuteLimiter). */
const BUCKETS = 60_000 / BUCKET_MS + 1;
/** Prefixes per set: a new prefix evicts the set's least recently counted one. */
const WAYS = 4;

const HEADER = layout({ limitPerMinute: 1 });
/** One prefix: its hash (64 bits), the newest bucket counted + 1 (0: a free entry), the bucket counts. */
const PREFIX = layout({ tagLow: 1, tagHigh: 1, newestBucketPlusOne: 1, counts: BUCKETS });

/** Bytes of a budget table of `sets` sets. */
export function sourceBudgetBytes(sets: number): number {
  return (HEADER.size + sets * (1 + WAYS * PREFIX.size)) * 4;
}

/**
 * `limitPerMinute` knocks per source prefix in any minute, counted as PerMinuteLimiter does
 * (5-second buckets, strict), in a set-associative table: each prefix maps to one set of 4
 * entries, and a new prefix replaces the set's least recently counted one (it merely starts
 * counting again, as in PerMinuteLimiter when a key is forgotten). A set is updated under its
 * own lock, so concurrent knocks from one prefix on several workers are counted exactly.
 */
export class SharedSourceBudget {
  private readonly words: Int32Array;
  private readonly sets: number;
  private readonly mac: SipHash24;
  private readonly keys: SourcePrefixKey;
  private readonly scratch = Buffer.alloc(18);

  constructor(
    buffers: SharedStateBuffers,
    prefixV4: number,
    prefixV6: number,
    private readonly now: () => number = Date.now,
  ) {
    this.words = new Int32Array(buffers.budget);
    this.sets = powerOfTwo((this.words.length - HEADER.size) / (1 + WAYS * PREFIX.size), 'budget sets');
    this.mac = keyedHash(buffers);
    this.keys = new SourcePrefixKey(prefixV4, prefixV6);
  }

  /** The limit for every thread (the main thread sets it at start and on reload). */
  static setLimit(buffers: SharedStateBuffers, limitPerMinute: number): void {
    Atomics.store(new Int32Array(buffers.budget), HEADER.limitPerMinute, Math.min(limitPerMinute, 0x7fffffff));
  }

  /** Counts a knock from the address at `offset`; false when its prefix is out of budget. */
  allow(packet: Buffer, offset: number, family: 4 | 6): boolean {
    const length = this.keys.maskInto(packet, offset, family, this.scratch);
    const tagLow = this.mac.hash(this.scratch, length) | 0;
    const tagHigh = this.mac.high | 0;
    return this.count(tagLow, tagHigh, Math.floor(this.now() / BUCKET_MS));
  }

  private count(tagLow: number, tagHigh: number, bucket: number): boolean {
    const words = this.words;
    const set = (tagLow >>> 0) & (this.sets - 1);
    const lockAt = HEADER.size + set;
    lock(words, lockAt);
    try {
      const entry = this.entryFor(set, tagLow, tagHigh, bucket);
      const counts = entry + PREFIX.counts;
      const elapsed = bucket + 1 - words[entry + PREFIX.newestBucketPlusOne]!;
      for (let step = 1; step <= Math.min(elapsed, BUCKETS); step++) words[counts + ((bucket - elapsed + step) % BUCKETS)] = 0;
      if (elapsed > 0) words[entry + PREFIX.newestBucketPlusOne] = bucket + 1;
      let total = 0;
      for (let i = 0; i < BUCKETS; i++) total += words[counts + i]!;
      if (total >= Atomics.load(words, HEADER.limitPerMinute)) return false;
      words[counts + (bucket % BUCKETS)]!++;
      return true;
    } finally {
      unlock(words, lockAt);
    }
  }

  /** The prefix's entry in its set (locked by the caller): found, or the least recently counted one, started afresh. */
  private entryFor(set: number, tagLow: number, tagHigh: number, bucket: number): number {
    const words = this.words;
    const base = HEADER.size + this.sets + set * WAYS * PREFIX.size;
    let oldest = base;
    for (let way = 0; way < WAYS; way++) {
      const at = base + way * PREFIX.size;
      const newest = words[at + PREFIX.newestBucketPlusOne]!;
      if (newest !== 0 && words[at + PREFIX.tagLow] === tagLow && words[at + PREFIX.tagHigh] === tagHigh) return at;
      if (newest < words[oldest + PREFIX.newestBucketPlusOne]!) oldest = at;
    }
    words[oldest + PREFIX.tagLow] = tagLow;
    words[oldest + PREFIX.tagHigh] = tagHigh;
    words.fill(0, oldest + PREFIX.counts, oldest + PREFIX.counts + BUCKETS);
    words[oldest + PREFIX.newestBucketPlusOne] = bucket + 1;
    return oldest;
  }
}
