/**
 * Step-1 state shared by every worker thread, in SharedArrayBuffers: the per-source-prefix rate
 * budget, the retransmission table, the per-secret lockout counts and the used one-time codes.
 * The main thread creates the buffers once and hands the same ones to every worker (and to each
 * worker restarted, and through reloads), so N workers count one budget, and a replayed `otp`
 * knock is accepted once even when its copies reach two workers at the same moment.
 *
 * Fixed-size tables of Int32 words, no strings and no allocation per packet. Each table guards
 * its entries with spin locks (shared-lock.ts). Where an entry is found by hash, the hash is
 * keyed SipHash with a key shared through the buffers: a client picks its address bits, port and
 * sequence number, and must not be able to aim its entries at someone else's.
 */
import { randomBytes } from 'node:crypto';
import type { LockoutStates } from '../auth/lockout.js';
import type { ClaimOutcome, UsedCode, UsedCodeStore } from '../auth/used-codes.js';
import { SourcePrefixKey } from '../packet/address.js';
import type { TcpSegmentView } from '../packet/decode.js';
import { STEP1_REASONS } from './decision.js';
import { lock, unlock } from './shared-lock.js';
import { SipHash24 } from './siphash.js';
import type { DecidedSegments, FirstOutcome, SourceBudget } from './step1-state.js';

/** Everything a worker needs to attach to the shared state (structured-clone safe). */
export interface SharedStateBuffers {
  /** 16 bytes of SipHash key. */
  hashKey: SharedArrayBuffer;
  budget: SharedArrayBuffer;
  segments: SharedArrayBuffer;
  lockout: SharedArrayBuffer;
  usedCodes: SharedArrayBuffer;
}

export interface SharedStateSizes {
  /** Sets of BUDGET_WAYS prefixes in the rate budget (a power of two). */
  budgetSets: number;
  /** Sets of SEGMENT_WAYS segments in the retransmission table (a power of two). */
  segmentSets: number;
  /** Slots of the lockout table (a power of two). */
  lockoutSlots: number;
  /** Slots of the used-code table (a power of two, at least twice the codes it may hold). */
  usedCodeSlots: number;
}

export const DEFAULT_SHARED_SIZES: SharedStateSizes = { budgetSets: 16_384, segmentSets: 16_384, lockoutSlots: 8_192, usedCodeSlots: 32_768 };

/** Allocates fresh shared state (main thread, once per daemon). */
export function createSharedState(limitPerMinute: number, sizes: SharedStateSizes = DEFAULT_SHARED_SIZES): SharedStateBuffers {
  const hashKey = new SharedArrayBuffer(16);
  new Uint8Array(hashKey).set(randomBytes(16));
  const buffers = {
    hashKey,
    budget: new SharedArrayBuffer((BUDGET_HEADER + sizes.budgetSets * (1 + BUDGET_WAYS * BUDGET_ENTRY)) * 4),
    segments: new SharedArrayBuffer((SEGMENT_HEADER + sizes.segmentSets * (1 + SEGMENT_WAYS * SEGMENT_WORDS)) * 4),
    lockout: new SharedArrayBuffer(LOCKOUT_HEADER * 4 + sizes.lockoutSlots * LOCKOUT_WORDS * 4),
    usedCodes: new SharedArrayBuffer(USED_HEADER * 4 + sizes.usedCodeSlots * USED_WORDS * 4),
  };
  SharedSourceBudget.setLimit(buffers, limitPerMinute);
  return buffers;
}

function powerOfTwo(n: number, what: string): number {
  if (n < 1 || (n & (n - 1)) !== 0) throw new RangeError(`${what} must be a power of two, not ${n}`);
  return n;
}

function sipHash(buffers: SharedStateBuffers): SipHash24 {
  return new SipHash24(Buffer.from(new Uint8Array(buffers.hashKey).slice()));
}

// ---------------------------------------------------------------- per-source-prefix budget

