/**
 * SHA-256 (FIPS 180-4) over a byte range, into a reused word array. A knock's key is hashed on
 * every data segment a client with a valid cookie sends; `crypto.hash` costs a native call, a
 * string encoding and a new Buffer each time, which dominated the step-1 path. This keeps the
 * message schedule and the result in preallocated typed arrays: nothing is allocated per call.
 *
 * SHA-256 has no table lookups indexed by data and no data-dependent branches, so the time taken
 * depends on the input's length only, never on its content.
 */

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INITIAL = Int32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/** Words of a SHA-256 digest, big-endian as the digest's bytes read. */
export const SHA256_WORDS = 8;

export class Sha256 {
  /** The last digest, as 8 big-endian words (signed 32-bit: compare with `|0` values). */
  readonly digest = new Int32Array(SHA256_WORDS);
  private readonly w = new Int32Array(64);

  /** Hashes data[start, end); the result is left in `digest`. */
  hash(data: Uint8Array, start: number, end: number): Int32Array {
    const h = this.digest;
    h.set(INITIAL);
    const length = end - start;
    // Whole 64-byte blocks straight from the input, then the tail with the padding (1 or 2 blocks).
    let offset = start;
    for (; offset + 64 <= end; offset += 64) {
      this.loadBlock(data, offset);
      this.compress();
    }
    const tail = end - offset;
    const tailBlocks = tail + 9 <= 64 ? 1 : 2;
    for (let block = 0; block < tailBlocks; block++) {
      this.loadTail(data, offset, tail, block, tailBlocks, length);
      this.compress();
    }
    return h;
  }

  private loadBlock(data: Uint8Array, offset: number): void {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      const o = offset + i * 4;
      w[i] = (data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!;
    }
  }

  /**
   * Block `block` of the padded tail: the `tail` remaining bytes at `offset`, 0x80, zeros, and the
   * message length in bits in the last 8 bytes of the last block.
   */
  private loadTail(data: Uint8Array, offset: number, tail: number, block: number, blocks: number, length: number): void {
    const w = this.w;
    w.fill(0, 0, 16);
    const base = block * 64;
    const stop = Math.min(tail, base + 64);
    let position = base;
    // Whole words first, then the last 1-3 bytes one by one.
    for (; position + 4 <= stop; position += 4) {
      const o = offset + position;
      w[(position - base) >> 2] = (data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!;
    }
    for (; position < stop; position++) w[(position - base) >> 2]! |= data[offset + position]! << (24 - ((position & 3) << 3));
    if (tail >= base && tail < base + 64) w[(tail - base) >> 2]! |= 0x80 << (24 - ((tail & 3) << 3));
    if (block === blocks - 1) {
      // Lengths here are far below 2^29 bytes: the high word of the bit length is 0.
      w[14] = 0;
      w[15] = length * 8;
    }
  }

  private compress(): void {
    const w = this.w;
    const h = this.digest;
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15]!;
      const y = w[i - 2]!;
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
    }
    let a = h[0]!,
      b = h[1]!,
      c = h[2]!,
      d = h[3]!,
      e = h[4]!,
      f = h[5]!,
      g = h[6]!,
      hh = h[7]!;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i]! + w[i]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] = (h[0]! + a) | 0;
    h[1] = (h[1]! + b) | 0;
    h[2] = (h[2]! + c) | 0;
    h[3] = (h[3]! + d) | 0;
    h[4] = (h[4]! + e) | 0;
    h[5] = (h[5]! + f) | 0;
    h[6] = (h[6]! + g) | 0;
    h[7] = (h[7]! + hh) | 0;
  }
}

/** A 32-byte digest as the 8 big-endian words `Sha256.digest` holds. */
export function digestWords(digest: Uint8Array): Int32Array {
  const words = new Int32Array(SHA256_WORDS);
  for (let i = 0; i < SHA256_WORDS; i++) words[i] = (digest[i * 4]! << 24) | (digest[i * 4 + 1]! << 16) | (digest[i * 4 + 2]! << 8) | digest[i * 4 + 3]!;
  return words;
}

/**
 * 0 when the 8 words are equal, else non-zero; every word is compared whatever differs, with no
 * branch on the content, so the time taken does not tell how much matched.
 */
export function digestDifference(a: Int32Array, b: Int32Array): number {
  let diff = 0;
  for (let i = 0; i < SHA256_WORDS; i++) diff |= a[i]! ^ b[i]!;
  return diff;
}
