import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CLUSTER_MESSAGE_VERSION,
  clusterSigningKey,
  decodeClusterMessage,
  encodeClusterMessage,
  MAX_CLOCK_SKEW_MS,
  MAX_CLUSTER_MESSAGE_BYTES,
  ClusterMessageError,
  type ClusterMessage,
} from '../../../src/cluster/message.js';

const KEY = Buffer.from('e0c4b2a98f1d3c5e7a9b0d2f4e6a8c1b3d5f7e9a0c2e4b6d8f1a3c5e7b9d0f2a');
const OTHER_KEY = Buffer.from('9d1f3b5a7c9e0b2d4f6a8c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d');
const NOW = 1_780_000_000_000;

const GRANT: ClusterMessage = {
  type: 'grant',
  body: { kind: 'service', ip: '2001:db8::7', app: 'ssh', user: 'alice', expiresAt: NOW + 3_600_000, gateway: 'gw-a', issuedAt: NOW },
};
const WINDOW: ClusterMessage = {
  type: 'grant',
  body: { kind: 'step2', ip: '203.0.113.9', app: 'openvpn', user: 'key0', expiresAt: NOW + 5_000, gateway: 'gw-b', issuedAt: NOW - 1_000 },
};
const REVOKE_ALL: ClusterMessage = { type: 'revoke', body: { ip: '203.0.113.9', gateway: 'gw-a', issuedAt: NOW } };
const REVOKE_APP: ClusterMessage = { type: 'revoke', body: { ip: '203.0.113.9', app: 'ssh', gateway: 'gw-a', issuedAt: NOW } };
const USED_CODE: ClusterMessage = {
  type: 'used-code',
  body: { scope: '0123456789abcdef0123456789abcdef', counter: 59_333_333, expiresAt: NOW + 90_000, gateway: 'gw-b', issuedAt: NOW },
};
const MESSAGES = [GRANT, WINDOW, REVOKE_ALL, REVOKE_APP, USED_CODE];

/** The wire object of an encoded message, to tamper with. */
const wire = (message: ClusterMessage) =>
  JSON.parse(encodeClusterMessage(KEY, message)) as { v: unknown; type: unknown; body: Record<string, unknown>; sig?: unknown };
const decode = (text: string, now = NOW) => decodeClusterMessage(KEY, text, now);

/** A different value of the same kind for each field, still valid on its own. */
const OTHER_VALUE: Record<string, unknown> = {
  kind: 'step2',
  ip: '2001:db8::8',
  app: 'rdp',
  user: 'mallory',
  expiresAt: NOW + 86_400_000,
  gateway: 'gw-evil',
  issuedAt: NOW + 1,
  scope: 'fedcba9876543210fedcba9876543210',
  counter: 59_333_334,
};

