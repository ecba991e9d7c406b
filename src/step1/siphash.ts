/**
 * SipHash-2-4 (Aumasson & Bernstein), the keyed MAC Linux uses for its SYN cookies, in
 * 32-bit arithmetic: each 64-bit lane is a (high, low) pair of uint32. A Buffer HMAC per
 * packet costs several times more, and this allocates nothing per call.
 */
export class SipHash24 {
  private readonly k0h: number;
  private readonly k0l: number;
  private readonly k1h: number;
  private readonly k1l: number;
  /** High 32 bits of the last hash (the low 32 bits are returned). */
  high = 0;

  /** `key` is 16 bytes (two little-endian 64-bit words, as in the reference code). */
  constructor(key: Buffer) {
    if (key.length !== 16) throw new RangeError('SipHash key must be 16 bytes');
    this.k0l = key.readUInt32LE(0);
    this.k0h = key.readUInt32LE(4);
    this.k1l = key.readUInt32LE(8);
    this.k1h = key.readUInt32LE(12);
  }

  /** Low 32 bits of SipHash-2-4 of data[0, length); the high 32 bits are left in `high`. */
  hash(data: Uint8Array, length = data.length): number {
    // State in locals (not fields) so V8 keeps it in registers; one 64-bit lane = (h, l). Every
    // value is kept a signed int32 (`| 0`), V8's cheapest number representation; an addition's
    // carry out of the low word is the top bit of (a & b) | ((a | b) & ~sum).
    let v0h = this.k0h ^ 0x736f6d65,
      v0l = this.k0l ^ 0x70736575;
    let v1h = this.k1h ^ 0x646f7261,
      v1l = this.k1l ^ 0x6e646f6d;
    let v2h = this.k0h ^ 0x6c796765,
      v2l = this.k0l ^ 0x6e657261;
    let v3h = this.k1h ^ 0x74656462,
      v3l = this.k1l ^ 0x79746573;
    let lo: number, t: number;
    const whole = length - (length % 8);
    // Message words, then (word === whole) the last one: the remaining 0-7 bytes with length mod 256 on top;
    // then (word > whole) the four finalization rounds, after v2 ^= 0xff.
    for (let word = 0; word <= whole + 8; word += 8) {
      let mh = 0,
        ml = 0,
        rounds = 2;
      if (word < whole) {
        // Plain byte reads: Buffer#readUInt32LE validates its offset on every call.
        ml = data[word]! | (data[word + 1]! << 8) | (data[word + 2]! << 16) | (data[word + 3]! << 24);
        mh = data[word + 4]! | (data[word + 5]! << 8) | (data[word + 6]! << 16) | (data[word + 7]! << 24);
      } else if (word === whole) {
        mh = (length & 0xff) << 24;
        for (let i = whole; i < length; i++) {
          const shift = (i - whole) * 8;
          if (shift < 32) ml |= data[i]! << shift;
          else mh |= data[i]! << (shift - 32);
        }
      } else {
        v2l ^= 0xff;
        rounds = 4;
      }
      v3h ^= mh;
      v3l ^= ml;
      for (let r = 0; r < rounds; r++) {
        // v0 += v1; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)
        lo = (v0l + v1l) | 0;
        v0h = (v0h + v1h + (((v0l & v1l) | ((v0l | v1l) & ~lo)) >>> 31)) | 0;
        v0l = lo;
        t = (v1h << 13) | (v1l >>> 19);
        v1l = (v1l << 13) | (v1h >>> 19);
        v1h = t;
        v1h ^= v0h;
        v1l ^= v0l;
        t = v0h;
        v0h = v0l;
        v0l = t;
        // v2 += v3; v3 = rotl(v3, 16) ^ v2
        lo = (v2l + v3l) | 0;
        v2h = (v2h + v3h + (((v2l & v3l) | ((v2l | v3l) & ~lo)) >>> 31)) | 0;
        v2l = lo;
        t = (v3h << 16) | (v3l >>> 16);
        v3l = (v3l << 16) | (v3h >>> 16);
        v3h = t;
        v3h ^= v2h;
        v3l ^= v2l;
        // v0 += v3; v3 = rotl(v3, 21) ^ v0
        lo = (v0l + v3l) | 0;
        v0h = (v0h + v3h + (((v0l & v3l) | ((v0l | v3l) & ~lo)) >>> 31)) | 0;
        v0l = lo;
        t = (v3h << 21) | (v3l >>> 11);
        v3l = (v3l << 21) | (v3h >>> 11);
        v3h = t;
        v3h ^= v0h;
        v3l ^= v0l;
        // v2 += v1; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)
        lo = (v2l + v1l) | 0;
        v2h = (v2h + v1h + (((v2l & v1l) | ((v2l | v1l) & ~lo)) >>> 31)) | 0;
        v2l = lo;
        t = (v1h << 17) | (v1l >>> 15);
        v1l = (v1l << 17) | (v1h >>> 15);
        v1h = t;
        v1h ^= v2h;
        v1l ^= v2l;
        t = v2h;
        v2h = v2l;
        v2l = t;
      }
      v0h ^= mh;
      v0l ^= ml;
    }
    this.high = (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
    return (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
  }
}
