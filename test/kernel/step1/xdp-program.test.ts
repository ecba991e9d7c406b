/**
 * The step-1 XDP program against the TypeScript it accelerates, in this kernel, without
 * attaching it (BPF_PROG_TEST_RUN): the same SYN gives byte for byte the SYN-ACK buildSynAck
 * builds with the daemon's KeyedCookieSource (IPv4 and IPv6, with and without TCP options, with
 * Fast Open data); a data segment acknowledging that SYN-ACK passes, and the daemon's cookie
 * check accepts it; a bad cookie or a wrong path is dropped and counted; TCP options are judged
 * as the daemon's decoder judges them (a SYN is answered exactly when the daemon would answer it,
 * a segment whose options it refuses is dropped and counted); everything the program
 * does not handle (other ports and addresses, IP options, fragments, IPv6 extension headers,
 * VLAN tags) passes with its bytes untouched.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Step1XdpProgram, XDP_ACTION, type XdpCounters, type XdpSettings } from '../../../src/capture/xdp.js';
import { buildSynAck } from '../../../src/packet/build.js';
import { TCP_ACK, TCP_PSH, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { COOKIE_SLOT_MS, KeyedCookieSource } from '../../../src/step1/cookie.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { craftTcp, knockRequest } from '../../unit/packet/craft.js';
import { fixtureConfig } from '../../unit/step1/fixture-config.js';
import { seededRandom } from '../../unit/step1/seeded-random.js';

const FILE = 'test/kernel/step1/xdp-program.test.ts';
const skip = announceSkip(FILE, kernelSkipReason([]));

const PATH = '/k-9f3c1d2e7a';
const GATEWAY = { 4: '198.51.100.1', 6: '2001:db8:1::1' } as const;
const CLIENT = { 4: '203.0.113.7', 6: '2001:db8:2::7' } as const;
const CLIENT_MAC = Buffer.from('02aabbccdd01', 'hex');
const GATEWAY_MAC = Buffer.from('02aabbccdd02', 'hex');
/** What a Linux client's SYN carries: MSS, SACK permitted, timestamps, NOP, window scale. */
const LINUX_SYN_OPTIONS = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7];
/** Option lists at the edges of what the daemon's decoder accepts (each padded with zeros to 4 bytes). */
const EDGE_OPTIONS = [
  [2, 3, 5, 0], // MSS of 3 bytes
  [2, 6, 5, 0xb4, 0, 0], // MSS of 6 bytes
  [8, 0], // length below 2
  [8, 1], // length below 2
  [1, 1, 3, 10], // runs past the header
  [1, 1, 1, 3], // a kind without its length byte
  [...Array<number>(39).fill(1), 2], // the same at the 40th byte
  [...Array<number>(38).fill(1), 3, 3], // an option ending exactly at the 40th byte
  [0, 2, 1, 0], // end of list, then bytes that would be malformed
  [1, 1, 1, 1],
  [30, 40, ...Array<number>(38).fill(7)], // one option filling the whole header
];

/** Deterministic option lists of every length, biased towards the kinds and lengths that matter. */
function randomOptionLists(count: number): number[][] {
  const random = seededRandom(0x2545f491);
  const next = (n: number): number => Math.floor(random() * n);
  const byte = (): number => [0, 1, 2, 3, 4, 8, next(256)][next(7)]!;
  return Array.from({ length: count }, () => Array.from({ length: 1 + next(40) }, () => (next(3) === 0 ? next(12) : byte())));
}

function frame(ip: Buffer, vlan = false): Buffer {
  const ethertype = Buffer.alloc(2);
  ethertype.writeUInt16BE(ip[0]! >> 4 === 4 ? 0x0800 : 0x86dd);
  const tag = vlan ? Buffer.from([0x81, 0x00, 0x00, 0x07]) : Buffer.alloc(0);
  return Buffer.concat([GATEWAY_MAC, CLIENT_MAC, tag, ethertype, ip]);
}

function view(ip: Buffer): TcpSegmentView {
  const v = new TcpSegmentView();
  expect(decodeTcpPacket(ip, v)).toBeUndefined();
  return v;
}

