/**
 * Matching a presented step-1 or step-2 key against the users' stored digests, in time that
 * does not reveal which user (if any) matched. Step 1 matches raw packet bytes without allocating.
 */
import { timingSafeEqual } from 'node:crypto';
import { digestKey } from '../config/key-digest.js';
import type { User } from '../config/types.js';
import type { KnockStep } from '../shared/kinds.js';
import { Sha256, digestDifference, digestWords } from './sha256.js';

/**
 * The user whose key (for the given step) matches `presented`, or undefined.
 * Every user is compared, match or not, so the time taken does not depend on which
 * user (if any) matched; digests have a fixed length so timingSafeEqual applies.
 */
export function findUserByKey(users: readonly User[], presented: string | Buffer, step: KnockStep): User | undefined {
  const digest = digestKey(presented);
  let found: User | undefined;
  for (const user of users) {
    const expected = user[`${step}Key`];
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

  constructor(users: readonly User[], step: KnockStep) {
    this.users = [...users];
    this.digests = users.map((user) => digestWords(user[`${step}Key`]));
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