const BUCKET_MS = 5_000;
/** 12 five-second buckets make the minute, plus one so the window never starts inside it (as PerMinuteLimiter). */
const BUCKETS = 60_000 / BUCKET_MS + 1;
/** Prefixes per set: a new prefix evicts the set's least recently counted one. */
const BUDGET_WAYS = 4;
/** Words per prefix: tag (2), newest bucket + 1 (0: free), then the bucket counts. */
const BUDGET_ENTRY = 3 + BUCKETS;
/** Header words: the limit per minute. */
const BUDGET_HEADER = 1;

/**
 * `limitPerMinute` knocks per source prefix in any minute, counted as PerMinuteLimiter does
 * (5-second buckets, strict), in a set-associative table: each prefix maps to one set of 4
 * entries, and a new prefix replaces the set's least recently counted one (it merely starts
 * counting again, as in PerMinuteLimiter when a key is forgotten). A set is updated under its
 * own lock, so concurrent knocks from one prefix on several workers are counted exactly.
 */
export class SharedSourceBudget implements SourceBudget {
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
    this.sets = powerOfTwo((this.words.length - BUDGET_HEADER) / (1 + BUDGET_WAYS * BUDGET_ENTRY), 'budget sets');
    this.mac = sipHash(buffers);
    this.keys = new SourcePrefixKey(prefixV4, prefixV6);
  }

  /** The limit for every thread (the main thread sets it at start and on reload). */
  static setLimit(buffers: SharedStateBuffers, limitPerMinute: number): void {
    Atomics.store(new Int32Array(buffers.budget), 0, Math.min(limitPerMinute, 0x7fffffff));
  }

  allow(packet: Buffer, offset: number, family: 4 | 6): boolean {
    const length = this.keys.maskInto(packet, offset, family, this.scratch);
    const tagLow = this.mac.hash(this.scratch, length) | 0;
    const tagHigh = this.mac.high | 0;
    return this.count(tagLow, tagHigh, Math.floor(this.now() / BUCKET_MS));
  }

  private count(tagLow: number, tagHigh: number, bucket: number): boolean {
    const words = this.words;
    const set = (tagLow >>> 0) & (this.sets - 1);
    const lockAt = BUDGET_HEADER + set;
    const base = BUDGET_HEADER + this.sets + set * BUDGET_WAYS * BUDGET_ENTRY;
    lock(words, lockAt);
    try {
      let entry = -1;
      let oldest = base;
      for (let way = 0; way < BUDGET_WAYS; way++) {
        const at = base + way * BUDGET_ENTRY;
        if (words[at + 2] !== 0 && words[at] === tagLow && words[at + 1] === tagHigh) {
          entry = at;
          break;
        }
        if (words[at + 2]! < words[oldest + 2]!) oldest = at;
      }
      if (entry < 0) {
        entry = oldest;
        words[entry] = tagLow;
        words[entry + 1] = tagHigh;
        words.fill(0, entry + 3, entry + 3 + BUCKETS);
        words[entry + 2] = bucket + 1;
      }
      const elapsed = bucket + 1 - words[entry + 2]!;
      for (let step = 1; step <= Math.min(elapsed, BUCKETS); step++) words[entry + 3 + ((bucket - elapsed + step) % BUCKETS)] = 0;
      if (elapsed > 0) words[entry + 2] = bucket + 1;
      let total = 0;
      for (let i = 0; i < BUCKETS; i++) total += words[entry + 3 + i]!;
      if (total >= Atomics.load(words, 0)) return false;
      words[entry + 3 + (bucket % BUCKETS)]!++;
      return true;
    } finally {
      unlock(words, lockAt);
    }
  }
}

// ---------------------------------------------------------------- retransmission table