describe.skipIf(skip)('step-1 XDP program (BPF_PROG_TEST_RUN) against the TypeScript path', () => {
  let program: Step1XdpProgram;
  const secret = randomBytes(16);
  const cookie = new KeyedCookieSource(secret);
  const settings: XdpSettings = { cookieSecret: secret, step1Port: 80, step1Path: PATH, handshake: 'cookie', reply: 'silent', ipv6: true };

  beforeAll(() => {
    program = Step1XdpProgram.load();
    program.configure(settings);
    program.setAddresses([GATEWAY[4], GATEWAY[6]]);
  });
  afterAll(() => program?.close());

  /** Runs the program once; the counters' change with it. */
  function run(ip: Buffer, vlan = false): { action: number; out: Buffer; counted: Partial<XdpCounters> } {
    const before = program.counters();
    const { action, frame: out } = program.testRun(frame(ip, vlan));
    const after = program.counters();
    const counted = Object.fromEntries(
      Object.entries(after)
        .filter(([name, n]) => n !== before[name as keyof XdpCounters])
        .map(([name, n]) => [name, n - before[name as keyof XdpCounters]]),
    );
    return { action, out, counted };
  }

  /** The SYN-ACK the program sent, and the one the daemon builds for the same SYN now (retried across a slot boundary). */
  function answerBoth(syn: Buffer): { xdp: Buffer; daemon: Buffer; out: Buffer; counted: Partial<XdpCounters> } {
    for (;;) {
      const slot = Math.floor(Date.now() / COOKIE_SLOT_MS);
      const { action, out, counted } = run(syn);
      const now = Date.now();
      if (Math.floor(now / COOKIE_SLOT_MS) !== slot) continue;
      expect(action).toBe(XDP_ACTION.tx);
      const v = view(syn);
      return { xdp: out.subarray(14), daemon: buildSynAck(v, cookie.issue(v, now)), out, counted };
    }
  }

  for (const family of [4, 6] as const) {
    const base = { src: CLIENT[family], dst: GATEWAY[family], sport: 41234, dport: 80, seq: 0x8badf00d, flags: TCP_SYN };

    it(`IPv${family}: a SYN gets byte for byte the daemon's SYN-ACK, MAC addresses swapped, counted once`, () => {
      for (const syn of [
        craftTcp(base),
        craftTcp({ ...base, tcpOptions: LINUX_SYN_OPTIONS, seq: 0xffffffff }),
        craftTcp({ ...base, payload: 'x'.repeat(300) }),
      ]) {
        const { xdp, daemon, out, counted } = answerBoth(syn);
        expect(xdp.toString('hex')).toBe(daemon.toString('hex'));
        expect(out.subarray(0, 6)).toEqual(CLIENT_MAC);
        expect(out.subarray(6, 12)).toEqual(GATEWAY_MAC);
        expect(counted).toEqual({ syn_answered: 1 });
      }
    });

    it(`IPv${family}: the knock acknowledging XDP's SYN-ACK passes and the daemon's cookie check accepts it; a bad cookie or a wrong path is dropped`, () => {
      const { xdp } = answerBoth(craftTcp(base));
      const isn = view(xdp).seq;
      const knock = { ...base, seq: base.seq + 1, ack: (isn + 1) >>> 0, flags: TCP_ACK | TCP_PSH, payload: knockRequest(PATH, 'key=0123456789') };
      const valid = craftTcp(knock);
      expect(cookie.verify(view(valid), Date.now())).toBe(true);
      expect(run(valid)).toEqual({ action: XDP_ACTION.pass, out: frame(valid), counted: { passed_knock: 1 } });
      const forged = craftTcp({ ...knock, ack: (isn + 5) >>> 0 });
      expect(cookie.verify(view(forged), Date.now())).toBe(false);
      expect(run(forged)).toMatchObject({ action: XDP_ACTION.drop, counted: { bad_cookie: 1 } });
      for (const payload of [knockRequest('/k-9f3c1d2e7', 'key=1'), knockRequest(`${PATH}x`, 'key=1'), 'GET / HTTP/1.1\r\n\r\n', `POST ${PATH} HTTP`])
        expect(run(craftTcp({ ...knock, payload }))).toMatchObject({ action: XDP_ACTION.drop, counted: { bad_prefix: 1 } });
    });

    it(`IPv${family}: TCP options: a SYN is answered exactly when the daemon answers it, else dropped and counted`, () => {
      const inspector = new Inspector(fixtureConfig(), { cookie });
      let refused = 0;
      for (const tcpOptions of [...EDGE_OPTIONS, ...randomOptionLists(80)]) {
        const syn = craftTcp({ ...base, tcpOptions });
        const daemon = inspector.inspect(syn);
        if (daemon.reply === undefined) {
          expect(daemon.reason, tcpOptions.join(',')).toBe('bad-tcp-options');
          expect(run(syn), tcpOptions.join(',')).toMatchObject({ action: XDP_ACTION.drop, counted: { bad_options: 1 } });
          refused += 1;
        } else {
          const { xdp, daemon: expected } = answerBoth(syn);
          expect(xdp.toString('hex'), tcpOptions.join(',')).toBe(expected.toString('hex'));
        }
      }
      // Both outcomes were exercised, many times each.
      expect(refused).toBeGreaterThan(20);
      const knock = craftTcp({ ...base, flags: TCP_ACK | TCP_PSH, ack: 5, tcpOptions: [2, 3, 5, 0], payload: knockRequest(PATH, 'key=1') });
      expect(run(knock)).toMatchObject({ action: XDP_ACTION.drop, counted: { bad_options: 1 } });
    });

    it(`IPv${family}: what the program does not handle passes untouched`, () => {
      const untouched = [
        craftTcp({ ...base, dport: 81 }),
        craftTcp({ ...base, dst: family === 4 ? '198.51.100.2' : '2001:db8:1::2' }),
        craftTcp({ ...base, flags: TCP_SYN | TCP_ACK }),
        craftTcp({ ...base, flags: TCP_ACK }),
        ...(family === 4
          ? [craftTcp({ ...base, ipOptions: [1, 1, 1, 0] }), craftTcp({ ...base, fragmentField: 0x2000 })]
          : [craftTcp({ ...base, ipv6Extensions: [{ type: 60, body: [0, 1, 4, 0, 0, 0, 0] }] })]),
      ];
      for (const ip of untouched) expect(run(ip)).toMatchObject({ action: XDP_ACTION.pass, out: frame(ip) });
      const tagged = craftTcp(base);
      expect(run(tagged, true)).toEqual({ action: XDP_ACTION.pass, out: frame(tagged, true), counted: {} });
    });
  }

  it('IPv4 with a bad header checksum passes (the stack drops it before any rule)', () => {
    const syn = craftTcp({ src: CLIENT[4], dst: GATEWAY[4], flags: TCP_SYN });
    syn[10]! ^= 0xff;
    expect(run(syn)).toEqual({ action: XDP_ACTION.pass, out: frame(syn), counted: {} });
  });

  it('step1_handshake: none answers no SYN: pure SYNs dropped, a Fast Open SYN carrying the knock passes, other data dropped', () => {
    program.configure({ ...settings, handshake: 'none' });
    try {
      const base = { src: CLIENT[6], dst: GATEWAY[6], flags: TCP_SYN };
      expect(run(craftTcp(base))).toMatchObject({ action: XDP_ACTION.drop, counted: { syn_dropped: 1 } });
      const fastOpen = craftTcp({ ...base, payload: knockRequest(PATH, 'key=1') });
      expect(run(fastOpen)).toEqual({ action: XDP_ACTION.pass, out: frame(fastOpen), counted: { passed_knock: 1 } });
      expect(run(craftTcp({ ...base, payload: 'GET /' }))).toMatchObject({ action: XDP_ACTION.drop, counted: { bad_prefix: 1 } });
      expect(run(craftTcp({ ...base, flags: TCP_ACK, ack: 5, payload: knockRequest(PATH, 'key=1') }))).toMatchObject({
        action: XDP_ACTION.drop,
        counted: { bad_cookie: 1 },
      });
    } finally {
      program.configure(settings);
    }
  });

  it('step1_reply: reset still answers SYNs but leaves every data segment to the daemon (each gets its RST)', () => {
    program.configure({ ...settings, reply: 'reset' });
    try {
      const junk = craftTcp({ src: CLIENT[4], dst: GATEWAY[4], flags: TCP_ACK, ack: 5, payload: 'junk' });
      expect(run(junk)).toEqual({ action: XDP_ACTION.pass, out: frame(junk), counted: { passed_other: 1 } });
      expect(run(craftTcp({ src: CLIENT[4], dst: GATEWAY[4], flags: TCP_SYN })).action).toBe(XDP_ACTION.tx);
    } finally {
      program.configure(settings);
    }
  });

  it('ipv6: false leaves IPv6 to the kernel rules (which drop it)', () => {
    program.configure({ ...settings, ipv6: false });
    try {
      const syn = craftTcp({ src: CLIENT[6], dst: GATEWAY[6], flags: TCP_SYN });
      expect(run(syn)).toEqual({ action: XDP_ACTION.pass, out: frame(syn), counted: {} });
    } finally {
      program.configure(settings);
    }
  });
});
