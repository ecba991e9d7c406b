import { describe, expect, it } from 'vitest';
import { SipHash24 } from '../../../src/step1/siphash.js';

/**
 * The 64 SipHash-2-4 reference outputs (Aumasson & Bernstein's reference code, vectors.h,
 * `vectors_sip64`): key 00 01 .. 0f, message 00 01 .. (n-1) for n = 0..63; each output as the
 * table lists it, its 8 bytes in order (the 64-bit result little-endian).
 */
const REFERENCE = [
  '310e0edd47db6f72',
  'fd67dc93c539f874',
  '5a4fa9d909806c0d',
  '2d7efbd796666785',
  'b7877127e09427cf',
  '8da699cd64557618',
  'cee3fe586e46c9cb',
  '37d1018bf50002ab',
  '6224939a79f5f593',
  'b0e4a90bdf82009e',
  'f3b9dd94c5bb5d7a',
  'a7ad6b22462fb3f4',
  'fbe50e86bc8f1e75',
  '903d84c02756ea14',
  'eef27a8e90ca23f7',
  'e545be4961ca29a1',
  'db9bc2577fcc2a3f',
  '9447be2cf5e99a69',
  '9cd38d96f0b3c14b',
  'bd6179a71dc96dbb',
  '98eea21af25cd6be',
  'c7673b2eb0cbf2d0',
  '883ea3e395675393',
  'c8ce5ccd8c030ca8',
  '94af49f6c650adb8',
  'eab8858ade92e1bc',
  'f315bb5bb835d817',
  'adcf6b0763612e2f',
  'a5c91da7acaa4dde',
  '716595876650a2a6',
  '28ef495c53a387ad',
  '42c341d8fa92d832',
  'ce7cf2722f512771',
  'e37859f94623f3a7',
  '381205bb1ab0e012',
  'ae97a10fd434e015',
  'b4a31508beff4d31',
  '81396229f0907902',
  '4d0cf49ee5d4dcca',
  '5c73336a76d8bf9a',
  'd0a704536ba93e0e',
  '925958fcd6420cad',
  'a915c29bc8067318',
  '952b79f3bc0aa6d4',
  'f21df2e41d4535f9',
  '87577519048f53a9',
  '10a56cf5dfcd9adb',
  'eb75095ccd986cd0',
  '51a9cb9ecba312e6',
  '96afadfc2ce666c7',
  '72fe52975a4364ee',
  '5a1645b276d592a1',
  'b274cb8ebf87870a',
  '6f9bb4203de7b381',
  'eaecb2a30b22a87f',
  '9924a43cc1315724',
  'bd838d3aafbf8db7',
  '0b1a2a3265d51aea',
  '135079a3231ce660',
  '932b2846e4d70666',
  'e1915f5cb1eca46c',
  'f325965ca16d629f',
  '575ff28e60381be5',
  '724506eb4c328a95',
] as const;

const KEY = Buffer.from([...Array(16).keys()]);
const MESSAGE = Buffer.from([...Array(64).keys()]);

/** The 64-bit result (`high`, returned low half) as the table writes it: 8 bytes, little-endian. */
function output(mac: SipHash24, data: Uint8Array, length: number): string {
  const low = mac.hash(data, length);
  const bytes = Buffer.alloc(8);
  bytes.writeUInt32LE(low, 0);
  bytes.writeUInt32LE(mac.high, 4);
  return bytes.toString('hex');
}

/**
 * The step-1 cookie's message (src/step1/cookie.ts): source and destination address, source and
 * destination port, client ISN, time slot, hashed as a prefix of one reused 44-byte buffer.
 */
const COOKIE_MESSAGE_LENGTHS = { IPv4: 2 * 4 + 2 + 2 + 4 + 4, IPv6: 2 * 16 + 2 + 2 + 4 + 4 } as const;

describe('SipHash-2-4', () => {
  it('has the whole reference table to check against', () => {
    expect(REFERENCE).toHaveLength(64);
  });

  it.each(REFERENCE.map((expected, length) => [length, expected] as const))('matches the reference output for %i bytes', (length, expected) => {
    expect(output(new SipHash24(KEY), MESSAGE, length)).toBe(expected);
  });

  it('gives every reference output with one instance reused, in any order (no state carries over)', () => {
    const mac = new SipHash24(KEY);
    const lengths = [...REFERENCE.keys()].reverse();
    expect(lengths.map((length) => output(mac, MESSAGE, length))).toEqual(lengths.map((length) => REFERENCE[length]));
  });

  it.each(Object.entries(COOKIE_MESSAGE_LENGTHS))(
    "the cookie's %s message (%i bytes) hashes only its own bytes: what follows it in the buffer changes nothing",
    (_family, length) => {
      const mac = new SipHash24(KEY);
      const buffer = Buffer.alloc(COOKIE_MESSAGE_LENGTHS.IPv6, 0xff);
      MESSAGE.copy(buffer, 0, 0, length);
      // The cookie reuses one buffer: an IPv4 message after an IPv6 one leaves stale bytes behind it.
      output(mac, MESSAGE, COOKIE_MESSAGE_LENGTHS.IPv6);
      expect(output(mac, buffer, length)).toBe(REFERENCE[length]);
    },
  );
});
