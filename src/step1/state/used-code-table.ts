/**
 * The used one-time codes, in shared memory: a replayed `otp` knock is accepted once even when
 * its copies reach two workers at the same moment.
 *
 * Buffer: HEADER, then slots laid out as CODE (open addressing, linear probing).
 */
import type { ClaimOutcome, UsedCode, UsedCodeStore } from '../../auth/used-codes.js';
import { layout, powerOfTwo, type SharedStateBuffers } from './layout.js';
import { lock, unlock } from './lock.js';

/** The table's lock, the live count, then (float64) the time step every code up to which is refused. */
const HEADER = layout({ lock: 1, live: 1, refusedThrough: 2 });
/** One code: taken (0: free), its scope (128 bits), counter, expiry (unix s), home position. */
const CODE = layout({ taken: 1, scope: 4, counter: 1, expiresAt: 1, home: 1 });
const REFUSED_THROUGH = HEADER.refusedThrough / 2;

/** Bytes of a used-code table of `slots` slots. */
export function usedCodeTableBytes(slots: number): number {
  return (HEADER.size + slots * CODE.size) * 4;
}

/**
 * Open addressing with linear probing under one lock (claims are rare: one per accepted `otp`
 * or `token`). A claim checks and inserts under that lock, so the same code claimed by two
 * threads at once is `claimed` by exactly one. Expired codes are removed with backward shifting
 * (no tombstones), so probe chains stay short.
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
    this.mask = powerOfTwo((this.words.length - HEADER.size) / CODE.size, 'used-code slots') - 1;
    // A fresh buffer holds 0 here: no time step refused yet (time step 0 is 1970).
    if (this.floats[REFUSED_THROUGH] === 0) this.floats[REFUSED_THROUGH] = -1;
  }

  /** The slot count: the most codes it can ever hold is half of it. */
  get capacity(): number {
    return (this.mask + 1) / 2;
  }

  refuseThrough(counter: number): void {
    lock(this.words, HEADER.lock);
    this.floats[REFUSED_THROUGH] = Math.max(this.floats[REFUSED_THROUGH]!, counter);
    unlock(this.words, HEADER.lock);
  }

  isUsed(scope: string, counter: number, nowSeconds: number): boolean {
    lock(this.words, HEADER.lock);
    try {
      if (counter <= this.floats[REFUSED_THROUGH]!) return true;
      const at = this.find(scope, counter);
      return at >= 0 && this.words[at + CODE.expiresAt]! >>> 0 > nowSeconds;
    } finally {
      unlock(this.words, HEADER.lock);
    }
  }

  claim(code: UsedCode, nowSeconds: number, maxEntries: number): ClaimOutcome {
    lock(this.words, HEADER.lock);
    try {
      if (code.counter <= this.floats[REFUSED_THROUGH]!) return 'used';
      const found = this.find(code.scope, code.counter);
      if (found >= 0 && this.words[found + CODE.expiresAt]! >>> 0 > nowSeconds) return 'used';
      if (found >= 0) this.remove(found);
      const limit = Math.min(maxEntries, this.capacity);
      if (this.words[HEADER.live]! >= limit || nowSeconds >= this.nextPrune) this.prune(nowSeconds);
      if (this.words[HEADER.live]! >= limit) return 'full';
      this.insert(code);
      return 'claimed';
    } finally {
      unlock(this.words, HEADER.lock);
    }
  }

  restore(codes: readonly UsedCode[], nowSeconds: number, maxEntries: number): number {
    const live = codes.filter((code) => code.expiresAt > nowSeconds).sort((a, b) => b.expiresAt - a.expiresAt);
    const limit = Math.min(maxEntries, this.capacity);
    lock(this.words, HEADER.lock);
    try {
      for (const code of live) {
        if (this.words[HEADER.live]! >= limit) break;
        if (this.find(code.scope, code.counter) < 0) this.insert(code);
      }
      return this.words[HEADER.live]!;
    } finally {
      unlock(this.words, HEADER.lock);
    }
  }

  list(nowSeconds: number): UsedCode[] {
    const codes: UsedCode[] = [];
    lock(this.words, HEADER.lock);
    try {
      this.prune(nowSeconds);
      for (let position = 0; position <= this.mask; position++) {
        const at = slotAt(position);
        if (this.words[at + CODE.taken] === 0) continue;
        const scope = [0, 1, 2, 3].map((i) => (this.words[at + CODE.scope + i]! >>> 0).toString(16).padStart(8, '0')).join('');
        codes.push({ scope, counter: this.words[at + CODE.counter]!, expiresAt: this.words[at + CODE.expiresAt]! >>> 0 });
      }
    } finally {
      unlock(this.words, HEADER.lock);
    }
    return codes;
  }

  get size(): number {
    return Atomics.load(this.words, HEADER.live);
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
      const at = slotAt(position);
      if (words[at + CODE.taken] === 0) return -1;
      if (words[at + CODE.counter] === counter && this.sameScope(at)) return at;
    }
  }

  private sameScope(at: number): boolean {
    for (let i = 0; i < 4; i++) if (this.words[at + CODE.scope + i] !== this.scope[i]) return false;
    return true;
  }

  /** Inserts (the caller checked there is room: the table is at most half full). */
  private insert(code: UsedCode): void {
    const words = this.words;
    const home = this.home(code.scope, code.counter);
    let position = home;
    while (words[slotAt(position) + CODE.taken] !== 0) position = (position + 1) & this.mask;
    const at = slotAt(position);
    words.set(this.scope, at + CODE.scope);
    words[at + CODE.counter] = code.counter;
    words[at + CODE.expiresAt] = Math.min(Math.ceil(code.expiresAt), 0xffffffff) | 0;
    words[at + CODE.home] = home;
    words[at + CODE.taken] = 1;
    words[HEADER.live]!++;
  }

  /** Forgets expired codes (at most once a second unless the table is full). */
  private prune(nowSeconds: number): void {
    this.nextPrune = nowSeconds + 1;
    for (let position = 0; position <= this.mask; position++) {
      const at = slotAt(position);
      // After a removal the slot may hold a shifted-back entry: look at it again.
      while (this.words[at + CODE.taken] !== 0 && this.words[at + CODE.expiresAt]! >>> 0 <= nowSeconds) this.remove(at);
    }
  }

  /** Empties a slot, shifting later entries of its probe chain back (no tombstones). */
  private remove(at: number): void {
    const words = this.words;
    let hole = (at - HEADER.size) / CODE.size;
    for (let position = (hole + 1) & this.mask; words[slotAt(position) + CODE.taken] !== 0; position = (position + 1) & this.mask) {
      const home = words[slotAt(position) + CODE.home]!;
      // An entry may fill the hole only if its home is not cyclically within (hole, position].
      const stays = hole <= position ? home > hole && home <= position : home > hole || home <= position;
      if (stays) continue;
      words.copyWithin(slotAt(hole), slotAt(position), slotAt(position) + CODE.size);
      hole = position;
    }
    words.fill(0, slotAt(hole), slotAt(hole) + CODE.size);
    words[HEADER.live]!--;
  }
}

function slotAt(position: number): number {
  return HEADER.size + position * CODE.size;
}
