import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseCapture, readCaptureFile } from '../../../src/capture/pcap-file.js';
import { buildProgram } from '../../../src/cli/main.js';
import { replayCapture } from '../../../src/cli/actions/replay.js';
import type { Step1Decision } from '../../../src/step1/decision.js';
import { TrafficInspector } from '../../../src/step1/traffic.js';
import { TCP_ACK, TCP_SYN } from '../../../src/packet/decode.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { OPENVPN_KEYS, STEP1_PATH, fixtureConfig } from './fixture-config.js';
import { writePcap, writePcapng, type Frame } from './pcap-writer.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures/pcap');
const fixture = (name: string) => join(FIXTURES, name);

function replay(frames: Iterable<{ linkType: number; frame: Buffer; timeMs: number }>): Array<{ timeMs: number; decision: Step1Decision }> {
  const traffic = new TrafficInspector(fixtureConfig());
  const out: Array<{ timeMs: number; decision: Step1Decision }> = [];
  for (const { linkType, frame, timeMs } of frames) {
    const decision = traffic.feed(linkType, frame, timeMs);
    if (decision) out.push({ timeMs, decision });
  }
  return out;
}

/** Every fixture: the knock's own decision (the first data segment's). */
const EXPECTED: Record<string, { result: 'granted' | 'rejected'; reason?: string; app?: string; user?: string; family: 4 | 6 }> = {
  'valid-v4.pcap': { result: 'granted', app: 'openvpn', user: 'alice', family: 4 },
  'valid-v6.pcap': { result: 'granted', app: 'openvpn', user: 'bob', family: 6 },
  'valid-otp-v4.pcap': { result: 'granted', app: 'ssh', user: 'carol', family: 4 },
  'otp-missing-v4.pcap': { result: 'rejected', reason: 'otp-required', family: 4 },
  'wrong-key-v4.pcap': { result: 'rejected', reason: 'bad-key', family: 4 },
  'wrong-key-v6.pcap': { result: 'rejected', reason: 'bad-key', family: 6 },
  'wrong-app-v4.pcap': { result: 'rejected', reason: 'unknown-app', family: 4 },
  'other-app-key-v4.pcap': { result: 'rejected', reason: 'bad-key', family: 4 },
  'empty-body-v4.pcap': { result: 'rejected', reason: 'bad-body', family: 4 },
  'get-v4.pcap': { result: 'rejected', reason: 'not-post', family: 4 },
  'json-v4.pcap': { result: 'rejected', reason: 'bad-content-type', family: 4 },
  'oversize-v4.pcap': { result: 'rejected', reason: 'too-large', family: 4 },
  'wrong-path-v4.pcap': { result: 'rejected', reason: 'bad-path', family: 4 },
  'prefix-path-v4.pcap': { result: 'rejected', reason: 'bad-path', family: 4 },
  'suffix-path-v6.pcap': { result: 'rejected', reason: 'bad-path', family: 6 },
};

