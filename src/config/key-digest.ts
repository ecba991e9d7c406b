/**
 * Keys are kept as SHA-256 digests from the moment the config is read: the config accepts them in
 * clear or as `sha256:<hex>`, and nothing after loading ever holds a key in clear.
 */
import { hash } from 'node:crypto';
import type { KeyDigest } from './types.js';

/** SHA-256 digest of a key as typed by a client or written in clear in the config. */
export function digestKey(key: string | Buffer): KeyDigest {
  // crypto.hash: the one-shot form, cheaper than createHash() per knock.
  return hash('sha256', key, 'buffer');
}

/** `sha256:<hex>` form of a key, as `knock-port hash-key` prints and the config accepts. */
export function hashedKeyString(key: string | Buffer): string {
  return `sha256:${digestKey(key).toString('hex')}`;
}