/** Segments per set: a new segment replaces the set's oldest. */
const SEGMENT_WAYS = 8;
/** Words per segment: the key (family and port, sequence number, address ×4), the outcome, when stored. */
const SEGMENT_WORDS = 8;
const KEY_WORDS = 6;
const EMPTY = 0;
const PENDING = 1;
const GRANTED = 2;
/** Outcome codes 3.. are rejection reasons, by their index in STEP1_REASONS. */
const REASON_BASE = 3;
const REASON_CODE = new Map<FirstOutcome, number>(STEP1_REASONS.map((reason, i) => [reason, REASON_BASE + i]));
/** Header: the insertion stamp (a set's oldest entry has the lowest). */
const SEGMENT_HEADER = 2;

/**
 * Set-associative: each (source, port, sequence) hashes to one set of 8 entries, and a new
 * segment replaces the set's oldest (bounded like the in-memory ring, nearly oldest-first). The
 * first copy claims its entry (outcome 'pending') before it is judged, so a second copy on
 * another worker is a retransmission even while the first is still being decided.
 */
export class SharedDecidedSegments implements DecidedSegments {
  private readonly words: Int32Array;
  private readonly sets: number;
  private readonly mac: SipHash24;
  private readonly probe = new Int32Array(KEY_WORDS);
  private readonly probeBytes = Buffer.from(this.probe.buffer);

  constructor(buffers: SharedStateBuffers) {
    this.words = new Int32Array(buffers.segments);
    this.sets = powerOfTwo((this.words.length - SEGMENT_HEADER) / (1 + SEGMENT_WAYS * SEGMENT_WORDS), 'segment sets');
    this.mac = sipHash(buffers);
  }

  claim(segment: TcpSegmentView): FirstOutcome | 'pending' | undefined {
    const set = this.setOf(segment);
    const words = this.words;
    const lockAt = SEGMENT_HEADER + set;
    lock(words, lockAt);
    try {
      const base = this.entries(set);
      const found = this.find(base);
      if (found >= 0) return decodeOutcome(words[found + KEY_WORDS]!);
      let oldest = base;
      for (let way = 0; way < SEGMENT_WAYS; way++) {
        const at = base + way * SEGMENT_WORDS;
        if (words[at + KEY_WORDS] === EMPTY) {
          oldest = at;
          break;
        }
        // Stamps wrap after 2^32 insertions; compared as a difference they still order.
        if (words[at + KEY_WORDS + 1]! - words[oldest + KEY_WORDS + 1]! < 0) oldest = at;
      }
      words.set(this.probe, oldest);
      words[oldest + KEY_WORDS] = PENDING;
      words[oldest + KEY_WORDS + 1] = Atomics.add(words, 0, 1);
      return undefined;
    } finally {
      unlock(words, lockAt);
    }
  }

  record(segment: TcpSegmentView, outcome: FirstOutcome): void {
    const set = this.setOf(segment);
    const words = this.words;
    lock(words, SEGMENT_HEADER + set);
    // Replaced meanwhile (a burst of new segments in this set): forgotten, as if evicted.
    const found = this.find(this.entries(set));
    if (found >= 0) words[found + KEY_WORDS] = outcome === 'granted' ? GRANTED : REASON_CODE.get(outcome)!;
    unlock(words, SEGMENT_HEADER + set);
  }

  private entries(set: number): number {
    return SEGMENT_HEADER + this.sets + set * SEGMENT_WAYS * SEGMENT_WORDS;
  }

  /** The entry holding the key in `probe`, or -1. */
  private find(base: number): number {
    const words = this.words;
    for (let way = 0; way < SEGMENT_WAYS; way++) {
      const at = base + way * SEGMENT_WORDS;
      if (words[at + KEY_WORDS] !== EMPTY && this.sameKey(at)) return at;
    }
    return -1;
  }

  /** Loads the segment's key into `probe`; returns its set. */
  private setOf(segment: TcpSegmentView): number {
    const probe = this.probe;
    const packet = segment.packet;
    let o = segment.srcOffset;
    probe[0] = (segment.family << 16) | segment.sport;
    probe[1] = segment.seq | 0;
    for (let word = 2; word < KEY_WORDS; word++) {
      probe[word] = word === 2 || segment.family === 6 ? (packet[o]! << 24) | (packet[o + 1]! << 16) | (packet[o + 2]! << 8) | packet[o + 3]! : 0;
      o += 4;
    }
    return (this.mac.hash(this.probeBytes, segment.family === 4 ? 12 : 24) >>> 0) & (this.sets - 1);
  }

