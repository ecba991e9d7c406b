/**
 * What every shared step-1 table is built on: the buffers the main thread hands to each worker,
 * named layouts for the Int32 words of a table's header and entries (so a table reads
 * `words[at + PREFIX.tagLow]`, not `words[at + 1]`), and the keyed hash that places entries.
 */
import { SipHash24 } from '../siphash.js';

/** Everything a worker needs to attach to the shared state (structured-clone safe). */
export interface SharedStateBuffers {
  /** 16 bytes of SipHash key. */
  hashKey: SharedArrayBuffer;
  budget: SharedArrayBuffer;
  segments: SharedArrayBuffer;
  lockout: SharedArrayBuffer;
  usedCodes: SharedArrayBuffer;
}

/** Field names and their sizes in Int32 words, in the order they are laid out. */
type FieldSizes = Record<string, number>;

/** Each field's offset in words from the start of its entry, and `size`: the words of one entry. */
export type Layout<F extends FieldSizes> = { readonly [K in keyof F]: number } & { readonly size: number };

/** Lays the fields out one after another. A float64 field takes 2 words, at an even offset. */
export function layout<const F extends FieldSizes>(fields: F): Layout<F> {
  const offsets: Record<string, number> = {};
  let size = 0;
  for (const [name, words] of Object.entries(fields)) {
    offsets[name] = size;
    size += words;
  }
  return Object.freeze({ ...offsets, size }) as Layout<F>;
}

export function powerOfTwo(n: number, what: string): number {
  if (n < 1 || (n & (n - 1)) !== 0) throw new RangeError(`${what} must be a power of two, not ${n}`);
  return n;
}

/** SipHash keyed with the buffers' key: a client cannot aim its entries at someone else's. */
export function keyedHash(buffers: Pick<SharedStateBuffers, 'hashKey'>): SipHash24 {
  return new SipHash24(Buffer.from(new Uint8Array(buffers.hashKey).slice()));
}
