/**
 * The in-kernel step-1 prefilter's bytes and verdicts: what the rules compare, that no knock the
 * parser would accept is ever dropped, and what `replay` prints about it.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replayCapture } from '../../../src/cli/actions/replay.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { Step1Counters, newDecision, settle } from '../../../src/step1/decision.js';
import { formatDecisionJson, formatDecisionText, formatSummary } from '../../../src/step1/format.js';
import { requestPathBytes } from '../../../src/step1/request.js';
import { parseKnockRequest } from './knock-request.js';
import { PREFILTER_MAX_BYTES, prefilterPasses, prefilterPrefix, type PrefilterMode } from '../../../src/step1/prefilter.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { seededRandom } from './seeded-random.js';

const PATH = '/step-1-k7Qz';
const SILENT: PrefilterMode = { handshake: 'cookie', reply: 'silent' };
const FIXTURES = join(import.meta.dirname, '../../fixtures/pcap');

function segment(payload: string | Buffer, flags = TCP_ACK | TCP_PSH, src = '198.51.100.7', dst = '203.0.113.1'): TcpSegmentView {
  const view = new TcpSegmentView();
  expect(decodeTcpPacket(craftTcp({ src, dst, flags, payload, ack: 5 }), view)).toBeUndefined();
  return view;
}

describe('prefilterPrefix: the bytes every knock starts with', () => {
  it('is the request line up to the version digit: method, one space, the exact path, " HTTP/1."', () => {
    expect(prefilterPrefix(PATH).toString('latin1')).toBe('POST /step-1-k7Qz HTTP/1.');
  });

  it('keeps the first PREFILTER_MAX_BYTES bytes of a long path', () => {
    const long = `/${'a'.repeat(1000)}`;
    const prefix = prefilterPrefix(long);
    expect(prefix.length).toBe(PREFILTER_MAX_BYTES);
    expect(prefix.toString('latin1')).toBe(`POST ${long}`.slice(0, PREFILTER_MAX_BYTES));
  });
});

describe('prefilterPasses', () => {
  const prefix = prefilterPrefix(PATH);

  it('passes a curl knock and drops a wrong, longer, shorter, query or lower-case path', () => {
    expect(prefilterPasses(segment(knockRequest(PATH, 'app=a&access_key=b')), prefix, SILENT)).toBe(true);
    for (const path of ['/step-1-k7QZ', '/step-1-k7Qzx', '/step-1-k7Q', '/step-1-k7Qz?x=1', '/']) {
      expect(prefilterPasses(segment(knockRequest(path, 'app=a&access_key=b')), prefix, SILENT), path).toBe(false);
    }
    expect(prefilterPasses(segment(`GET ${PATH} HTTP/1.1\r\n\r\n`), prefix, SILENT)).toBe(false);
    expect(prefilterPasses(segment(`post ${PATH} HTTP/1.1\r\n\r\n`), prefix, SILENT)).toBe(false);
    expect(prefilterPasses(segment(`POST  ${PATH} HTTP/1.1\r\n\r\n`), prefix, SILENT)).toBe(false);
    expect(prefilterPasses(segment(`POST ${PATH} HTTP/2\r\n\r\n`), prefix, SILENT)).toBe(false);
  });

  it('drops a payload that is only part of the prefix (the kernel cannot load past the end)', () => {
    expect(prefilterPasses(segment(prefix.subarray(0, prefix.length - 1)), prefix, SILENT)).toBe(false);
    expect(prefilterPasses(segment(prefix), prefix, SILENT)).toBe(true);
  });

  it('works the same over IPv6', () => {
    expect(prefilterPasses(segment(knockRequest(PATH, 'x'), TCP_ACK, '2001:db8::7', '2001:db8::1'), prefix, SILENT)).toBe(true);
    expect(prefilterPasses(segment(knockRequest('/nope', 'x'), TCP_ACK, '2001:db8::7', '2001:db8::1'), prefix, SILENT)).toBe(false);
  });

  it('leaves segments without data to the other rules, and every SYN to the daemon in cookie mode', () => {
    for (const flags of [TCP_SYN, TCP_ACK, TCP_ACK | TCP_FIN, TCP_RST]) expect(prefilterPasses(segment('', flags), prefix, SILENT)).toBe(true);
    expect(prefilterPasses(segment('junk', TCP_SYN), prefix, SILENT)).toBe(true);
  });

  it('without a handshake, prefilters a SYN carrying data like any data segment', () => {
    const none: PrefilterMode = { handshake: 'none', reply: 'silent' };
    expect(prefilterPasses(segment(knockRequest(PATH, 'x'), TCP_SYN), prefix, none)).toBe(true);
    expect(prefilterPasses(segment('junk', TCP_SYN), prefix, none)).toBe(false);
    expect(prefilterPasses(segment('', TCP_SYN), prefix, none)).toBe(true);
  });

  it('is off with step1_reply: reset (every data segment reaches the daemon and gets its RST)', () => {
    expect(prefilterPasses(segment('junk'), prefix, { handshake: 'cookie', reply: 'reset' })).toBe(true);
  });

  it('never drops a request the parser accepts, nor one it turns away for anything but its request line', () => {
    const random = seededRandom(14);
    const base = Buffer.from(knockRequest(PATH, 'app=openvpn&access_key=K1-openvpn-alice-7f3a'), 'latin1');
    const pathBytes = requestPathBytes(PATH);
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const payload = Buffer.from(base);
      const flips = Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) payload[Math.floor(random() * payload.length)] = Math.floor(random() * 256);
      const parsed = parseKnockRequest(payload, 0, payload.length, pathBytes);
      const passes = prefilterPasses(segment(payload), prefilterPrefix(PATH), SILENT);
      if (parsed.ok) accepted++;
      if (parsed.ok || !['not-http', 'not-post', 'bad-path', 'incomplete'].includes(parsed.reason)) expect(passes).toBe(true);
    }
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('replay says which packets the kernel prefilter would have dropped', () => {
  const config = loadConfigFile(join(FIXTURES, 'config.yaml'));

  it('marks a wrong-path knock and its retransmissions, and counts them in the summary', () => {
    const lines = replayCapture(join(FIXTURES, 'wrong-path-v4.pcap'), config, false);
    const knocks = lines.filter((l) => l.includes('reason=bad-path'));
    expect(knocks.length).toBeGreaterThan(1);
    for (const line of knocks) expect(line).toMatch(/ prefilter=drop$/);
    expect(lines.filter((l) => l.includes('prefilter=drop'))).toHaveLength(knocks.length);
    expect(lines.at(-1)).toContain(`; ${knocks.length} dropped by the kernel prefilter before the daemon)`);
  });

  it('adds prefilter: "drop" to the JSON lines of dropped packets only', () => {
    const records = replayCapture(join(FIXTURES, 'prefix-path-v4.pcap'), config, true).map((l) => JSON.parse(l) as Record<string, unknown>);
    const dropped = records.filter((r) => r.prefilter === 'drop');
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped).toEqual(records.filter((r) => r.reason === 'bad-path'));
    expect(records.filter((r) => r.result === 'syn').every((r) => r.prefilter === undefined)).toBe(true);
  });

  it('marks nothing in a valid knock', () => {
    const lines = replayCapture(join(FIXTURES, 'valid-v4.pcap'), config, false);
    expect(lines.some((l) => l.includes('prefilter'))).toBe(false);
    expect(lines.at(-1)).not.toContain('prefilter');
  });
});

describe('watch and replay lines (one formatter for both)', () => {
  const decision = settle(newDecision(4, '198.51.100.7', 40000, '203.0.113.1', 80), 'rejected', 'bad-path');

  it("text: prefilter=drop at the end of a dropped packet's line, nothing otherwise", () => {
    expect(formatDecisionText(0, decision, true)).toBe('1970-01-01T00:00:00.000Z 198.51.100.7:40000 -> 203.0.113.1:80 rejected reason=bad-path prefilter=drop');
    expect(formatDecisionText(0, decision)).toBe('1970-01-01T00:00:00.000Z 198.51.100.7:40000 -> 203.0.113.1:80 rejected reason=bad-path');
  });

  it('JSON: a prefilter field on dropped packets only', () => {
    expect(JSON.parse(formatDecisionJson(0, decision, true))).toMatchObject({ result: 'rejected', reason: 'bad-path', prefilter: 'drop' });
    expect(JSON.parse(formatDecisionJson(0, decision))).not.toHaveProperty('prefilter');
  });

  it('summary: counts the dropped packets when there are any', () => {
    const counters = new Step1Counters();
    counters.count(decision);
    expect(formatSummary(counters, 3, 1)).toBe(
      '1 step-1 packets: syn=0 ignored=0 spoofed=0 granted=0 rejected=1 retransmission=0 (3 other frames skipped; 1 dropped by the kernel prefilter before the daemon)',
    );
    expect(formatSummary(counters, 3)).toBe('1 step-1 packets: syn=0 ignored=0 spoofed=0 granted=0 rejected=1 retransmission=0 (3 other frames skipped)');
  });
});