  private sameKey(at: number): boolean {
    for (let i = 0; i < KEY_WORDS; i++) if (this.words[at + i] !== this.probe[i]) return false;
    return true;
  }
}

function decodeOutcome(code: number): FirstOutcome | 'pending' {
  if (code === PENDING) return 'pending';
  if (code === GRANTED) return 'granted';
  return STEP1_REASONS[code - REASON_BASE]!;
}

// ---------------------------------------------------------------- per-secret lockout

/** Header: the table's lock. */
const LOCKOUT_HEADER = 2;
/** Parts a lockout window is cut into; one more bucket, so the window never starts inside the ring. */
const LOCKOUT_SPLIT = 16;
const LOCKOUT_BUCKETS = LOCKOUT_SPLIT + 1;
/**
 * Words per slot: used, tag (2), spare; then as float64 (2 words each): locked until (ms),
 * bucket length (ms), newest bucket; then the bucket counts; padded to whole float64s.
 */
const LOCKOUT_WORDS = 4 + 6 + LOCKOUT_BUCKETS + 1;

/**
 * Failure counts per secret (factor key), shared by every thread: the step-1 workers and step 2.
 * Keys are config names (apps × users × factors), so the table only fills with a huge config;
 * a key that finds no room is not counted (logged by nothing: 8192 slots hold any sane config).
 *
 * A window is counted in buckets of window/16, every bucket that overlaps the window whole:
 * a failure may count for up to window/16 longer than the window (stricter, never laxer).
 */
export class SharedLockoutStates implements LockoutStates {
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly mask: number;
  private readonly mac: SipHash24;

  constructor(buffers: SharedStateBuffers) {
    this.words = new Int32Array(buffers.lockout);
    this.floats = new Float64Array(buffers.lockout);
    this.mask = powerOfTwo((this.words.length - LOCKOUT_HEADER) / LOCKOUT_WORDS, 'lockout slots') - 1;
    this.mac = sipHash(buffers);
  }

  isLocked(key: string, now: number): boolean {
    lock(this.words, 0);
    try {
      const at = this.find(key, false);
      return at >= 0 && this.floats[(at + 4) / 2]! > now;
    } finally {
      unlock(this.words, 0);
    }
  }

  fail(key: string, now: number, threshold: number, windowMs: number, lockMs: number): boolean {
    lock(this.words, 0);
    try {
      const at = this.find(key, true);
      if (at < 0) return false;
      const words = this.words;
      const floats = this.floats;
      const f = (at + 4) / 2;
      if (floats[f]! > now) return false;
      const bucketMs = Math.max(1, windowMs / LOCKOUT_SPLIT);
      const bucket = Math.floor(now / bucketMs);
      const counts = at + 10;
      // A new window length (reload) starts the count again.
      if (floats[f + 1] !== bucketMs || bucket - floats[f + 2]! > LOCKOUT_BUCKETS) words.fill(0, counts, counts + LOCKOUT_BUCKETS);
      else for (let b = floats[f + 2]! + 1; b <= bucket; b++) words[counts + (b % LOCKOUT_BUCKETS)] = 0;
      floats[f + 1] = bucketMs;
      floats[f + 2] = bucket;
      words[counts + (bucket % LOCKOUT_BUCKETS)]!++;
      let total = 0;
      for (let i = 0; i < LOCKOUT_BUCKETS; i++) total += words[counts + i]!;
      if (total < threshold) return false;
      words.fill(0, counts, counts + LOCKOUT_BUCKETS);
      floats[f] = now + lockMs;
      return true;
    } finally {
      unlock(this.words, 0);
    }
  }

