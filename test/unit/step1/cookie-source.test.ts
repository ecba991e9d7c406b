/**
 * The step-1 cookie binds the handshake to its 4-tuple: a cookie issued to one source address
 * and port proves nothing for another, so a knock replayed or spoofed from a neighbour (even
 * one in the same IPv6 /64) fails at the cookie, before any key is looked at.
 */
import { describe, expect, it } from 'vitest';
import { TCP_ACK, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { COOKIE_SLOT_MS, KeyedCookieSource } from '../../../src/step1/cookie.js';
import { craftTcp } from '../packet/craft.js';

const NOW = 1_760_000_000_000;
const SECRET = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const CLIENT_ISN = 0x7000_1234;

interface Flow {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

function view(packet: Buffer): TcpSegmentView {
  const segment = new TcpSegmentView();
  expect(decodeTcpPacket(packet, segment)).toBeUndefined();
  return segment;
}

/** The ISN the cookie source gives a SYN of `flow`. */
function issued(cookies: KeyedCookieSource, flow: Flow): number {
  return cookies.issue(view(craftTcp({ ...flow, seq: CLIENT_ISN, flags: TCP_SYN })), NOW);
}

/** Whether the first data segment of `flow`, acknowledging `isn`, verifies. */
function verifies(cookies: KeyedCookieSource, flow: Flow, isn: number, nowMs = NOW): boolean {
  const data = craftTcp({ ...flow, seq: CLIENT_ISN + 1, ack: (isn + 1) >>> 0, flags: TCP_ACK, payload: 'POST /knock HTTP/1.1\r\n\r\n' });
  return cookies.verify(view(data), nowMs);
}

const FAMILIES = [
  { name: 'IPv4', flow: { src: '192.0.2.100', dst: '192.0.2.1', sport: 41000, dport: 80 }, neighbour: '192.0.2.101' },
  // The neighbour shares the granted source's /64: the cookie tells them apart all the same.
  { name: 'IPv6', flow: { src: '2001:db8:1::100', dst: '2001:db8:1::1', sport: 41000, dport: 80 }, neighbour: '2001:db8:1::101' },
];

describe.each(FAMILIES)('step-1 cookie, $name', ({ flow, neighbour }) => {
  const cookies = new KeyedCookieSource(SECRET);

  it('verifies from the source address and port it was issued to', () => {
    const isn = issued(cookies, flow);
    expect(verifies(cookies, flow, isn)).toBe(true);
    // Still valid in the next slot, as documented.
    expect(verifies(cookies, flow, isn, NOW + COOKIE_SLOT_MS)).toBe(true);
  });

  it('does not verify from another source address', () => {
    const isn = issued(cookies, flow);
    expect(verifies(cookies, { ...flow, src: neighbour }, isn)).toBe(false);
  });

  it('does not verify from another source port, nor to another destination port', () => {
    const isn = issued(cookies, flow);
    expect(verifies(cookies, { ...flow, sport: flow.sport + 1 }, isn)).toBe(false);
    expect(verifies(cookies, { ...flow, dport: flow.dport + 1 }, isn)).toBe(false);
  });

  it('a cookie issued to the neighbour does not verify from the first source either', () => {
    const isn = issued(cookies, { ...flow, src: neighbour });
    expect(verifies(cookies, { ...flow, src: neighbour }, isn)).toBe(true);
    expect(verifies(cookies, flow, isn)).toBe(false);
  });
});
