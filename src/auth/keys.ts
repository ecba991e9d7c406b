import { hash, timingSafeEqual } from 'node:crypto';
import type { KeyDigest, User } from '../config/types.js';
import { Sha256, digestDifference, digestWords } from './sha256.js';

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

/**
 * One app's keys for one step, precomputed for matching a presented key given as bytes (the
 * UTF-8 encoding of the key) without allocating: the digest is computed into a reused array and
 * compared word by word with every user's, match or not, so the time taken depends on the
 * presented key's length and the number of users, never on which user (if any) matched or how
 * much of a digest agreed.
 */
export class KeyMatcher {
  private readonly users: readonly User[];
  private readonly digests: readonly Int32Array[];

  constructor(users: readonly User[], step: 'http' | 'https') {
    this.users = [...users];
    this.digests = users.map((user) => digestWords(step === 'http' ? user.httpKey : user.httpsKey));
  }

  /** The user whose key is bytes[start, end), or undefined. */
  match(bytes: Uint8Array, start: number, end: number): User | undefined {
    const digest = sharedSha256.hash(bytes, start, end);
    let found = -1;
    for (let i = 0; i < this.digests.length; i++) {
      const difference = digestDifference(this.digests[i]!, digest);
      if (difference === 0 && found < 0) found = i;
    }
    return found < 0 ? undefined : this.users[found];
  }
}

/** One hasher per thread: `match` reads its digest before anything else can hash. */
const sharedSha256 = new Sha256();
