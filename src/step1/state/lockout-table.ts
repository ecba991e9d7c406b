/**
 * Failure counts per secret (factor key), in shared memory: the step-1 workers and step 2 count
 * against the same budgets.
 *
 * Buffer: slots laid out as SLOT (open addressing, linear probing), each with its own lock.
 * A slot, once taken, keeps its key for good (nothing is ever removed): a probe can therefore
 * pass taken slots of other keys without locking them, and locks only the slot it stops at. A
 * check or a failure takes one slot's lock, never the table's, and allocates nothing.
 */
import { LOCK_FACTORS, type LockFactor, type LockoutStates } from '../../auth/lockout.js';
import type { SipHash24 } from '../siphash.js';
import { keyedHash, layout, powerOfTwo, type SharedStateBuffers } from './layout.js';
import { lock, unlock } from './lock.js';

/** Parts a lockout window is cut into; one more bucket, so the window never starts inside the ring. */
const SPLIT = 16;
const BUCKETS = SPLIT + 1;
/**
 * One secret: taken (0: free), the slot's lock, the key's hash (64 bits); then as float64 (2 words
 * each, at even offsets): locked until (ms), bucket length (ms), newest bucket; then the bucket
 * counts, padded to a whole float64 so every slot starts at an even word.
 */
const SLOT = layout({ taken: 1, lock: 1, tagLow: 1, tagHigh: 1, lockedUntil: 2, bucketMs: 2, newestBucket: 2, counts: BUCKETS, padding: 1 });

/** Bytes of a lockout table of `slots` slots. */
export function lockoutTableBytes(slots: number): number {
  return slots * SLOT.size * 4;
}

/** A key's bytes: the factor, the app name; for a one-time code 0xff (never in UTF-8) and the user name. */
const USER_SEPARATOR = 0xff;

/**
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
  /** The key being looked up, encoded here (grown only for names longer than any usual one). */
  private key = Buffer.alloc(256);

  constructor(buffers: SharedStateBuffers) {
    this.words = new Int32Array(buffers.lockout);
    this.floats = new Float64Array(buffers.lockout);
    this.mask = powerOfTwo(this.words.length / SLOT.size, 'lockout slots') - 1;
    this.mac = keyedHash(buffers);
  }

  isLocked(factor: LockFactor, app: string, user: string | undefined, now: number): boolean {
    const at = this.lockSlot(factor, app, user, false);
    if (at < 0) return false;
    const locked = this.floats[(at + SLOT.lockedUntil) / 2]! > now;
    unlock(this.words, at + SLOT.lock);
    return locked;
  }

  fail(factor: LockFactor, app: string, user: string | undefined, now: number, threshold: number, windowMs: number, lockMs: number): boolean {
    const at = this.lockSlot(factor, app, user, true);
    if (at < 0) return false;
    try {
      return this.count(at, now, threshold, windowMs, lockMs);
    } finally {
      unlock(this.words, at + SLOT.lock);
    }
  }

  /** Counts one failure in the slot at `at` (locked by the caller); true when it locks the secret. */
  private count(at: number, now: number, threshold: number, windowMs: number, lockMs: number): boolean {
    const words = this.words;
    const floats = this.floats;
    const lockedUntil = (at + SLOT.lockedUntil) / 2;
    const bucketMsAt = (at + SLOT.bucketMs) / 2;
    const newestAt = (at + SLOT.newestBucket) / 2;
    if (floats[lockedUntil]! > now) return false;
    const bucketMs = Math.max(1, windowMs / SPLIT);
    const bucket = Math.floor(now / bucketMs);
    const counts = at + SLOT.counts;
    // A new window length (reload) starts the count again.
    if (floats[bucketMsAt] !== bucketMs || bucket - floats[newestAt]! > BUCKETS) words.fill(0, counts, counts + BUCKETS);
    else for (let b = floats[newestAt]! + 1; b <= bucket; b++) words[counts + (b % BUCKETS)] = 0;
    floats[bucketMsAt] = bucketMs;
    floats[newestAt] = bucket;
    words[counts + (bucket % BUCKETS)]!++;
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) total += words[counts + i]!;
    if (total < threshold) return false;
    words.fill(0, counts, counts + BUCKETS);
    floats[lockedUntil] = now + lockMs;
    return true;
  }

  /**
   * The slot of the key, with its lock held; taken for the key when `add`. -1 (no lock held)
   * when the key has no slot and `add` is false, or when there is no room.
   */
  private lockSlot(factor: LockFactor, app: string, user: string | undefined, add: boolean): number {
    const length = this.encode(factor, app, user);
    const tagLow = this.mac.hash(this.key, length) | 0;
    const tagHigh = this.mac.high | 0;
    const words = this.words;
    for (let i = 0, position = tagLow & this.mask; i <= this.mask; i++, position = (position + 1) & this.mask) {
      const at = position * SLOT.size;
      // `taken` is set (atomically) after the tag is written, so a taken slot's tag is final.
      if (Atomics.load(words, at + SLOT.taken) === 0) {
        if (!add) return -1;
        lock(words, at + SLOT.lock);
        if (words[at + SLOT.taken] === 0) {
          words.fill(0, at + SLOT.tagLow, at + SLOT.size);
          words[at + SLOT.tagLow] = tagLow;
          words[at + SLOT.tagHigh] = tagHigh;
          Atomics.store(words, at + SLOT.taken, 1);
          return at;
        }
        // Taken meanwhile by another thread, perhaps for this very key.
        unlock(words, at + SLOT.lock);
      }
      if (words[at + SLOT.tagLow] === tagLow && words[at + SLOT.tagHigh] === tagHigh) {
        lock(words, at + SLOT.lock);
        return at;
      }
    }
    return -1;
  }

  /** Writes the key's bytes into `key`; returns their length. */
  private encode(factor: LockFactor, app: string, user: string | undefined): number {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    const most = 2 + 3 * (app.length + (user === undefined ? 0 : user.length));
    if (this.key.length < most) this.key = Buffer.alloc(most);
    const key = this.key;
    key[0] = LOCK_FACTORS.indexOf(factor);
    let length = writeUtf8(key, app, 1);
    if (user === undefined) return length;
    key[length++] = USER_SEPARATOR;
    return writeUtf8(key, user, length);
  }
}

/** Writes `text` as UTF-8 at `at`; returns where it ends. ASCII (every usual name) is copied here, cheaper than a call into the runtime. */
function writeUtf8(bytes: Buffer, text: string, at: number): number {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0x80) return at + bytes.write(text, at, 'utf8');
    bytes[at + i] = unit;
  }
  return at + text.length;
}
