import { describe, expect, it } from 'vitest';
import { totpAt } from '../../../src/auth/totp.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { COOKIE_SLOT_MS, KeyedCookieSource } from '../../../src/step1/cookie.js';
import { Inspector } from '../../../src/step1/inspector.js';
import type { GlobalConfig } from '../../../src/config/types.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { OPENVPN_KEYS, OTP_SECRET, SSH_KEY, STEP1_PATH, fixtureConfig } from './fixture-config.js';

const T0 = 1_760_000_000_000;
const SECRET = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

function setup(overrides: Partial<GlobalConfig> = {}) {
  let now = T0;
  const inspector = new Inspector(fixtureConfig(overrides), { cookie: new KeyedCookieSource(SECRET), now: () => now });
  return { inspector, advance: (ms: number) => (now += ms) };
}

/** Sends a SYN, then a data segment acknowledging the SYN-ACK's cookie, like curl does. */
function handshakeAndSend(inspector: Inspector, payload: string, client = { src: '192.0.2.7', dst: '198.51.100.1', sport: 41000 }) {
  const syn = inspector.inspect(craftTcp({ ...client, seq: 7000, flags: TCP_SYN }));
  const view = new TcpSegmentView();
  expect(decodeTcpPacket(syn.reply!, view)).toBeUndefined();
  const data = craftTcp({ ...client, seq: 7001, ack: view.seq + 1, flags: TCP_ACK, payload });
  return { syn, data, decision: inspector.inspect(data) };
}

