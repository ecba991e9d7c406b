/**
 * Property: no packet, however malformed, makes the step-1 pipeline throw. One million random
 * and mutated packets (seeded, so a failure reproduces) go through the inspector, with a cookie
 * source that accepts everything so mutated payloads reach the HTTP parser and auth.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCaptureFile } from '../../../src/capture/pcap-file.js';
import { ipPacketOf } from '../../../src/packet/link.js';
import type { CookieSource } from '../../../src/step1/cookie.js';
import { STEP1_RESULTS } from '../../../src/step1/decision.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { OPENVPN_KEYS, STEP1_PATH, fixtureConfig } from './fixture-config.js';
import { seededRandom as random } from './seeded-random.js';

const PACKETS = 1_000_000;
const TIME_LIMIT_MS = 60_000;
const FIXTURES = join(import.meta.dirname, '../../fixtures/pcap');

const acceptAll: CookieSource = { issue: () => 1, verify: () => true };

function seeds(): Buffer[] {
  const captured = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.pcap'))
    .flatMap((f) => readCaptureFile(join(FIXTURES, f)).map((c) => ipPacketOf(c.linkType, c.frame)!));
  const request = knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}&otp=123456`);
  return [
    ...captured,
    craftTcp({
      src: '192.0.2.1',
      dst: '192.0.2.2',
      flags: 0x18,
      ack: 2,
      payload: request,
      ipOptions: [7, 7, 4, 0, 0, 0, 0],
      tcpOptions: [2, 4, 5, 0xb4, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0],
    }),
    craftTcp({
      src: '2001:db8::1',
      dst: '2001:db8::2',
      flags: 0x18,
      ack: 2,
      payload: request,
      ipv6Extensions: [
        { type: 0, body: [0, 1, 4, 0, 0, 0, 0] },
        { type: 43, body: [0, 0, 0, 0, 0, 0, 0] },
      ],
    }),
    craftTcp({ src: '2001:db8::1', dst: '2001:db8::2', flags: 0x02, payload: request }),
  ];
}

describe('step-1 fuzz', () => {
  it(`${PACKETS.toLocaleString('en')} random and mutated packets never throw out of the inspector`, () => {
    const next = random(0x6b6e6f63);
    const corpus = seeds();
    const inspectors = [
      new Inspector(fixtureConfig({ rateLimitPerMinute: 1e9 }), { cookie: acceptAll }),
      new Inspector(fixtureConfig({ rateLimitPerMinute: 1e9, step1Handshake: 'none', step1Reply: 'reset' }), { cookie: acceptAll }),
    ];
    const started = Date.now();
    let sent = 0;
    for (; sent < PACKETS && Date.now() - started < TIME_LIMIT_MS; sent++) {
      const packet = mutate(corpus[Math.floor(next() * corpus.length)]!, next);
      const decision = inspectors[sent & 1]!.inspect(packet);
      if (!STEP1_RESULTS.includes(decision.result)) throw new Error(`unknown result for ${packet.toString('hex')}`);
    }
    const elapsed = Date.now() - started;
    process.stdout.write(`fuzz: ${sent} packets in ${elapsed} ms\n`);
    expect(sent).toBe(PACKETS);
    const results = inspectors.map((i) => i.counters.results);
    // The mutations must reach every stage, or the test proves little.
    expect(results[0]!.granted + results[1]!.granted).toBeGreaterThan(0);
    expect(results[0]!.syn).toBeGreaterThan(0);
    expect(inspectors[0]!.counters.reasons.get('bad-body')! + inspectors[0]!.counters.reasons.get('bad-key')!).toBeGreaterThan(0);
    expect(inspectors[0]!.counters.reasons.get('truncated')!).toBeGreaterThan(0);
  }, 120_000);
});

/** One of: flip bytes, cut the packet, grow it, overwrite a length-ish field, or pure noise. */
function mutate(seed: Buffer, next: () => number): Buffer {
  const kind = Math.floor(next() * 6);
  if (kind === 0) {
    const noise = Buffer.allocUnsafe(Math.floor(next() * 120));
    for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(next() * 256);
    if (noise.length > 0) noise[0] = next() < 0.5 ? 0x45 : 0x60; // mostly plausible versions
    return noise;
  }
  const packet = Buffer.from(seed);
  // A fresh sequence number, so retransmission dedup does not hide the mutated payload.
  randomizeSequence(packet, next);
  if (kind === 1) return packet.subarray(0, Math.floor(next() * packet.length));
  if (kind === 2) return Buffer.concat([packet, Buffer.alloc(Math.floor(next() * 40), Math.floor(next() * 256))]);
  const flips = kind === 3 ? 1 : 1 + Math.floor(next() * 8);
  const headerBiased = kind === 4;
  for (let i = 0; i < flips; i++) {
    const span = headerBiased ? Math.min(packet.length, 80) : packet.length;
    if (span === 0) break;
    packet[Math.floor(next() * span)] = Math.floor(next() * 256);
  }
  return packet;
}

function randomizeSequence(packet: Buffer, next: () => number): void {
  const version = packet[0]! >> 4;
  const tcp = version === 4 ? (packet[0]! & 0x0f) * 4 : 40;
  if (version === 4 && packet[9] !== 6) return;
  if (version === 6 && packet[6] !== 6) return;
  if (packet.length >= tcp + 8) packet.writeUInt32BE(Math.floor(next() * 0x100000000), tcp + 4);
}
