import { describe, expect, it } from 'vitest';
import { formatIPv6, parseIpAddress } from '../../../src/packet/address.js';
import { buildRst, buildSynAck, SYN_ACK_WINDOW } from '../../../src/packet/build.js';
import { ipv4HeaderChecksum, tcpChecksum } from '../../../src/packet/checksum.js';
import { TCP_ACK, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { craftTcp } from './craft.js';

function decode(packet: Buffer): { failure: string | undefined; view: TcpSegmentView } {
  const view = new TcpSegmentView();
  return { failure: decodeTcpPacket(packet, view), view };
}

describe('IPv6 address text', () => {
  it.each([
    ['2001:db8::1', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::', 'fe80::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
  ])('%s prints as %s (RFC 5952)', (input, expected) => {
    expect(formatIPv6(parseIpAddress(input)!, 0)).toBe(expected);
  });
});

describe('decodeTcpPacket', () => {
  it('decodes an IPv4 SYN with its MSS option', () => {
    const { failure, view } = decode(
      craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', sport: 51000, dport: 80, seq: 0xfffffff0, tcpOptions: [2, 4, 0x05, 0xb4, 4, 2, 1, 1] }),
    );
    expect(failure).toBeUndefined();
    expect([view.family, view.sport, view.dport, view.seq, view.flags, view.mss, view.payloadLength]).toEqual([4, 51000, 80, 0xfffffff0, TCP_SYN, 1460, 0]);
  });

  it('finds the payload after IPv4 options and ignores Ethernet padding', () => {
    const packet = craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', flags: TCP_ACK, payload: 'hello', ipOptions: [1, 1, 7, 7, 4, 0, 0, 0, 0] });
    const { failure, view } = decode(Buffer.concat([packet, Buffer.alloc(6)]));
    expect(failure).toBeUndefined();
    expect(view.packet.toString('latin1', view.payloadOffset, view.end)).toBe('hello');
  });

  it('walks IPv6 hop-by-hop, destination-options and routing (segments left 0) headers', () => {
    const packet = craftTcp({
      src: '2001:db8::2',
      dst: '2001:db8::1',
      flags: TCP_ACK,
      payload: 'x',
      ipv6Extensions: [
        { type: 0, body: [0, 1, 4, 0, 0, 0, 0] },
        { type: 60, body: [0, 0, 0, 0, 0, 0, 0] },
        { type: 43, body: [0, 0, 0, 0, 0, 0, 0] },
      ],
    });
    const { failure, view } = decode(packet);
    expect(failure).toBeUndefined();
    expect(view.payloadLength).toBe(1);
  });

  const v4 = { src: '192.0.2.7', dst: '198.51.100.1' };
  const v6 = { src: '2001:db8::2', dst: '2001:db8::1' };
  it.each<[string, () => Buffer, string]>([
    ['empty', () => Buffer.alloc(0), 'truncated'],
    ['version 5', () => Buffer.from([0x50, 0, 0, 20]), 'bad-ip-version'],
    ['short IPv4 header', () => craftTcp(v4).subarray(0, 19), 'truncated'],
    [
      'IHL 4',
      () => {
        const p = craftTcp(v4);
        p[0] = 0x44;
        return p;
      },
      'bad-ip-header',
    ],
    [
      'IHL beyond total length',
      () => {
        const p = craftTcp(v4);
        p[0] = 0x4f;
        return p;
      },
      'bad-ip-header',
    ],
    [
      'total length beyond the bytes',
      () => {
        const p = craftTcp(v4);
        p.writeUInt16BE(p.length + 1, 2);
        return p;
      },
      'truncated',
    ],
    ['IPv4 option overrunning the header', () => craftTcp({ ...v4, ipOptions: [7, 9, 0, 0] }), 'bad-ip-options'],
    ['IPv4 option of length 1', () => craftTcp({ ...v4, ipOptions: [7, 1, 0, 0] }), 'bad-ip-options'],
    ['first fragment (MF)', () => craftTcp({ ...v4, fragmentField: 0x2000 }), 'fragment'],
    ['non-first fragment', () => craftTcp({ ...v4, fragmentField: 0x0010 }), 'non-first-fragment'],
    [
      'UDP',
      () => {
        const p = craftTcp(v4);
        p[9] = 17;
        return p;
      },
      'not-tcp',
    ],
    [
      'TCP data offset 4',
      () => {
        const p = craftTcp(v4);
        p[32] = 0x40;
        return p;
      },
      'bad-tcp-header',
    ],
    [
      'TCP data offset past the end',
      () => {
        const p = craftTcp(v4);
        p[32] = 0xf0;
        return p;
      },
      'bad-tcp-header',
    ],
    [
      'TCP header cut short',
      () => {
        const p = craftTcp(v4).subarray(0, 30);
        p.writeUInt16BE(30, 2);
        return p;
      },
      'truncated',
    ],
    ['TCP option overrunning', () => craftTcp({ ...v4, tcpOptions: [8, 12, 0, 0] }), 'bad-tcp-options'],
    ['TCP MSS of length 3', () => craftTcp({ ...v4, tcpOptions: [2, 3, 5, 0] }), 'bad-tcp-options'],
    ['short IPv6 header', () => craftTcp(v6).subarray(0, 39), 'truncated'],
    [
      'IPv6 jumbo (payload length 0)',
      () => {
        const p = craftTcp(v6);
        p.writeUInt16BE(0, 4);
        return p;
      },
      'bad-ip-header',
    ],
    [
      'IPv6 payload length beyond the bytes',
      () => {
        const p = craftTcp(v6);
        p.writeUInt16BE(200, 4);
        return p;
      },
      'truncated',
    ],
    ['IPv6 fragment header, first', () => craftTcp({ ...v6, ipv6Extensions: [{ type: 44, body: [0, 0, 1, 0, 0, 0, 1] }] }), 'fragment'],
    ['IPv6 fragment header, offset 8', () => craftTcp({ ...v6, ipv6Extensions: [{ type: 44, body: [0, 0, 8, 0, 0, 0, 1] }] }), 'non-first-fragment'],
    [
      'IPv6 hop-by-hop not first',
      () =>
        craftTcp({
          ...v6,
          ipv6Extensions: [
            { type: 60, body: [0, 1, 4, 0, 0, 0, 0] },
            { type: 0, body: [0, 1, 4, 0, 0, 0, 0] },
          ],
        }),
      'bad-ipv6-extension',
    ],
    ['IPv6 routing with segments left', () => craftTcp({ ...v6, ipv6Extensions: [{ type: 43, body: [0, 0, 1, 0, 0, 0, 0] }] }), 'bad-ipv6-extension'],
    ['IPv6 option overrunning its header', () => craftTcp({ ...v6, ipv6Extensions: [{ type: 60, body: [0, 1, 9, 0, 0, 0, 0] }] }), 'bad-ipv6-extension'],
    ['IPv6 extension longer than the packet', () => craftTcp({ ...v6, ipv6Extensions: [{ type: 60, body: [200, 1, 4, 0, 0, 0, 0] }] }), 'truncated'],
    [
      'IPv6 ESP',
      () => {
        const p = craftTcp(v6);
        p[6] = 50;
        return p;
      },
      'not-tcp',
    ],
    [
      'IPv6 chain of 9 destination-option headers',
      () => craftTcp({ ...v6, ipv6Extensions: Array.from({ length: 9 }, () => ({ type: 60, body: [0, 1, 4, 0, 0, 0, 0] })) }),
      'bad-ipv6-extension',
    ],
  ])('%s → %s', (_name, make, expected) => {
    expect(decode(make()).failure).toBe(expected);
  });
});

describe('reply builders', () => {
  it.each([
    ['IPv4', '192.0.2.7', '198.51.100.1'],
    ['IPv6', '2001:db8::2', '2001:db8::1'],
  ])('%s SYN-ACK: swapped endpoints, MSS only, window %s, valid checksums', (_name, client, server) => {
    const { view: syn } = decode(craftTcp({ src: client, dst: server, sport: 40001, dport: 80, seq: 0xffffffff }));
    const synAck = buildSynAck(syn, 0x12345678);
    const { failure, view } = decode(synAck);
    expect(failure).toBeUndefined();
    expect(formatAddress(view, view.srcOffset)).toBe(parseIpAddress(server)!.toString('hex'));
    expect(formatAddress(view, view.dstOffset)).toBe(parseIpAddress(client)!.toString('hex'));
    expect([view.sport, view.dport, view.seq, view.ack, view.flags, view.window]).toEqual([80, 40001, 0x12345678, 0, TCP_SYN | TCP_ACK, SYN_ACK_WINDOW]);
    expect(view.mss).toBe(view.family === 4 ? 1460 : 1440);
    expect(view.payloadOffset - view.tcpOffset).toBe(24);
    if (view.family === 4) expect(ipv4HeaderChecksum(synAck, 0, 20)).toBe(0);
    expect(tcpChecksum(synAck, view.family, view.srcOffset, view.dstOffset, view.tcpOffset, view.end)).toBe(0);
  });

  it('RST for a data segment uses its ACK as sequence and acknowledges the payload', () => {
    const { view: data } = decode(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', seq: 1001, ack: 5001, flags: TCP_ACK, payload: 'abcdef' }));
    const rst = buildRst(data);
    const { view } = decode(rst);
    expect([view.seq, view.ack, view.flags, view.payloadLength]).toEqual([5001, 1007, TCP_RST | TCP_ACK, 0]);
    expect(tcpChecksum(rst, 4, 12, 16, 20, rst.length)).toBe(0);
  });
});

function formatAddress(view: TcpSegmentView, offset: number): string {
  return view.packet.toString('hex', offset, offset + view.addressLength);
}
