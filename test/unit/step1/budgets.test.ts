/**
 * Step-1 budgets an attacker cannot multiply: the per-source rate limit counts a whole prefix
 * (an IPv6 client owns a /64), and wrong guesses count per secret across every source.
 */
import { describe, expect, it } from 'vitest';
import { digestKey } from '../../../src/config/key-digest.js';
import { totpAt } from '../../../src/auth/totp.js';
import { TOTP_PERIOD_SECONDS } from '../../../src/shared/otp-format.js';
import type { Config, GlobalConfig } from '../../../src/config/types.js';
import { TCP_ACK, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { KeyedCookieSource } from '../../../src/step1/cookie.js';
import type { Step1Decision } from '../../../src/step1/decision.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { OPENVPN_KEYS, OTP_SECRET, SSH_KEY, STEP1_PATH, fixtureConfig } from './fixture-config.js';

const T0 = 1_760_000_000_000;
const SECRET = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const DAVE_KEY = 'K1-ssh-dave-3e8b';
const DAVE_OTP_SECRET = 'KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU';

/** The fixture, plus a second one-time-code user (dave) in the ssh app. */
function config(overrides: Partial<GlobalConfig>): Config {
  const base = fixtureConfig(overrides);
  const ssh = base.apps[1]!;
  const dave = { name: 'dave', index: 1, step1Key: digestKey(DAVE_KEY), step2Key: digestKey(`${DAVE_KEY}-https`), step1OtpSecret: DAVE_OTP_SECRET };
  return { ...base, apps: [base.apps[0]!, { ...ssh, users: [...ssh.users, dave] }] };
}

function setup(overrides: Partial<GlobalConfig> = {}) {
  let now = T0;
  const inspector = new Inspector(config(overrides), { cookie: new KeyedCookieSource(SECRET), now: () => now });
  let sport = 20_000;
  /** A full knock (SYN, then the request acknowledging our cookie) from `src`; the data segment's decision. */
  const knock = (src: string, body: string): Step1Decision => {
    const client = { src, dst: src.includes(':') ? '2001:db8::1' : '198.51.100.1', sport: sport++ };
    const syn = inspector.inspect(craftTcp({ ...client, seq: 7000, flags: TCP_SYN }));
    const view = new TcpSegmentView();
    expect(decodeTcpPacket(syn.reply!, view)).toBeUndefined();
    return inspector.inspect(craftTcp({ ...client, seq: 7001, ack: view.seq + 1, flags: TCP_ACK, payload: knockRequest(STEP1_PATH, body) }));
  };
  return { inspector, knock, now: () => now, advance: (ms: number) => (now += ms) };
}

/** A code that is not valid at `nowMs` (nor one step either side), different for each `i`. */
function wrongCode(secret: string, nowMs: number, i: number): string {
  const valid = new Set([-1, 0, 1].map((step) => totpAt(secret, nowMs / 1000 + step * TOTP_PERIOD_SECONDS)));
  for (let n = i * 7919; ; n++) {
    const code = String(n % 1_000_000).padStart(6, '0');
    if (!valid.has(code)) return code;
  }
}

const alice = `app=openvpn&access_key=${OPENVPN_KEYS[0]}`;

describe('step-1 rate limit per source prefix', () => {
  it('two addresses of one IPv6 /64 share one budget; another /64 has its own', () => {
    const { knock } = setup({ rateLimitPerMinute: 2 });
    expect(knock('2001:db8:1:2::1', alice).result).toBe('granted');
    expect(knock('2001:db8:1:2::1', alice).result).toBe('granted');
    expect(knock('2001:db8:1:2::2', alice)).toMatchObject({ result: 'rejected', reason: 'rate-limited' });
    expect(knock('2001:db8:1:2:ffff::9', alice)).toMatchObject({ result: 'rejected', reason: 'rate-limited' });
    expect(knock('2001:db8:1:3::1', alice).result).toBe('granted');
  });

  it('counts IPv4 per address by default, per network with source_prefix_v4', () => {
    const perAddress = setup({ rateLimitPerMinute: 1 });
    expect(perAddress.knock('192.0.2.1', alice).result).toBe('granted');
    expect(perAddress.knock('192.0.2.2', alice).result).toBe('granted');
    const perNetwork = setup({ rateLimitPerMinute: 1, sourcePrefixV4: 24 });
    expect(perNetwork.knock('192.0.2.1', alice).result).toBe('granted');
    expect(perNetwork.knock('192.0.2.2', alice)).toMatchObject({ reason: 'rate-limited' });
    expect(perNetwork.knock('192.0.3.1', alice).result).toBe('granted');
  });

  it('with source_prefix_v6: 128, every IPv6 address has its own budget', () => {
    const { knock } = setup({ rateLimitPerMinute: 1, sourcePrefixV6: 128 });
    expect(knock('2001:db8:1:2::1', alice).result).toBe('granted');
    expect(knock('2001:db8:1:2::2', alice).result).toBe('granted');
  });
});

describe('step-1 guesses counted per secret, across sources', () => {
  const carol = (code: string) => `app=ssh&access_key=${SSH_KEY}&otp=${code}`;
  const dave = (code: string) => `app=ssh&access_key=${DAVE_KEY}&otp=${code}`;

  it("locks a user's otp after a burst of wrong codes from many addresses; the right code is then refused like a wrong one", () => {
    const { knock, now } = setup({ lockoutUserFailures: 10 });
    for (let i = 0; i < 10; i++) expect(knock(`2001:db8:${i + 10}::1`, carol(wrongCode(OTP_SECRET, now(), i)))).toMatchObject({ reason: 'bad-otp' });
    const right = knock('2001:db8:99::1', carol(totpAt(OTP_SECRET, now() / 1000)));
    const wrong = knock('2001:db8:98::1', carol(wrongCode(OTP_SECRET, now(), 99)));
    expect(right).toMatchObject({ result: 'rejected', reason: 'locked' });
    expect(wrong).toMatchObject({ result: 'rejected', reason: 'locked' });
    expect([right.reply, wrong.reply]).toEqual([undefined, undefined]);
  });

  it('with step1_reply reset, a locked right code gets the same RST as a wrong one', () => {
    const { knock, now } = setup({ lockoutUserFailures: 2, step1Reply: 'reset' });
    for (let i = 0; i < 2; i++) knock(`192.0.2.${i + 1}`, carol(wrongCode(OTP_SECRET, now(), i)));
    const right = knock('192.0.2.50', carol(totpAt(OTP_SECRET, now() / 1000)));
    const wrong = knock('192.0.2.51', carol(wrongCode(OTP_SECRET, now(), 9)));
    expect([right.result, wrong.result]).toEqual(['rejected', 'rejected']);
    const flags = (d: Step1Decision) => {
      const view = new TcpSegmentView();
      decodeTcpPacket(d.reply!, view);
      return [view.flags, view.payloadLength, d.reply!.length];
    };
    expect(flags(right)).toEqual(flags(wrong));
  });

  it('a flood of wrong codes for one user locks no one else; the lock ends on time and the code works again', () => {
    const { knock, now, advance } = setup({ lockoutUserFailures: 5, lockoutSeconds: 900 });
    for (let i = 0; i < 50; i++) knock(`2001:db8:${i + 10}::1`, carol(wrongCode(OTP_SECRET, now(), i)));
    expect(knock('2001:db8:99::1', dave(totpAt(DAVE_OTP_SECRET, now() / 1000))).result).toBe('granted');
    expect(knock('2001:db8:99::2', alice).result).toBe('granted');
    expect(knock('2001:db8:99::3', carol(totpAt(OTP_SECRET, now() / 1000))).reason).toBe('locked');
    advance(900_000);
    expect(knock('2001:db8:99::4', carol(totpAt(OTP_SECRET, now() / 1000))).result).toBe('granted');
  });

  it("counts failures as the daemon's shared table does (in window/16 buckets), also without the daemon's state", () => {
    // Window 1,600 s: buckets of 100 s, and T0 starts one. The first failure is 1,650 s old at
    // the second: past the window by the clock, still inside it by whole buckets, as the daemon counts.
    const { knock, advance } = setup({ lockoutAppFailures: 2, lockoutWindowSeconds: 1_600 });
    expect(knock('192.0.2.1', 'app=openvpn&access_key=guess-a-0123456789').reason).toBe('bad-key');
    advance(1_650_000);
    expect(knock('192.0.2.2', 'app=openvpn&access_key=guess-b-0123456789').reason).toBe('bad-key');
    expect(knock('192.0.2.3', alice)).toMatchObject({ result: 'rejected', reason: 'locked' });
  });

  it('locks an app after a burst of wrong keys from many addresses; other apps are unaffected', () => {
    const { knock, advance } = setup({ lockoutAppFailures: 20 });
    for (let i = 0; i < 20; i++) expect(knock(`192.0.2.${i + 1}`, `app=openvpn&access_key=guess-${i}-0123456789`).reason).toBe('bad-key');
    expect(knock('192.0.2.100', alice)).toMatchObject({ result: 'rejected', reason: 'locked' });
    expect(knock('192.0.2.101', `app=openvpn&access_key=guess-x-0123456789`)).toMatchObject({ result: 'rejected', reason: 'locked' });
    expect(knock('192.0.2.102', carol(totpAt(OTP_SECRET, T0 / 1000))).result).toBe('granted');
    advance(900_000);
    expect(knock('192.0.2.103', alice).result).toBe('granted');
  });

  it('without a handshake (forgeable sources) wrong keys lock nothing: forged knocks cannot lock an app', () => {
    let now = T0;
    const inspector = new Inspector(config({ lockoutAppFailures: 5, step1Handshake: 'none' }), { cookie: new KeyedCookieSource(SECRET), now: () => now });
    const synKnock = (src: string, body: string) =>
      inspector.inspect(craftTcp({ src, dst: '198.51.100.1', sport: 30_000, seq: 9000, flags: TCP_SYN, payload: knockRequest(STEP1_PATH, body) }));
    for (let i = 0; i < 20; i++) expect(synKnock(`203.0.113.${i + 1}`, `app=openvpn&access_key=guess-${i}-0123456789`).reason).toBe('bad-key');
    now += 1000;
    expect(synKnock('192.0.2.50', alice).result).toBe('granted');
  });

  it('counts nothing against a secret for an unknown app or a missing code', () => {
    const { knock, inspector } = setup({ lockoutAppFailures: 1, lockoutUserFailures: 1 });
    expect(knock('192.0.2.1', `app=nope&access_key=${OPENVPN_KEYS[0]}`).reason).toBe('unknown-app');
    expect(knock('192.0.2.2', `app=ssh&access_key=${SSH_KEY}`).reason).toBe('otp-required');
    expect(knock('192.0.2.3', alice).result).toBe('granted');
    expect(inspector.counters.reasons.get('locked')).toBe(0);
  });
});
