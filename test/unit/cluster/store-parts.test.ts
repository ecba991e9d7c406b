// Pure parts of the cluster store: key naming, the announcement envelope, backoff and chunking.
import { describe, expect, it } from 'vitest';
import {
  announceChannel,
  backoffDelay,
  chunks,
  decodeAnnouncement,
  encodeAnnouncement,
  entryKey,
  globEscape,
  parseEntryKey,
} from '../../../src/cluster/store-parts.js';

describe('key naming', () => {
  it('names entries <prefix><kind>:<id> and parses them back, ids with colons included', () => {
    expect(entryKey('kp:', 'grant', 'a1')).toBe('kp:grant:a1');
    expect(entryKey('kp:', 'used-code', 'alice:123456')).toBe('kp:used-code:alice:123456');
    expect(parseEntryKey('kp:', 'kp:used-code:alice:123456')).toEqual({ kind: 'used-code', id: 'alice:123456' });
    expect(parseEntryKey('kp:', 'kp:revoke:r9')).toEqual({ kind: 'revoke', id: 'r9' });
  });

  it('rejects keys that are not entries', () => {
    expect(parseEntryKey('kp:', 'other:grant:a')).toBeUndefined();
    expect(parseEntryKey('kp:', 'kp:announce')).toBeUndefined();
    expect(parseEntryKey('kp:', 'kp:lease:a')).toBeUndefined();
    expect(parseEntryKey('kp:', 'kp:grant:')).toBeUndefined();
    expect(parseEntryKey('kp:', 'kp::x')).toBeUndefined();
  });

  it('keeps the channel out of the entry key space', () => {
    expect(parseEntryKey('kp:', announceChannel('kp:'))).toBeUndefined();
  });

  it('escapes glob metacharacters of a literal prefix for SCAN MATCH', () => {
    expect(globEscape('a*b?c[d]e\\f')).toBe('a\\*b\\?c\\[d\\]e\\\\f');
    expect(globEscape('knock-port:')).toBe('knock-port:');
  });
});

describe('backoffDelay', () => {
  const opts = { baseMs: 100, capMs: 5000 };

  it('doubles from the base, between half and all of the schedule', () => {
    expect(backoffDelay(1, opts, () => 0)).toBe(50);
    expect(backoffDelay(1, opts, () => 1)).toBe(100);
    expect(backoffDelay(2, opts, () => 1)).toBe(200);
    expect(backoffDelay(4, opts, () => 0.5)).toBe(600);
  });

  it('never exceeds the cap, even for huge attempt counts', () => {
    for (const attempt of [7, 8, 50, 1e6, Number.MAX_SAFE_INTEGER]) {
      const d = backoffDelay(attempt, opts, () => 1);
      expect(d).toBe(5000);
      expect(backoffDelay(attempt, opts, () => 0)).toBe(2500);
    }
  });

  it('treats attempts below 1 as the first and clamps a misbehaving random source', () => {
    expect(backoffDelay(0, opts, () => 1)).toBe(100);
    expect(backoffDelay(1, opts, () => 7)).toBe(100);
    expect(backoffDelay(1, opts, () => -3)).toBe(50);
  });

  it('jitters with Math.random by default within bounds', () => {
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, opts);
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(400);
    }
  });
});

describe('chunks', () => {
  it('slices into batches of at most size', () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([], 1000)).toEqual([]);
    expect(
      chunks(
        Array.from({ length: 2500 }, (_, i) => i),
        1000,
      ).map((c) => c.length),
    ).toEqual([1000, 1000, 500]);
  });

  it('refuses a size that would not terminate', () => {
    expect(() => chunks([1], 0)).toThrow(RangeError);
    expect(() => chunks([1], 1.5)).toThrow(RangeError);
  });
});

describe('announcements', () => {
  it('round-trips, the text untouched', () => {
    const a = { gateway: 'gw-a', kind: 'grant' as const, id: 'g1', text: 'v1.opaque{"x":1}\n', publishedAtMs: 1_700_000_000_123 };
    expect(decodeAnnouncement(encodeAnnouncement(a))).toEqual(a);
  });

  it('ignores what it cannot read', () => {
    expect(decodeAnnouncement('not json')).toBeUndefined();
    expect(decodeAnnouncement('null')).toBeUndefined();
    expect(decodeAnnouncement('{"v":2,"g":"a","k":"grant","i":"x","t":"","p":1}')).toBeUndefined();
    expect(decodeAnnouncement('{"v":1,"g":"a","k":"lease","i":"x","t":"","p":1}')).toBeUndefined();
    expect(decodeAnnouncement('{"v":1,"g":"a","k":"grant","i":"","t":"","p":1}')).toBeUndefined();
    expect(decodeAnnouncement('{"v":1,"g":"a","k":"grant","i":"x","t":5,"p":1}')).toBeUndefined();
  });
});
