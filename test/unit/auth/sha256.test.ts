import { hash, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyMatcher, findUserByKey } from '../../../src/auth/keys.js';
import { digestKey } from '../../../src/config/key-digest.js';
import { Sha256, digestDifference, digestWords } from '../../../src/auth/sha256.js';
import type { User } from '../../../src/config/types.js';
import { seededRandom } from '../step1/seeded-random.js';

function randomBytes(next: () => number, length: number): Buffer {
  return Buffer.from(Array.from({ length }, () => Math.floor(next() * 256)));
}

describe('Sha256', () => {
  it('matches node:crypto for every length across the one- and two-block padding edges, at any offset', () => {
    const next = seededRandom(7);
    const sha = new Sha256();
    for (let length = 0; length <= 200; length++) {
      const offset = length % 5;
      const data = randomBytes(next, offset + length + 3);
      const expected = digestWords(hash('sha256', data.subarray(offset, offset + length), 'buffer'));
      expect([...sha.hash(data, offset, offset + length)], `length ${length}`).toEqual([...expected]);
    }
  });

  it('gives the digest of the UTF-8 bytes of a non-ASCII key, as digestKey does', () => {
    const key = 'clé-€-😀-0123456789';
    const sha = new Sha256();
    const bytes = Buffer.from(key, 'utf8');
    expect(digestDifference(sha.hash(bytes, 0, bytes.length), digestWords(digestKey(key)))).toBe(0);
  });
});

describe('digestDifference', () => {
  it('is 0 only for equal digests, whichever word differs', () => {
    const base = digestWords(digestKey('some-key-123'));
    expect(digestDifference(base, digestWords(digestKey('some-key-123')))).toBe(0);
    for (let word = 0; word < 8; word++) {
      for (const bit of [0, 31]) {
        const other = Int32Array.from(base);
        other[word] = other[word]! ^ (1 << bit);
        expect(digestDifference(base, other)).not.toBe(0);
      }
    }
  });
});

describe('KeyMatcher', () => {
  const users: User[] = ['alice-http-key-0', 'bob-http-key-01', 'carol-http-key-012'].map((key, index) => ({
    name: ['alice', 'bob', 'carol'][index]!,
    index,
    step1Key: digestKey(key),
    step2Key: digestKey(`${key}-s`),
  }));
  const step1 = new KeyMatcher(users, 'step1');
  const step2 = new KeyMatcher(users, 'step2');
  const match = (matcher: KeyMatcher, key: string) => {
    const bytes = Buffer.from(`xx${key}yy`, 'utf8');
    return matcher.match(bytes, 2, bytes.length - 2)?.name;
  };

  it('finds the user of a key within a larger buffer, per step', () => {
    expect(match(step1, 'bob-http-key-01')).toBe('bob');
    expect(match(step2, 'bob-http-key-01-s')).toBe('bob');
    expect(match(step2, 'bob-http-key-01')).toBeUndefined();
    expect(match(step1, '')).toBeUndefined();
  });

  it('refuses keys one character short or long, and with one character changed', () => {
    for (const key of ['bob-http-key-0', 'bob-http-key-012', 'bob-http-key-02', 'Bob-http-key-01', 'bob-http-key-01 '])
      expect(match(step1, key), key).toBeUndefined();
  });

  it('takes the first user when two share a key, like findUserByKey', () => {
    const twins: User[] = [users[0]!, { ...users[1]!, step1Key: users[0]!.step1Key }];
    expect(new KeyMatcher(twins, 'step1').match(Buffer.from('alice-http-key-0'), 0, 16)?.name).toBe('alice');
    expect(findUserByKey(twins, 'alice-http-key-0', 'step1')?.name).toBe('alice');
  });

  it('decides as findUserByKey on random and mutated keys', () => {
    const next = seededRandom(11);
    const keys = ['alice-http-key-0', 'bob-http-key-01', 'carol-http-key-012'];
    for (let i = 0; i < 2000; i++) {
      let key = keys[Math.floor(next() * keys.length)]!;
      const edit = Math.floor(next() * 4);
      const at = Math.floor(next() * key.length);
      if (edit === 1) key = key.slice(0, at) + key.slice(at + 1);
      else if (edit === 2) key = key.slice(0, at) + String.fromCharCode(32 + Math.floor(next() * 300)) + key.slice(at);
      else if (edit === 3) key = key.slice(0, at) + String.fromCharCode(32 + Math.floor(next() * 95)) + key.slice(at + 1);
      const bytes = Buffer.from(key, 'utf8');
      expect(step1.match(bytes, 0, bytes.length)?.name, key).toBe(findUserByKey(users, key, 'step1')?.name);
    }
  });

  it('agrees with timingSafeEqual on the digests it compares', () => {
    const a = digestKey('x-0123456789');
    const b = digestKey('y-0123456789');
    expect(digestDifference(digestWords(a), digestWords(b)) === 0).toBe(timingSafeEqual(a, b));
  });
});
