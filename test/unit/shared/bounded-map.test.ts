import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../../src/shared/bounded-map.js';

describe('BoundedMap', () => {
  it('keeps the newest `capacity` keys and forgets the oldest first', () => {
    const map = new BoundedMap<string, number>(3);
    for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) map.set(key, i);
    expect([map.get('a'), map.get('b'), map.get('d'), map.size]).toEqual([undefined, 1, 3, 3]);
    map.set('b', 10); // overwrite: b stays the oldest
    map.set('e', 4);
    expect([map.get('b'), map.get('c'), map.get('e'), map.size]).toEqual([undefined, 2, 4, 3]);
  });

  it('evicts in constant time however many keys went through it', () => {
    const map = new BoundedMap<number, number>(65_536);
    const started = Date.now();
    for (let i = 0; i < 1_000_000 && Date.now() - started < 20_000; i++) map.set(i, i);
    expect(map.size).toBe(65_536);
    // Evicting through Map#keys().next() instead costs time proportional to the deleted entries.
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
