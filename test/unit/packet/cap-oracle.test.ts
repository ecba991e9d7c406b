/**
 * Differential test: our decoder against `cap`'s decoders (an independent implementation) on
 * every packet of the real captures and on crafted ones; and our SYN-ACKs read back by
 * tcpdump, which checks both checksums itself.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCaptureFile } from '../../../src/capture/pcap-file.js';
import { formatIPv4 } from '../../../src/packet/address.js';
import { buildRst, buildSynAck } from '../../../src/packet/build.js';
import { TCP_ACK, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { ipPacketOf } from '../../../src/packet/link.js';
import { writePcap } from '../step1/pcap-writer.js';
import { craftTcp } from './craft.js';

interface CapResult {
  info: Record<string, number | string | undefined>;
  offset: number;
  hdrlen?: number;
}
interface CapDecoders {
  IPV4(b: Buffer, offset?: number): CapResult;
  IPV6(b: Buffer, offset?: number): CapResult;
  TCP(b: Buffer, offset?: number): CapResult;
}
const decoders = (createRequire(import.meta.url)('cap') as { decoders: CapDecoders }).decoders;
const FIXTURES = join(import.meta.dirname, '../../fixtures/pcap');

/** cap prints IPv6 addresses as 16 colon-separated bytes. */
function capIPv6(packet: Buffer, offset: number): string {
  return [...packet.subarray(offset, offset + 16)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function compareWithCap(packet: Buffer): void {
  const view = new TcpSegmentView();
  expect(decodeTcpPacket(packet, view)).toBeUndefined();
  const ip = view.family === 4 ? decoders.IPV4(packet, 0) : decoders.IPV6(packet, 0);
  const tcp = decoders.TCP(packet, ip.offset);
  expect(ip.offset).toBe(view.tcpOffset);
  if (view.family === 4) expect([ip.info.srcaddr, ip.info.dstaddr]).toEqual([formatIPv4(packet, 12), formatIPv4(packet, 16)]);
  else expect([ip.info.srcaddr, ip.info.dstaddr]).toEqual([capIPv6(packet, 8), capIPv6(packet, 24)]);
  expect(ip.info.protocol).toBe(6);
  expect({
    sport: tcp.info.srcport,
    dport: tcp.info.dstport,
    seq: tcp.info.seqno,
    flags: Number(tcp.info.flags) & 0xff,
    window: tcp.info.window,
    payloadOffset: tcp.offset,
  }).toEqual({
    sport: view.sport,
    dport: view.dport,
    seq: view.seq,
    flags: view.flags,
    window: view.window,
    payloadOffset: view.payloadOffset,
  });
  if ((view.flags & TCP_ACK) !== 0) expect(tcp.info.ackno).toBe(view.ack);
}

describe('decoder agrees with cap', () => {
  const packets = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.pcap'))
    .flatMap((f) => readCaptureFile(join(FIXTURES, f)).map((c) => ipPacketOf(c.linkType, c.frame)!));

  it(`on all ${packets.length} packets of the real captures`, () => {
    expect(packets.length).toBeGreaterThan(80);
    for (const packet of packets) compareWithCap(packet);
  });

  it('on crafted packets with IPv4 options, IPv6 extension headers and TCP options', () => {
    compareWithCap(
      craftTcp({
        src: '192.0.2.1',
        dst: '192.0.2.2',
        ipOptions: [1, 1, 1, 0],
        tcpOptions: [2, 4, 5, 0xb4, 1, 3, 3, 7],
        flags: TCP_ACK,
        ack: 99,
        payload: 'data',
      }),
    );
    compareWithCap(
      craftTcp({
        src: '2001:db8::1',
        dst: '2001:db8::2',
        ipv6Extensions: [
          { type: 0, body: [0, 1, 4, 0, 0, 0, 0] },
          { type: 60, body: [1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
        ],
        payload: 'x',
      }),
    );
  });

  it('on our own SYN-ACKs and RSTs', () => {
    for (const [src, dst] of [
      ['192.0.2.1', '198.51.100.1'],
      ['2001:db8::1', '2001:db8::2'],
    ] as const) {
      const view = new TcpSegmentView();
      decodeTcpPacket(craftTcp({ src, dst, seq: 5 }), view);
      compareWithCap(buildSynAck(view, 0xdeadbeef));
      compareWithCap(buildRst(view));
    }
  });
});

function tcpdumpVerbose(frames: Array<{ timeMs: number; frame: Buffer }>): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kp-cksum-')), 'replies.pcap');
  writeFileSync(file, writePcap(frames, 101));
  return execFileSync('tcpdump', ['-nn', '-vv', '-r', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

const hasTcpdump = (() => {
  try {
    execFileSync('tcpdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasTcpdump)('tcpdump verifies our checksums', () => {
  it('finds the IPv4 header and TCP checksums of SYN-ACKs and RSTs (IPv4 and IPv6) correct', () => {
    const frames = (['192.0.2.1', '2001:db8::1'] as const).flatMap((src) => {
      const view = new TcpSegmentView();
      decodeTcpPacket(craftTcp({ src, dst: src === '192.0.2.1' ? '198.51.100.1' : '2001:db8::2', seq: 77, tcpOptions: [2, 4, 5, 0xb4] }), view);
      return [buildSynAck(view, 0x01020304), buildRst(view)].map((frame) => ({ timeMs: 0, frame }));
    });
    // tcpdump says "(correct)" for each TCP checksum and only mentions an IPv4 header checksum when bad.
    const broken = Buffer.from(frames[0]!.frame);
    broken[10] = broken[10]! ^ 0xff;
    const text = tcpdumpVerbose([...frames, { timeMs: 0, frame: broken }]);
    expect(text.match(/cksum 0x[0-9a-f]+ \(correct\)/g)?.length).toBe(5); // the broken copy keeps a correct TCP checksum
    expect(text.match(/bad cksum/g)?.length).toBe(1); // only the one broken on purpose
    expect(text).not.toMatch(/incorrect/);
  });
});
