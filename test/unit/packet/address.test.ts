import { describe, expect, it } from 'vitest';
import { AddressFormatter, SourcePrefixKey, parseIpAddress } from '../../../src/packet/address.js';

describe('AddressFormatter', () => {
  it('gives the right text for each address in turn, repeated or not, IPv4 and IPv6 alike', () => {
    const formatter = new AddressFormatter();
    const inputs = ['192.0.2.7', '192.0.2.7', '198.51.100.1', 'c000:207::', '192.0.2.7', '2001:db8::7', '2001:db8::7', '2001:db8::8', '0.0.0.0', '::'];
    const texts = inputs.map((text) => {
      const bytes = parseIpAddress(text)!;
      // At an offset inside a larger packet, as the inspector reads it.
      const packet = Buffer.concat([Buffer.from([1, 2, 3]), bytes, Buffer.from([9])]);
      return formatter.format(packet, 3, bytes.length === 4 ? 4 : 6);
    });
    expect(texts).toEqual(inputs);
  });
});

describe('SourcePrefixKey', () => {
  const keyOf = (keys: SourcePrefixKey, text: string): string => {
    const bytes = parseIpAddress(text)!;
    const packet = Buffer.concat([Buffer.from([1, 2, 3]), bytes]);
    return keys.ofBytes(packet, 3, bytes.length === 4 ? 4 : 6, text);
  };

  it('names the network at the configured prefix lengths, the address itself at full length', () => {
    const keys = new SourcePrefixKey(32, 64);
    expect(keyOf(keys, '192.0.2.7')).toBe('192.0.2.7');
    expect(keyOf(keys, '2001:db8:1:2::7')).toBe('2001:db8:1:2::/64');
    expect(keyOf(keys, '2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(keyOf(keys, '2001:db8:1:3::7')).toBe('2001:db8:1:3::/64');
    const narrow = new SourcePrefixKey(24, 128);
    expect(keyOf(narrow, '198.51.100.200')).toBe('198.51.100.0/24');
    expect(keyOf(narrow, '2001:db8::7')).toBe('2001:db8::7');
  });

  it('masks inside a byte', () => {
    const keys = new SourcePrefixKey(20, 57);
    expect(keyOf(keys, '198.51.255.9')).toBe('198.51.240.0/20');
    expect(keyOf(keys, '2001:db8:1:ffff::1')).toBe('2001:db8:1:ff80::/57');
    expect(keyOf(keys, '2001:db8:1:ff7f::1')).toBe('2001:db8:1:ff00::/57');
  });

  it('hands back the same string while the network repeats (nothing allocated per packet)', () => {
    const keys = new SourcePrefixKey(32, 64);
    const first = keyOf(keys, '2001:db8:1:2::1');
    expect(keyOf(keys, '2001:db8:1:2::2')).toBe(first);
    const text = '192.0.2.9';
    expect(keyOf(keys, text)).toBe(text);
  });

  it('reads addresses in text form alike, and leaves anything else as it is', () => {
    const keys = new SourcePrefixKey(24, 64);
    expect(keys.ofText('2001:db8:1:2::7')).toBe('2001:db8:1:2::/64');
    expect(keys.ofText('192.0.2.7')).toBe('192.0.2.0/24');
    expect(keys.ofText('unknown')).toBe('unknown');
  });
});
