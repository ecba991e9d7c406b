/** The XDP program's config value and address keys as the TypeScript side lays them out (struct kp_xdp_config). */
import { describe, expect, it } from 'vitest';
import { addressKeys, xdpConfigBytes } from '../../../src/capture/xdp.js';
import { formatXdpHealth } from '../../../src/control/format.js';

const SIZE = 288;
const secret = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

describe('XDP config bytes', () => {
  it('lays out the key, clock offset, flags, port and request-line prefix at their offsets', () => {
    const bytes = xdpConfigBytes({ cookieSecret: secret, step1Port: 8080, step1Path: '/k', handshake: 'cookie', reply: 'silent', ipv6: true }, -5n, SIZE);
    expect(bytes.length).toBe(SIZE);
    expect(bytes.subarray(0, 16)).toEqual(secret); // two little-endian words, as SipHash24 reads the secret
    expect(bytes.readBigInt64LE(16)).toBe(-5n);
    expect(bytes.readUInt32LE(24)).toBe(0x1 | 0x2 | 0x8);
    expect(bytes.readUInt16LE(28)).toBe(8080);
    expect(bytes.readUInt16LE(30)).toBe('POST /k HTTP/1.'.length);
    expect(bytes.subarray(32, 32 + 15).toString('latin1')).toBe('POST /k HTTP/1.');
    expect(bytes.subarray(47).every((b) => b === 0)).toBe(true);
  });

  it('sets the flags of handshake none, reply reset and IPv4 only, and cuts a long prefix at 256 bytes', () => {
    const bytes = xdpConfigBytes(
      { cookieSecret: secret, step1Port: 80, step1Path: `/${'a'.repeat(400)}`, handshake: 'none', reply: 'reset', ipv6: false },
      0n,
      SIZE,
    );
    expect(bytes.readUInt32LE(24)).toBe(0x1 | 0x4);
    expect(bytes.readUInt16LE(30)).toBe(256);
  });

  it('refuses a secret of the wrong length', () => {
    expect(() =>
      xdpConfigBytes({ cookieSecret: Buffer.alloc(8), step1Port: 80, step1Path: '/k', handshake: 'cookie', reply: 'silent', ipv6: true }, 0n, SIZE),
    ).toThrow(RangeError);
  });
});

describe('XDP address keys', () => {
  it('maps IPv4 into IPv6 and keeps IPv6 as is; skips what is not an address', () => {
    const keys = addressKeys(['192.0.2.1', '2001:db8::1', 'not-an-address']);
    expect(keys.toString('hex')).toBe('00000000000000000000ffffc0000201' + '20010db8000000000000000000000001');
  });
});

describe('XDP health line', () => {
  it('says where the program runs and its counters, or that the kernel rules serve step 1 alone', () => {
    expect(
      formatXdpHealth({ configured: 'auto', attached: [{ interface: 'eth0', mode: 'native' }], notes: [], counters: { syn_answered: 3, bad_cookie: 1 } }),
    ).toBe('step-1 XDP (auto): on eth0 (native); syn_answered 3, bad_cookie 1\n');
    expect(formatXdpHealth({ configured: 'native', attached: [], notes: ['eth0: EOPNOTSUPP'], counters: {} })).toBe(
      'step-1 XDP (native): not running, the kernel rules alone serve step 1; eth0: EOPNOTSUPP\n',
    );
  });
});
