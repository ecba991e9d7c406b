/**
 * The retransmission table: data segments already decided, by (source address, source port,
 * sequence number), in shared memory.
 *
 * Buffer: HEADER, then one lock word per set, then the sets, each of WAYS entries laid out as SEGMENT.
 */
import type { TcpSegmentView } from '../../packet/decode.js';
import { STEP1_REASONS, type Step1Reason } from '../decision.js';
import type { SipHash24 } from '../siphash.js';
import { keyedHash, layout, powerOfTwo, type SharedStateBuffers } from './layout.js';
import { lock, unlock } from './lock.js';

/** The first outcome of a data segment: granted, or why it was refused. */
export type FirstOutcome = Step1Reason | 'granted';

/** Segments per set: a new segment replaces the set's oldest. */
const WAYS = 8;

const HEADER = layout({ insertionStamp: 1, reserved: 1 });
/** The key: family and port, sequence number, source address (an IPv4 address in its first word, the rest 0). */
const KEY = layout({ familyAndPort: 1, seq: 1, address: 4 });
/** One segment: its key, its outcome code, and its insertion stamp (a set's oldest entry has the lowest). */
const SEGMENT = layout({ key: KEY.size, outcome: 1, stamp: 1 });

const EMPTY = 0;
const PENDING = 1;
const GRANTED = 2;
/** Outcome codes 3.. are rejection reasons, by their index in STEP1_REASONS. */
const REASON_BASE = 3;
const REASON_CODE = new Map<FirstOutcome, number>(STEP1_REASONS.map((reason, i) => [reason, REASON_BASE + i]));

/** Bytes of a retransmission table of `sets` sets. */
export function decidedSegmentsBytes(sets: number): number {
  return (HEADER.size + sets * (1 + WAYS * SEGMENT.size)) * 4;
}

/**
 * Set-associative: each (source, port, sequence) hashes to one set of 8 entries, and a new
 * segment replaces the set's oldest (nearly oldest-first overall). The first copy claims its
 * entry (outcome 'pending') before it is judged, so a second copy on another worker is a
 * retransmission even while the first is still being decided.
 */
export class SharedDecidedSegments {
  private readonly words: Int32Array;
  private readonly sets: number;
  private readonly mac: SipHash24;
  private readonly probe = new Int32Array(KEY.size);
  private readonly probeBytes = Buffer.from(this.probe.buffer);

  constructor(buffers: SharedStateBuffers) {
    this.words = new Int32Array(buffers.segments);
    this.sets = powerOfTwo((this.words.length - HEADER.size) / (1 + WAYS * SEGMENT.size), 'segment sets');
    this.mac = keyedHash(buffers);
  }

  /**
   * The first copy's outcome; or 'pending' while another thread is still deciding the first
   * copy; or undefined for a first copy, which is then claimed: call `record` with its outcome.
   */
  claim(segment: TcpSegmentView): FirstOutcome | 'pending' | undefined {
    const set = this.setOf(segment);
    const words = this.words;
    const lockAt = HEADER.size + set;
    lock(words, lockAt);
    try {
      const base = this.entries(set);
      const found = this.find(base);
      if (found >= 0) return decodeOutcome(words[found + SEGMENT.outcome]!);
      let oldest = base;
      for (let way = 0; way < WAYS; way++) {
        const at = base + way * SEGMENT.size;
        if (words[at + SEGMENT.outcome] === EMPTY) {
          oldest = at;
          break;
        }
        // Stamps wrap after 2^32 insertions; compared as a difference they still order.
        if (words[at + SEGMENT.stamp]! - words[oldest + SEGMENT.stamp]! < 0) oldest = at;
      }
      words.set(this.probe, oldest + SEGMENT.key);
      words[oldest + SEGMENT.outcome] = PENDING;
      words[oldest + SEGMENT.stamp] = Atomics.add(words, HEADER.insertionStamp, 1);
      return undefined;
    } finally {
      unlock(words, lockAt);
    }
  }

  record(segment: TcpSegmentView, outcome: FirstOutcome): void {
    const set = this.setOf(segment);
    const words = this.words;
    lock(words, HEADER.size + set);
    // Replaced meanwhile (a burst of new segments in this set): forgotten, as if evicted.
    const found = this.find(this.entries(set));
    if (found >= 0) words[found + SEGMENT.outcome] = outcome === 'granted' ? GRANTED : REASON_CODE.get(outcome)!;
    unlock(words, HEADER.size + set);
  }

  private entries(set: number): number {
    return HEADER.size + this.sets + set * WAYS * SEGMENT.size;
  }

  /** The entry holding the key in `probe`, or -1. */
  private find(base: number): number {
    const words = this.words;
    for (let way = 0; way < WAYS; way++) {
      const at = base + way * SEGMENT.size;
      if (words[at + SEGMENT.outcome] !== EMPTY && this.sameKey(at + SEGMENT.key)) return at;
    }
    return -1;
  }

  /** Loads the segment's key into `probe`; returns its set. */
  private setOf(segment: TcpSegmentView): number {
    const probe = this.probe;
    const packet = segment.packet;
    let o = segment.srcOffset;
    probe[KEY.familyAndPort] = (segment.family << 16) | segment.sport;
    probe[KEY.seq] = segment.seq | 0;
    for (let word = 0; word < 4; word++) {
      probe[KEY.address + word] = word === 0 || segment.family === 6 ? (packet[o]! << 24) | (packet[o + 1]! << 16) | (packet[o + 2]! << 8) | packet[o + 3]! : 0;
      o += 4;
    }
    return (this.mac.hash(this.probeBytes, segment.family === 4 ? 12 : 24) >>> 0) & (this.sets - 1);
  }

  private sameKey(at: number): boolean {
    for (let i = 0; i < KEY.size; i++) if (this.words[at + i] !== this.probe[i]) return false;
    return true;
  }
}

function decodeOutcome(code: number): FirstOutcome | 'pending' {
  if (code === PENDING) return 'pending';
  if (code === GRANTED) return 'granted';
  return STEP1_REASONS[code - REASON_BASE]!;
}