describe('replay of real curl knocks', () => {
  it('has an expectation for every committed capture', () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.pcap') && f !== 'any-sll2.pcap');
    expect(files.sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.entries(EXPECTED))('%s: SYN, handshake ACK, the knock, then only retransmissions of it', (file, expected) => {
    const decisions = replay(readCaptureFile(fixture(file))).map((d) => d.decision);
    const [syn, handshakeAck, knock, ...rest] = decisions;
    expect(syn).toMatchObject({ result: 'syn', family: expected.family, dport: 80 });
    expect(handshakeAck).toMatchObject({ result: 'ignored', reason: 'pure-ack' });
    expect(knock).toMatchObject(expected);
    expect(rest.length).toBeGreaterThan(0);
    for (const later of rest) expect(later).toMatchObject({ result: 'retransmission', reason: expected.reason ?? 'granted', sport: knock!.sport });
  });

  it('reads a Linux cooked (SLL2) capture of two knocks, IPv4 and IPv6', () => {
    const frames = readCaptureFile(fixture('any-sll2.pcap'));
    expect(frames[0]!.linkType).toBe(276);
    const knocks = replay(frames)
      .map((d) => d.decision)
      .filter((d) => d.result === 'granted' || d.result === 'rejected');
    expect(knocks).toMatchObject([
      { result: 'granted', family: 4, user: 'alice' },
      { result: 'rejected', reason: 'bad-key', family: 6 },
    ]);
  });

  it('calls the request spoofed when the capture lacks the SYN-ACK it acknowledges', () => {
    const frames = readCaptureFile(fixture('valid-v4.pcap'));
    const withoutSynAck = frames.filter((f) => f.frame.readUInt16BE(34) !== 80); // Ethernet+IPv4: TCP source port
    expect(withoutSynAck.length).toBe(frames.length - 1);
    expect(replay(withoutSynAck).map((d) => d.decision.result)).toEqual(['syn', 'ignored', 'spoofed', 'spoofed', 'spoofed']);
  });
});

describe('replay cookie check (SYN-ACKs seen in the capture)', () => {
  it('verifies only the segment that acknowledges a seen SYN-ACK and starts right after the handshake', () => {
    const client = { src: '192.0.2.7', dst: '198.51.100.1', sport: 40001, dport: 80 };
    const synAck = craftTcp({ src: client.dst, dst: client.src, sport: 80, dport: client.sport, seq: 9000, ack: 501, flags: TCP_SYN | TCP_ACK });
    const request = knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`);
    const data = (seq: number, ack: number, sport = client.sport) => craftTcp({ ...client, sport, seq, ack, flags: TCP_ACK, payload: request });
    const frames = [synAck, data(501, 9002), data(520, 9001), data(501, 9001, 40002), data(501, 9001)].map((frame, i) => ({ linkType: 101, frame, timeMs: i }));
    expect(replay(frames).map((d) => `${d.decision.result}:${d.decision.reason ?? ''}`)).toEqual([
      'spoofed:bad-cookie',
      'spoofed:bad-cookie',
      'spoofed:bad-cookie',
      'granted:',
    ]);
  });
});

describe('capture formats and link types', () => {
  const ethernetFrames = readCaptureFile(fixture('valid-v6.pcap'));
  const reference = replay(ethernetFrames).map(({ timeMs, decision }) => ({ timeMs: Math.round(timeMs), ...decision, reply: undefined }));
  const ip = (f: { frame: Buffer }) => f.frame.subarray(14);
  const sll = (f: { frame: Buffer }) => Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x86, 0xdd]), ip(f)]);
  const sll2 = (f: { frame: Buffer }) => Buffer.concat([Buffer.from([0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]), ip(f)]);
  const vlan = (f: { frame: Buffer }) => Buffer.concat([f.frame.subarray(0, 12), Buffer.from([0x81, 0, 0, 7]), f.frame.subarray(12)]);
  const variants: Array<[string, Buffer]> = [
    [
      'pcap big-endian, Ethernet with an 802.1Q tag',
      writePcap(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: vlan(f) })),
        1,
        { bigEndian: true },
      ),
    ],
    [
      'pcap nanosecond, raw IP (101)',
      writePcap(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: ip(f) })),
        101,
        { nano: true },
      ),
    ],
    [
      'pcap, DLT_RAW 12',
      writePcap(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: ip(f) })),
        12,
      ),
    ],
    [
      'pcap, DLT_RAW 14',
      writePcap(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: ip(f) })),
        14,
      ),
    ],
    [
      'pcap, Linux SLL',
      writePcap(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: sll(f) })),
        113,
      ),
    ],
    [
      'pcapng little-endian, Linux SLL2, µs',
      writePcapng(
        ethernetFrames.map((f) => ({ timeMs: f.timeMs, frame: sll2(f) })),
        276,
      ),
    ],
    [
      'pcapng big-endian, Ethernet, ns',
      writePcapng(
        ethernetFrames.map((f): Frame => ({ timeMs: f.timeMs, frame: f.frame })),
        1,
        { bigEndian: true, tsresol: 9 },
      ),
    ],
  ];
  it.each(variants)('%s gives the same decisions at the same times', (_name, file) => {
    const decisions = replay(parseCapture(file)).map(({ timeMs, decision }) => ({ timeMs: Math.round(timeMs), ...decision, reply: undefined }));
    expect(decisions).toEqual(reference);
  });

  it('refuses a file that is not a capture, and a truncated one, with the file named', () => {
    expect(() => [...parseCapture(Buffer.from('hello world'), 'x.txt')]).toThrow(/x\.txt: not a pcap or pcapng file/);
    const whole = writePcap(ethernetFrames, 1);
    expect(() => [...parseCapture(whole.subarray(0, whole.length - 3), 'cut.pcap')]).toThrow(/cut\.pcap: truncated record/);
  });
});

describe('knock-port replay', () => {
  afterEach(() => vi.restoreAllMocks());

  async function run(args: string[]): Promise<string> {
    let out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += chunk.toString();
      return true;
    });
    await buildProgram().parseAsync(['node', 'knock-port', 'replay', ...args]);
    return out;
  }

  it('prints granted for a real curl knock, one JSON object per packet with --json', async () => {
    const lines = (await run([fixture('valid-v4.pcap'), '-c', fixture('config.yaml'), '--json']))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.result)).toEqual(['syn', 'ignored', 'granted', 'retransmission', 'retransmission']);
    expect(lines[2]).toEqual({
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      src: '10.213.0.2',
      sport: 41001,
      dst: '10.213.0.1',
      dport: 80,
      result: 'granted',
      app: 'openvpn',
      user: 'alice',
    });
  });

  it('ends plain output with a summary line', async () => {
    const lines = (await run([fixture('wrong-key-v6.pcap'), '-c', fixture('config.yaml')])).trim().split('\n');
    expect(lines[2]).toMatch(/\[fd00:213::2\]:\d+ -> \[fd00:213::1\]:80 rejected reason=bad-key$/);
    expect(lines.at(-1)).toBe('5 step-1 packets: syn=1 ignored=1 spoofed=0 granted=0 rejected=1 retransmission=2 (1 other frames skipped)');
  });

  it('replays with the same lines whether given the file or its pcapng copy', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-replay-'));
    const copy = join(dir, 'copy.pcapng');
    writeFileSync(copy, writePcapng(readCaptureFile(fixture('valid-v4.pcap')), 1));
    expect(replayCapture(copy, fixtureConfig(), true)).toEqual(replayCapture(fixture('valid-v4.pcap'), fixtureConfig(), true));
  });
});