describe('cluster messages', () => {
  it.each(MESSAGES.map((message) => [message.type, message] as const))('round-trips a %s message', (_type, message) => {
    const text = encodeClusterMessage(KEY, message);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_CLUSTER_MESSAGE_BYTES);
    expect(decode(text)).toEqual({ ok: true, message });
    expect(JSON.parse(text)).toMatchObject({ v: CLUSTER_MESSAGE_VERSION, type: message.type, sig: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('sends and signs only the fields of the type', () => {
    const extra = { type: 'revoke', body: { ...REVOKE_ALL.body, note: 'x' } } as unknown as ClusterMessage;
    expect(encodeClusterMessage(KEY, extra)).toBe(encodeClusterMessage(KEY, REVOKE_ALL));
  });

  it.each(MESSAGES.map((message) => [message.type, message] as const))('fails on every single-field change of a %s message', (_type, message) => {
    const original = wire(message);
    for (const field of [...Object.keys(original.body), ...(message.type === 'revoke' && !('app' in message.body) ? ['app'] : [])]) {
      const tampered = {
        ...original,
        body: { ...original.body, [field]: field === 'kind' && original.body.kind === 'step2' ? 'service' : OTHER_VALUE[field] },
      };
      expect(decode(JSON.stringify(tampered)), field).toEqual({ ok: false, reason: 'bad-signature' });
    }
    if (message.type === 'revoke' && 'app' in message.body) {
      const { app: _app, ...withoutApp } = original.body;
      expect(decode(JSON.stringify({ ...original, body: withoutApp }))).toEqual({ ok: false, reason: 'bad-signature' });
    }
  });

  it('fails when a field is added, the version or the type changed, or the envelope extended', () => {
    const original = wire(GRANT);
    expect(decode(JSON.stringify({ ...original, body: { ...original.body, port: 22 } }))).toEqual({ ok: false, reason: 'malformed' });
    expect(decode(JSON.stringify({ ...original, v: 1 }))).toEqual({ ok: false, reason: 'malformed' }); // signed without a cluster name
    expect(decode(JSON.stringify({ ...original, type: 'revoke' }))).toEqual({ ok: false, reason: 'malformed' });
    expect(decode(JSON.stringify({ ...original, extra: true }))).toEqual({ ok: false, reason: 'malformed' });
    // A revoke of one app turned into a revoke of every app, or the reverse, by moving its signature.
    const one = wire(REVOKE_APP);
    expect(decode(JSON.stringify({ ...one, body: wire(REVOKE_ALL).body }))).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('refuses unsigned messages and bad signatures', () => {
    const { sig, ...unsigned } = wire(GRANT);
    expect(decode(JSON.stringify(unsigned))).toEqual({ ok: false, reason: 'unsigned' });
    expect(decode(JSON.stringify({ ...unsigned, sig: '' }))).toEqual({ ok: false, reason: 'unsigned' });
    expect(decode(JSON.stringify({ ...unsigned, sig: 'zz' }))).toEqual({ ok: false, reason: 'bad-signature' });
    expect(decode(JSON.stringify({ ...unsigned, sig: String(sig).toUpperCase() }))).toEqual({ ok: false, reason: 'bad-signature' });
    expect(decode(JSON.stringify({ ...unsigned, sig: '0'.repeat(64) }))).toEqual({ ok: false, reason: 'bad-signature' });
    // A plain SHA-256 or an HMAC over the JSON body is not the signature.
    const overBody = createHmac('sha256', KEY).update(JSON.stringify(unsigned.body)).digest('hex');
    expect(decode(JSON.stringify({ ...unsigned, sig: overBody }))).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('refuses a message signed with another key', () => {
    for (const message of MESSAGES) {
      expect(decodeClusterMessage(OTHER_KEY, encodeClusterMessage(KEY, message), NOW)).toEqual({ ok: false, reason: 'bad-signature' });
    }
  });

  it('refuses garbage and oversize text as malformed', () => {
    for (const text of ['', 'null', '[]', '"grant"', '42', '{', '{}', 'not json', '{"v":1,"type":"grant","body":null,"sig":"00"}']) {
      expect(decode(text), text).toEqual({ ok: false, reason: 'malformed' });
    }
    const big = wire(GRANT);
    const oversize = JSON.stringify({ ...big, pad: 'x'.repeat(MAX_CLUSTER_MESSAGE_BYTES) });
    expect(decode(oversize)).toEqual({ ok: false, reason: 'malformed' });
    // Multi-byte characters count in bytes.
    expect(decode(`${'é'.repeat(MAX_CLUSTER_MESSAGE_BYTES / 2 + 1)}`)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses fields out of range, even when signed', () => {
    const bodies: Record<string, unknown>[] = [
      { ...GRANT.body, ip: '2001:DB8::7' },
      { ...GRANT.body, ip: '::ffff:203.0.113.9' },
      { ...GRANT.body, ip: 'fe80::1%eth0' },
      { ...GRANT.body, ip: 'gateway.example' },
      { ...GRANT.body, kind: 'all' },
      { ...GRANT.body, app: 'bad app' },
      { ...GRANT.body, user: '-alice' },
      { ...GRANT.body, gateway: 'GW-A' },
      { ...GRANT.body, expiresAt: NOW - 1, issuedAt: NOW },
      { ...GRANT.body, expiresAt: 1.5 },
      { ...GRANT.body, issuedAt: '1780000000000' },
      { ...USED_CODE.body, kind: 'service' },
      { ...USED_CODE.body, counter: -1 },
      { ...USED_CODE.body, scope: 'secret' },
    ];
    for (const body of bodies) {
      const type = 'scope' in body ? 'used-code' : 'grant';
      // Signed as the real signer would, so only the field check can refuse it.
      const fields =
        type === 'grant' ? ['kind', 'ip', 'app', 'user', 'expiresAt', 'gateway', 'issuedAt'] : ['scope', 'counter', 'expiresAt', 'gateway', 'issuedAt'];
      const sig = createHmac('sha256', KEY)
        .update(JSON.stringify(['knock-port cluster message', 1, type, ...fields.map((field) => body[field] ?? null)]))
        .digest('hex');
      expect(decode(JSON.stringify({ v: CLUSTER_MESSAGE_VERSION, type, body, sig })), JSON.stringify(body)).toEqual({ ok: false, reason: 'malformed' });
      // The encoder drops fields its type does not have (the used code's `kind`), and refuses the rest.
      if (type === 'grant' || !('kind' in body))
        expect(() => encodeClusterMessage(KEY, { type, body } as unknown as ClusterMessage)).toThrow(ClusterMessageError);
    }
  });

  it('refuses expired grants and used codes, and messages issued too far ahead of this clock', () => {
    const grant = encodeClusterMessage(KEY, GRANT);
    expect(decode(grant, GRANT.body.issuedAt + 3_600_000 - 1).ok).toBe(true);
    expect(decode(grant, NOW + 3_600_000)).toEqual({ ok: false, reason: 'expired' });
    expect(decode(encodeClusterMessage(KEY, USED_CODE), NOW + 90_000)).toEqual({ ok: false, reason: 'expired' });
    // A revoke has no expiry: a late one can only close early.
    expect(decode(encodeClusterMessage(KEY, REVOKE_ALL), NOW + 86_400_000).ok).toBe(true);

    expect(decode(grant, NOW - MAX_CLOCK_SKEW_MS).ok).toBe(true);
    expect(decode(grant, NOW - MAX_CLOCK_SKEW_MS - 1)).toEqual({ ok: false, reason: 'from-the-future' });
    expect(decode(encodeClusterMessage(KEY, REVOKE_ALL), NOW - MAX_CLOCK_SKEW_MS - 1)).toEqual({ ok: false, reason: 'from-the-future' });
  });

  it('refuses every random mutation of a signed message', () => {
    // A seeded generator (xorshift32), so that a failure can be reproduced.
    let state = 0x2545f491;
    const next = (below: number) => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % below;
    };
    const alphabet = '0123456789abcdefABCDEF{}[]:,."\\-_ xyz';
    for (const message of MESSAGES) {
      const text = encodeClusterMessage(KEY, message);
      for (let round = 0; round < 400; round++) {
        let mutated = text;
        for (let edits = 1 + next(3); edits > 0; edits--) {
          const at = next(mutated.length);
          const operation = next(3);
          if (operation === 0) mutated = mutated.slice(0, at) + mutated.slice(at + 1);
          else {
            let char = alphabet[next(alphabet.length)]!;
            // A space between tokens is still the same JSON: insert something else.
            if (char === ' ') char = 'q';
            if (operation === 1 && char === mutated[at]) char = char === 'x' ? 'y' : 'x';
            mutated = mutated.slice(0, at) + char + mutated.slice(at + (operation === 1 ? 1 : 0));
          }
        }
        if (mutated === text) continue;
        expect(decode(mutated).ok, mutated).toBe(false);
      }
    }
  });

  it('signs with every byte of the key', () => {
    const key = randomBytes(32);
    const text = encodeClusterMessage(key, GRANT);
    const flipped = Buffer.from(key);
    flipped[31]! ^= 1;
    expect(decodeClusterMessage(key, text, NOW).ok).toBe(true);
    expect(decodeClusterMessage(flipped, text, NOW)).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('binds the signing key to the cluster name: one cluster key, two names, two keys', () => {
    const site = (name: string) => clusterSigningKey(KEY, name);
    expect(site('site-a').equals(site('site-a'))).toBe(true);
    expect(site('site-a').equals(site('site-b'))).toBe(false);
    const text = encodeClusterMessage(site('site-a'), GRANT);
    expect(decodeClusterMessage(site('site-b'), text, NOW)).toEqual({ ok: false, reason: 'bad-signature' });
  });
});
