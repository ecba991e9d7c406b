import { describe, expect, it } from 'vitest';
import { AddressFormatter, parseIpAddress } from '../../../src/packet/address.js';

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