  /** The slot of `key` (linear probing), added when `add`; -1 when absent (or no room). */
  private find(key: string, add: boolean): number {
    const bytes = Buffer.from(key);
    const tagLow = this.mac.hash(bytes) | 0;
    const tagHigh = this.mac.high | 0;
    const words = this.words;
    for (let i = 0, position = tagLow & this.mask; i <= this.mask; i++, position = (position + 1) & this.mask) {
      const at = LOCKOUT_HEADER + position * LOCKOUT_WORDS;
      if (words[at] === 0) {
        if (!add) return -1;
        words.fill(0, at, at + LOCKOUT_WORDS);
        words[at] = 1;
        words[at + 1] = tagLow;
        words[at + 2] = tagHigh;
        return at;
      }
      if (words[at + 1] === tagLow && words[at + 2] === tagHigh) return at;
    }
    return -1;
  }
}

// ---------------------------------------------------------------- used one-time codes

/** Header: lock, live count, then (float64) the time step every code up to which is refused. */
const USED_HEADER = 4;
/** Words per slot: used, scope (4 words = 128 bits), counter, expiry (unix s), home position. */
const USED_WORDS = 8;

/**
 * Used one-time codes, open addressing with linear probing under one lock (claims are rare:
 * one per accepted `otp` or `token`). A claim checks and inserts under that lock, so the same
 * code claimed by two threads at once is `claimed` by exactly one. Expired codes are removed
 * with backward shifting (no tombstones), so probe chains stay short.
 */
export class SharedUsedCodeStore implements UsedCodeStore {
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly mask: number;
  private readonly scope = new Int32Array(4);
  private nextPrune = 0;

  constructor(buffers: SharedStateBuffers) {
    this.words = new Int32Array(buffers.usedCodes);
    this.floats = new Float64Array(buffers.usedCodes);
    this.mask = powerOfTwo((this.words.length - USED_HEADER) / USED_WORDS, 'used-code slots') - 1;
    // A fresh buffer holds 0 here: no time step refused yet (time step 0 is 1970).
    if (this.floats[1] === 0) this.floats[1] = -1;
  }

  /** The slot count: the most codes it can ever hold is half of it. */
  get capacity(): number {
    return (this.mask + 1) / 2;
  }

  refuseThrough(counter: number): void {
    lock(this.words, 0);
    this.floats[1] = Math.max(this.floats[1]!, counter);
    unlock(this.words, 0);
  }

  isUsed(scope: string, counter: number, nowSeconds: number): boolean {
    lock(this.words, 0);
    try {
      if (counter <= this.floats[1]!) return true;
      const at = this.find(scope, counter);
      return at >= 0 && this.words[at + 6]! >>> 0 > nowSeconds;
    } finally {
      unlock(this.words, 0);
    }
  }

  claim(code: UsedCode, nowSeconds: number, maxEntries: number): ClaimOutcome {
    lock(this.words, 0);
    try {
      if (code.counter <= this.floats[1]!) return 'used';
      const found = this.find(code.scope, code.counter);
      if (found >= 0 && this.words[found + 6]! >>> 0 > nowSeconds) return 'used';
      if (found >= 0) this.remove(found);
      const limit = Math.min(maxEntries, this.capacity);
      if (this.words[1]! >= limit || nowSeconds >= this.nextPrune) this.prune(nowSeconds);
      if (this.words[1]! >= limit) return 'full';
      this.insert(code);
      return 'claimed';
    } finally {
      unlock(this.words, 0);
    }
  }

  restore(codes: readonly UsedCode[], nowSeconds: number, maxEntries: number): number {
    const live = codes.filter((code) => code.expiresAt > nowSeconds).sort((a, b) => b.expiresAt - a.expiresAt);
    const limit = Math.min(maxEntries, this.capacity);
    lock(this.words, 0);
    try {
      for (const code of live) {
        if (this.words[1]! >= limit) break;
        if (this.find(code.scope, code.counter) < 0) this.insert(code);
      }
      return this.words[1]!;
    } finally {
      unlock(this.words, 0);
    }
  }

