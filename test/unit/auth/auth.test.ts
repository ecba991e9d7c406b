import { describe, expect, it } from 'vitest';
import { hotp, totpAt, TotpVerifier } from '../../../src/auth/totp.js';
import { base32Decode, base32Encode } from '../../../src/shared/otp-format.js';
import { findUserByKey } from '../../../src/auth/keys.js';
import { digestKey, hashedKeyString } from '../../../src/config/key-digest.js';
import { PerMinuteLimiter } from '../../../src/auth/ratelimit.js';
import type { User } from '../../../src/config/types.js';

// RFC 6238 appendix B, SHA-1 seed "12345678901234567890", 8 digits there; we use the
// 6 low-order digits, which is what authenticator apps show.
const RFC_SECRET = base32Encode(Buffer.from('12345678901234567890'));

describe('totp', () => {
  it('matches the RFC 6238 SHA-1 vectors (6 digits)', () => {
    expect(totpAt(RFC_SECRET, 59)).toBe('287082');
    expect(totpAt(RFC_SECRET, 1111111109)).toBe('081804');
    expect(totpAt(RFC_SECRET, 1234567890)).toBe('005924');
    expect(totpAt(RFC_SECRET, 2000000000)).toBe('279037');
  });

  it('round-trips base32 and rejects invalid text', () => {
    const data = Buffer.from('any bytes at all \x00\xff');
    expect(base32Decode(base32Encode(data))).toEqual(data);
    expect(base32Decode('not base32!')).toBeUndefined();
    expect(base32Decode('')).toBeUndefined();
  });

  it('accepts ±1 step, refuses further drift, and refuses a code twice', () => {
    let now = 1_000_000;
    const verifier = new TotpVerifier(1, () => now);
    const previous = totpAt(RFC_SECRET, now - 30);
    expect(verifier.verify(RFC_SECRET, previous)).toBe(true);
    expect(verifier.verify(RFC_SECRET, previous)).toBe(false);
    expect(verifier.verify(RFC_SECRET, totpAt(RFC_SECRET, now - 90))).toBe(false);
    expect(verifier.verify(RFC_SECRET, 'abcdef')).toBe(false);
    now += 300;
    expect(verifier.verify(RFC_SECRET, totpAt(RFC_SECRET, now))).toBe(true);
  });

  it('hotp follows RFC 4226 appendix D', () => {
    const secret = Buffer.from('12345678901234567890');
    expect([0, 1, 2, 9].map((c) => hotp(secret, c))).toEqual(['755224', '287082', '359152', '520489']);
  });
});

describe('keys', () => {
  const users: User[] = [
    { name: 'alice', index: 0, step1Key: digestKey('alice-http-key'), step2Key: digestKey('alice-https-key') },
    { name: 'bob', index: 1, step1Key: digestKey('bob-http-key-1'), step2Key: digestKey('bob-https-key-1') },
  ];
  it('finds the user by the key of the right step only', () => {
    expect(findUserByKey(users, 'bob-http-key-1', 'step1')?.name).toBe('bob');
    expect(findUserByKey(users, 'bob-http-key-1', 'step2')).toBeUndefined();
    expect(findUserByKey(users, 'alice-https-key', 'step2')?.name).toBe('alice');
    expect(findUserByKey(users, '', 'step1')).toBeUndefined();
  });
  it('prints the sha256: form', () => {
    expect(hashedKeyString('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('PerMinuteLimiter', () => {
  it('allows N per minute per key, then refuses, then recovers', () => {
    let now = 0;
    const limiter = new PerMinuteLimiter(3, 10, () => now);
    expect([1, 2, 3, 4].map(() => limiter.allow('10.0.0.1'))).toEqual([true, true, true, false]);
    expect(limiter.allow('10.0.0.2')).toBe(true);
    now += 65_000; // a hit is remembered for a minute, up to 5 s more
    expect(limiter.allow('10.0.0.1')).toBe(true);
  });
  it('never allows N+1 within a minute, across bucket and minute boundaries', () => {
    let now = 4_000;
    const limiter = new PerMinuteLimiter(10, 10, () => now);
    for (let i = 0; i < 5; i++) expect(limiter.allow('ip')).toBe(true);
    now = 58_000;
    for (let i = 0; i < 5; i++) expect(limiter.allow('ip')).toBe(true);
    now = 63_000; // the first five are less than a minute old
    expect(limiter.allow('ip')).toBe(false);
    now = 70_000; // they are over a minute old now (and out of the window)
    expect(limiter.allow('ip')).toBe(true);
    now = 200_000; // all forgotten
    expect(Array.from({ length: 11 }, () => limiter.allow('ip')).filter(Boolean).length).toBe(10);
  });

  it('stays bounded under many keys', () => {
    const limiter = new PerMinuteLimiter(1, 100);
    for (let i = 0; i < 10_000; i++) limiter.allow(`k${i}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });
});