describe('Inspector', () => {
  it('answers a SYN with a SYN-ACK and grants a valid knock, naming app and user', () => {
    const { inspector } = setup();
    const { syn, decision } = handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[1]}`));
    expect(syn).toMatchObject({ result: 'syn', src: '192.0.2.7', sport: 41000, dst: '198.51.100.1', dport: 80 });
    expect(decision).toMatchObject({
      result: 'granted',
      app: 'openvpn',
      user: 'bob',
      matched: { app: { name: 'openvpn' }, user: { name: 'bob', index: 1 } },
      family: 4,
    });
    expect(decision.reply).toBeUndefined();
    expect(inspector.counters.results).toMatchObject({ syn: 1, granted: 1 });
  });

  it('grants over IPv6', () => {
    const { inspector } = setup();
    const { decision } = handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`), {
      src: '2001:db8::7',
      dst: '2001:db8::1',
      sport: 41000,
    });
    expect(decision).toMatchObject({ result: 'granted', family: 6, src: '2001:db8::7', user: 'alice' });
  });

  it('rejects a wrong key, an unknown app and a key of another app', () => {
    const { inspector } = setup();
    expect(handshakeAndSend(inspector, knockRequest(STEP1_PATH, 'app=openvpn&access_key=nope')).decision).toMatchObject({
      result: 'rejected',
      reason: 'bad-key',
    });
    expect(
      handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=vpn&access_key=${OPENVPN_KEYS[0]}`), { src: '192.0.2.8', dst: '198.51.100.1', sport: 1 })
        .decision,
    ).toMatchObject({ reason: 'unknown-app' });
    expect(
      handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=ssh&access_key=${OPENVPN_KEYS[0]}`), { src: '192.0.2.9', dst: '198.51.100.1', sport: 1 })
        .decision,
    ).toMatchObject({ reason: 'bad-key' });
    expect(inspector.counters.reasons.get('bad-key')!).toBe(2);
  });

  it('calls a data segment whose ACK is not our cookie spoofed, also in the next-but-one slot', () => {
    const { inspector, advance } = setup();
    const { data } = handshakeAndSend(inspector, 'x');
    const forged = craftTcp({
      src: '192.0.2.7',
      dst: '198.51.100.1',
      sport: 41000,
      seq: 7001,
      ack: 12345,
      flags: TCP_ACK,
      payload: knockRequest(STEP1_PATH, 'app=a&access_key=b'),
    });
    expect(inspector.inspect(forged)).toMatchObject({ result: 'spoofed', reason: 'bad-cookie' });
    advance(2 * COOKIE_SLOT_MS + 1);
    expect(inspector.inspect(data)).toMatchObject({ result: 'spoofed', reason: 'bad-cookie' });
  });

  it('accepts a cookie in the next time slot', () => {
    const { inspector, advance } = setup();
    const syn = inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', sport: 5, seq: 1, flags: TCP_SYN }));
    const view = new TcpSegmentView();
    decodeTcpPacket(syn.reply!, view);
    advance(COOKIE_SLOT_MS);
    const data = craftTcp({
      src: '192.0.2.7',
      dst: '198.51.100.1',
      sport: 5,
      seq: 2,
      ack: view.seq + 1,
      flags: TCP_ACK,
      payload: knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`),
    });
    expect(inspector.inspect(data).result).toBe('granted');
  });

  it('counts a retransmitted segment once, as retransmission, with the first outcome', () => {
    const { inspector } = setup();
    const { data } = handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`));
    expect(inspector.inspect(data)).toMatchObject({ result: 'retransmission', reason: 'granted' });
    expect(inspector.inspect(data)).toMatchObject({ result: 'retransmission' });
    expect(inspector.counters.results).toMatchObject({ granted: 1, retransmission: 2 });
  });

  it('rejects a request split over two segments: the first is incomplete, the second cannot carry a knock', () => {
    const { inspector } = setup();
    const request = knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`);
    const { syn, decision } = handshakeAndSend(inspector, request.slice(0, 40));
    const view = new TcpSegmentView();
    decodeTcpPacket(syn.reply!, view);
    const second = craftTcp({
      src: '192.0.2.7',
      dst: '198.51.100.1',
      sport: 41000,
      seq: 7001 + 40,
      ack: view.seq + 1,
      flags: TCP_ACK,
      payload: request.slice(40),
    });
    expect(decision).toMatchObject({ result: 'rejected', reason: 'incomplete' });
    // The cookie binds the client's ISN: only the segment right after the handshake verifies.
    expect(inspector.inspect(second)).toMatchObject({ result: 'spoofed', reason: 'bad-cookie' });
  });

  it('answers a SYN carrying data (TCP Fast Open) with a plain SYN-ACK that does not acknowledge the data', () => {
    const { inspector } = setup();
    const decision = inspector.inspect(
      craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', seq: 500, flags: TCP_SYN, payload: knockRequest(STEP1_PATH, 'app=a&access_key=b') }),
    );
    const view = new TcpSegmentView();
    decodeTcpPacket(decision.reply!, view);
    expect(decision.result).toBe('syn');
    expect(view.ack).toBe(501);
  });

  it('ignores pure ACKs, FINs and RSTs, and packets to another port, without a reply', () => {
    const { inspector } = setup();
    const base = { src: '192.0.2.7', dst: '198.51.100.1' };
    expect(inspector.inspect(craftTcp({ ...base, flags: TCP_ACK, ack: 5 }))).toMatchObject({ result: 'ignored', reason: 'pure-ack' });
    expect(inspector.inspect(craftTcp({ ...base, flags: TCP_ACK | TCP_FIN }))).toMatchObject({ result: 'ignored', reason: 'fin' });
    expect(inspector.inspect(craftTcp({ ...base, flags: TCP_RST, payload: 'x' }))).toMatchObject({ result: 'ignored', reason: 'rst' });
    expect(inspector.inspect(craftTcp({ ...base, flags: TCP_SYN | TCP_ACK }))).toMatchObject({ result: 'ignored', reason: 'bad-flags' });
    expect(inspector.inspect(craftTcp({ ...base, dport: 81 }))).toMatchObject({ result: 'ignored', reason: 'not-step1-port' });
  });

  it('rejects malformed packets with the decoder reason and whatever addresses they carry', () => {
    const { inspector } = setup();
    expect(inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', fragmentField: 0x2000 }))).toMatchObject({
      result: 'rejected',
      reason: 'fragment',
      src: '192.0.2.7',
    });
    expect(inspector.inspect(Buffer.from([0x45, 0]))).toMatchObject({ result: 'rejected', reason: 'truncated', src: '', family: 4 });
  });

  it('requires a fresh one-time code where the user has one, and refuses it the second time', () => {
    const { inspector } = setup();
    const code = totpAt(OTP_SECRET, T0 / 1000);
    const ssh = (body: string, sport: number) =>
      handshakeAndSend(inspector, knockRequest(STEP1_PATH, body), { src: '192.0.2.7', dst: '198.51.100.1', sport }).decision;
    expect(ssh(`app=ssh&access_key=${SSH_KEY}`, 1)).toMatchObject({ result: 'rejected', reason: 'otp-required' });
    expect(ssh(`app=ssh&access_key=${SSH_KEY}&otp=000000`.replace('000000', code === '000000' ? '111111' : '000000'), 2)).toMatchObject({ reason: 'bad-otp' });
    expect(ssh(`app=ssh&access_key=${SSH_KEY}&token=${code}`, 3)).toMatchObject({ result: 'granted', user: 'carol' });
    expect(ssh(`app=ssh&access_key=${SSH_KEY}&otp=${code}`, 4)).toMatchObject({ result: 'rejected', reason: 'bad-otp' });
  });

  it('rate-limits knocks per source address', () => {
    const { inspector } = setup({ rateLimitPerMinute: 2 });
    const results = [1, 2, 3].map((sport) => handshakeAndSend(inspector, 'junk', { src: '192.0.2.7', dst: '198.51.100.1', sport }).decision.reason);
    expect(results).toEqual(['not-http', 'not-http', 'rate-limited']);
  });

  it('with step1_reply reset, answers every data segment alike with a RST and nothing else', () => {
    const { inspector } = setup({ step1Reply: 'reset' });
    const good = handshakeAndSend(inspector, knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`), {
      src: '192.0.2.7',
      dst: '198.51.100.1',
      sport: 1,
    }).decision;
    const bad = handshakeAndSend(inspector, knockRequest(STEP1_PATH, 'app=openvpn&access_key=wrong-key-here-xxxx'), {
      src: '192.0.2.7',
      dst: '198.51.100.1',
      sport: 2,
    }).decision;
    const view = new TcpSegmentView();
    const shapes = [good, bad].map((d) => {
      decodeTcpPacket(d.reply!, view);
      return [d.reply!.length, view.flags, view.window];
    });
    expect(good.result).toBe('granted');
    expect(bad.result).toBe('rejected');
    expect(shapes[0]).toEqual(shapes[1]);
    expect(shapes[0]![1]).toBe(TCP_RST | TCP_ACK);
    expect(inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', flags: TCP_ACK })).reply).toBeUndefined();
  });

  it('with step1_handshake none, gives SYNs no answer and inspects a SYN carrying the request', () => {
    const { inspector } = setup({ step1Handshake: 'none' });
    const request = knockRequest(STEP1_PATH, `app=openvpn&access_key=${OPENVPN_KEYS[0]}`);
    expect(inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', flags: TCP_SYN }))).toMatchObject({
      result: 'ignored',
      reason: 'handshake-none',
    });
    const tfo = inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', flags: TCP_SYN, payload: request }));
    expect(tfo).toMatchObject({ result: 'granted', app: 'openvpn' });
    expect(tfo.reply).toBeUndefined();
    expect(inspector.inspect(craftTcp({ src: '192.0.2.7', dst: '198.51.100.1', flags: TCP_ACK, ack: 9, payload: request }))).toMatchObject({
      result: 'ignored',
      reason: 'handshake-none',
    });
  });
});