  list(nowSeconds: number): UsedCode[] {
    const codes: UsedCode[] = [];
    lock(this.words, 0);
    try {
      this.prune(nowSeconds);
      for (let position = 0; position <= this.mask; position++) {
        const at = USED_HEADER + position * USED_WORDS;
        if (this.words[at] === 0) continue;
        const scope = [1, 2, 3, 4].map((i) => (this.words[at + i]! >>> 0).toString(16).padStart(8, '0')).join('');
        codes.push({ scope, counter: this.words[at + 5]!, expiresAt: this.words[at + 6]! >>> 0 });
      }
    } finally {
      unlock(this.words, 0);
    }
    return codes;
  }

  get size(): number {
    return Atomics.load(this.words, 1);
  }

  /** Puts `scope` as 4 words into `this.scope`; returns the home position of (scope, counter). */
  private home(scope: string, counter: number): number {
    let h = counter | 0;
    for (let i = 0; i < 4; i++) {
      const word = parseInt(scope.slice(i * 8, i * 8 + 8), 16) | 0;
      this.scope[i] = word;
      h = Math.imul(h ^ word, 0x9e3779b1);
      h ^= h >>> 15;
    }
    return (h >>> 0) & this.mask;
  }

  private find(scope: string, counter: number): number {
    const words = this.words;
    for (let position = this.home(scope, counter); ; position = (position + 1) & this.mask) {
      const at = USED_HEADER + position * USED_WORDS;
      if (words[at] === 0) return -1;
      if (
        words[at + 5] === counter &&
        words[at + 1] === this.scope[0] &&
        words[at + 2] === this.scope[1] &&
        words[at + 3] === this.scope[2] &&
        words[at + 4] === this.scope[3]
      )
        return at;
    }
  }

  /** Inserts (the caller checked there is room: the table is at most half full). */
  private insert(code: UsedCode): void {
    const words = this.words;
    const home = this.home(code.scope, code.counter);
    let position = home;
    while (words[USED_HEADER + position * USED_WORDS] !== 0) position = (position + 1) & this.mask;
    const at = USED_HEADER + position * USED_WORDS;
    words.set(this.scope, at + 1);
    words[at + 5] = code.counter;
    words[at + 6] = Math.min(Math.ceil(code.expiresAt), 0xffffffff) | 0;
    words[at + 7] = home;
    words[at] = 1;
    words[1]!++;
  }

  /** Forgets expired codes (at most once a second unless the table is full). */
  private prune(nowSeconds: number): void {
    this.nextPrune = nowSeconds + 1;
    for (let position = 0; position <= this.mask; position++) {
      const at = USED_HEADER + position * USED_WORDS;
      // After a removal the slot may hold a shifted-back entry: look at it again.
      while (this.words[at] !== 0 && this.words[at + 6]! >>> 0 <= nowSeconds) this.remove(at);
    }
  }

  /** Empties a slot, shifting later entries of its probe chain back (no tombstones). */
  private remove(at: number): void {
    const words = this.words;
    let hole = (at - USED_HEADER) / USED_WORDS;
    for (let position = (hole + 1) & this.mask; words[USED_HEADER + position * USED_WORDS] !== 0; position = (position + 1) & this.mask) {
      const home = words[USED_HEADER + position * USED_WORDS + 7]!;
      // An entry may fill the hole only if its home is not cyclically within (hole, position].
      const stays = hole <= position ? home > hole && home <= position : home > hole || home <= position;
      if (stays) continue;
      words.copyWithin(USED_HEADER + hole * USED_WORDS, USED_HEADER + position * USED_WORDS, USED_HEADER + (position + 1) * USED_WORDS);
      hole = position;
    }
    words.fill(0, USED_HEADER + hole * USED_WORDS, USED_HEADER + (hole + 1) * USED_WORDS);
    words[1]!--;
  }
}
