import { describe, expect, it } from 'vitest';
import { SipHash24 } from '../../../src/step1/siphash.js';

describe('SipHash-2-4', () => {
  // Reference vectors (Aumasson & Bernstein): key 00..0f, message 00..n-1.
  it.each([
    [0, '726fdb47dd0e0e31'],
    [1, '74f839c593dc67fd'],
    [7, 'ab0200f58b01d137'],
    [8, '93f5f5799a932462'],
    [15, 'a129ca6149be45e5'],
    [19, 'bb6dc91da77961bd'],
    [63, '958a324ceb064572'],
  ])('matches the reference output for %i bytes', (length, expected) => {
    const mac = new SipHash24(Buffer.from([...Array(16).keys()]));
    const message = Buffer.from([...Array(64).keys()]);
    const low = mac.hash(message, length);
    expect(mac.high.toString(16).padStart(8, '0') + low.toString(16).padStart(8, '0')).toBe(expected);
  });
});
