import { hash, timingSafeEqual } from 'node:crypto';
import type { KeyDigest, User } from '../config/types.js';

/** SHA-256 digest of a key as typed by a client or written in clear in the config. */
export function digestKey(key: string | Buffer): KeyDigest {
  // crypto.hash: the one-shot form, cheaper than createHash() per knock.
  return hash('sha256', key, 'buffer');
}

/** `sha256:<hex>` form of a key, as `knock-port hash-key` prints and the config accepts. */
export function hashedKeyString(key: string | Buffer): string {
  return `sha256:${digestKey(key).toString('hex')}`;
}

/**
 * The user whose key (for the given step) matches `presented`, or undefined.
 * Every user is compared, match or not, so the time taken does not depend on which
 * user (if any) matched; digests have a fixed length so timingSafeEqual applies.
 */
export function findUserByKey(users: readonly User[], presented: string | Buffer, step: 'http' | 'https'): User | undefined {
  const digest = digestKey(presented);
  let found: User | undefined;
  for (const user of users) {
    const expected = step === 'http' ? user.httpKey : user.httpsKey;
    if (timingSafeEqual(expected, digest) && found === undefined) found = user;
  }
  return found;
}
