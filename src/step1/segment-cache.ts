/**
 * What was first decided for each recent data segment, keyed by (source address, source port,
 * sequence number), so a retransmission is recognised and reported with the first outcome.
 *
 * A flood of distinct segments goes through here, one insertion and one eviction each, so the
 * table lives in typed arrays: no string keys, no allocation per packet, nothing for the
 * garbage collector to trace. Entries sit in a ring (the oldest is evicted first) indexed by an
 * open-addressing hash table. The hash is keyed SipHash: a client chooses its port and
 * sequence number, and must not be able to pile its segments onto one probe chain.
 */
import { randomBytes } from 'node:crypto';
import type { TcpSegmentView } from '../packet/decode.js';
import { SipHash24 } from './siphash.js';

/** Words per key: family and port, sequence number, then the address (4 words, IPv4 in the first). */
const KEY_WORDS = 6;
const EMPTY = 0;

export class SegmentCache<V> {
  /** Ring of entries, oldest at `next` once full. */
  private readonly keys: Uint32Array;
  private readonly hashes: Uint32Array;
  private readonly values: Array<V | undefined>;
  private next = 0;
  private count = 0;
  /** Hash table of ring positions + 1 (EMPTY when free); at most half full. */
  private readonly index: Int32Array;
  private readonly mask: number;
  private readonly mac = new SipHash24(randomBytes(16));
  /** The key being looked up, and its bytes for the MAC. */
  private readonly probe = new Uint32Array(KEY_WORDS);
  private readonly probeBytes = Buffer.from(this.probe.buffer);
  private readonly lastKey = new Uint32Array(KEY_WORDS);
  private lastHash = 0;
  private lastHashValid = false;

  constructor(readonly capacity: number) {
    this.keys = new Uint32Array(capacity * KEY_WORDS);
    this.hashes = new Uint32Array(capacity);
    this.values = new Array<V | undefined>(capacity).fill(undefined);
    let size = 1;
    while (size < capacity * 2) size *= 2;
    this.index = new Int32Array(size);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The value stored for this segment, or undefined. */
  get(segment: TcpSegmentView): V | undefined {
    const slot = this.find(this.loadKey(segment));
    return slot < 0 ? undefined : this.values[slot];
  }

  /** Stores a value for this segment, evicting the oldest entry when full; an existing entry keeps its age. */
  set(segment: TcpSegmentView, value: V): void {
    const hash = this.loadKey(segment);
    const existing = this.find(hash);
    if (existing >= 0) {
      this.values[existing] = value;
      return;
    }
    const slot = this.next;
    if (this.count === this.capacity) this.unindex(slot);
    else this.count++;
    this.keys.set(this.probe, slot * KEY_WORDS);
    this.hashes[slot] = hash;
    this.values[slot] = value;
    let position = hash & this.mask;
    while (this.index[position] !== EMPTY) position = (position + 1) & this.mask;
    this.index[position] = slot + 1;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
  }

  /** Puts the segment's key in `probe`; returns its hash (remembered: `set` follows `get` for the same segment). */
  private loadKey(segment: TcpSegmentView): number {
    const probe = this.probe;
    const packet = segment.packet;
    let o = segment.srcOffset;
    probe[0] = (segment.family << 16) | segment.sport;
    probe[1] = segment.seq;
    for (let word = 2; word < KEY_WORDS; word++) {
      probe[word] = word === 2 || segment.family === 6 ? (packet[o]! << 24) | (packet[o + 1]! << 16) | (packet[o + 2]! << 8) | packet[o + 3]! : 0;
      o += 4;
    }
    if (this.lastHashValid && sameKey(probe, 0, this.lastKey)) return this.lastHash;
    this.lastHash = this.mac.hash(this.probeBytes, segment.family === 4 ? 12 : 24);
    this.lastKey.set(probe);
    this.lastHashValid = true;
    return this.lastHash;
  }

  /** Ring slot holding the key in `probe`, or -1. */
  private find(hash: number): number {
    const { index, keys, probe, mask } = this;
    for (let position = hash & mask; index[position] !== EMPTY; position = (position + 1) & mask) {
      const slot = index[position]! - 1;
      if (sameKey(keys, slot * KEY_WORDS, probe)) return slot;
    }
    return -1;
  }

  /** Removes a ring slot from the hash table, shifting later entries of its probe chain back (no tombstones). */
  private unindex(slot: number): void {
    const { index, hashes, mask } = this;
    let hole = hashes[slot]! & mask;
    while (index[hole] !== slot + 1) hole = (hole + 1) & mask;
    for (let position = (hole + 1) & mask; index[position] !== EMPTY; position = (position + 1) & mask) {
      const home = hashes[index[position]! - 1]! & mask;
      // An entry may fill the hole only if its home is not cyclically within (hole, position].
      const stays = hole <= position ? home > hole && home <= position : home > hole || home <= position;
      if (stays) continue;
      index[hole] = index[position]!;
      hole = position;
    }
    index[hole] = EMPTY;
    this.values[slot] = undefined;
  }
}

function sameKey(keys: Uint32Array, at: number, key: Uint32Array): boolean {
  for (let i = 0; i < KEY_WORDS; i++) if (keys[at + i] !== key[i]) return false;
  return true;
}
