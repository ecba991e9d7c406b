/**
 * The allocation-free knock path (scanKnockRequest + KnockAuthenticator) against the string
 * path (parseKnockRequest + authenticateKnock), on hand-picked edge cases and on many mutated
 * requests; and the UTF-8 check against a fatal TextDecoder.
 */
import { describe, expect, it } from 'vitest';
import { SecretLockout } from '../../../src/auth/lockout.js';
import { TotpVerifier, totpAt } from '../../../src/auth/totp.js';
import type { AppConfig } from '../../../src/config/types.js';
import { TCP_ACK, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { KnockAuthenticator } from '../../../src/step1/auth.js';
import { authenticateKnock } from './reference-auth.js';
import { KeyedCookieSource } from '../../../src/step1/cookie.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { KnockScan, isWellFormedUtf8, requestPathBytes, scanKnockRequest } from '../../../src/step1/request.js';
import { parseKnockRequest } from './knock-request.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { OPENVPN_KEYS, OTP_SECRET, SSH_KEY, STEP1_PATH, fixtureConfig } from './fixture-config.js';
import { seededRandom } from './seeded-random.js';

const PATH_BYTES = requestPathBytes(STEP1_PATH);
const NOW_S = 1_760_000_000;
const POLICY = { userFailures: 3, appFailures: 50, windowSeconds: 600, lockSeconds: 900 };

function scanBody(body: string, scan = new KnockScan()) {
  const packet = Buffer.from(`junk${knockRequest(STEP1_PATH, body)}junk`, 'latin1');
  const failure = scanKnockRequest(packet, 4, packet.length - 4, PATH_BYTES, scan);
  return { failure, scan };
}

function appsOf(): Map<string, AppConfig> {
  return new Map(fixtureConfig().apps.map((app) => [app.name, app]));
}

/** Both paths with their own (identical) lockout and one-time-code state, fed the same requests. */
function pair() {
  const apps = appsOf();
  const fast = {
    auth: new KnockAuthenticator(apps),
    scan: new KnockScan(),
    totp: new TotpVerifier(1, () => NOW_S),
    lockout: new SecretLockout(POLICY, { now: () => NOW_S * 1000 }),
  };
  const slow = { totp: new TotpVerifier(1, () => NOW_S), lockout: new SecretLockout(POLICY, { now: () => NOW_S * 1000 }) };
  return (packet: Buffer, start: number, end: number) => {
    const failure = scanKnockRequest(packet, start, end, PATH_BYTES, fast.scan);
    const refused = failure === undefined ? fast.auth.authenticate(fast.scan, fast.totp, fast.lockout, true) : undefined;
    const actual = failure ?? refused ?? `granted ${fast.auth.app!.name} ${fast.auth.user!.name}`;
    const parsed = parseKnockRequest(packet, start, end, STEP1_PATH);
    let expected: string;
    if (!parsed.ok) expected = parsed.reason;
    else {
      const auth = authenticateKnock(apps, parsed.fields, slow.totp, slow.lockout, true);
      expected = auth.ok ? `granted ${auth.app.name} ${auth.user.name}` : auth.reason;
    }
    return { actual, expected };
  };
}

describe('scanKnockRequest', () => {
  it('points plain values into the packet and decoded values into its own buffer', () => {
    const { failure, scan } = scanBody('app=openvpn&access_key=a%2Bb+c%C3%A9');
    expect(failure).toBeUndefined();
    expect(scan.app.text()).toBe('openvpn');
    expect(scan.accessKey.text()).toBe('a+b cé');
    expect(scan.accessKey.bytes).toBe(scan.decoded);
    expect(scan.otp.present).toBe(false);
  });

  it('decodes names too, takes token for otp, and ignores other fields', () => {
    const { failure, scan } = scanBody('%61pp=ssh&submit=go+now&access%5Fkey=k1&t%6Fken=123456&x=%E2%82%AC');
    expect(failure).toBeUndefined();
    expect([scan.app.text(), scan.accessKey.text(), scan.otp.text()]).toEqual(['ssh', 'k1', '123456']);
  });

  it('keeps two decoded values apart', () => {
    const { scan } = scanBody('app=%6Fpenvpn&access_key=%41%42&otp=+1+');
    expect([scan.app.text(), scan.accessKey.text(), scan.otp.text()]).toEqual(['openvpn', 'AB', ' 1 ']);
  });

  it('refuses repeated fields, however they are spelled', () => {
    for (const body of [
      'app=a&app=a&access_key=k',
      'app=a&access_key=k&access_key=k',
      'app=a&access_key=k&otp=1&token=1',
      'app=a&%61pp=b&access_key=k',
      'app=a&access_key=k&otp=&otp=',
    ]) {
      expect(scanBody(body).failure, body).toBe('bad-body');
    }
  });

  it('refuses empty or missing app and key, pairs without =, and undecodable components', () => {
    for (const body of [
      'app=&access_key=k',
      'app=a&access_key=',
      'app=a',
      'access_key=k',
      'app=a&access_key=k&',
      'app=a&&access_key=k',
      'app=a&access_key=k%2',
      'app=a&access_key=k%zz',
      'app=a&access_key=%C3',
      'app=a&access_key=%ED%A0%80',
      'app=a&access_key=k&x=%FF',
      'app=a&access_key=k&%C0%AF=1',
    ]) {
      expect(scanBody(body).failure, body).toBe('bad-body');
    }
  });

  it('drops a leading byte order mark as a UTF-8 decoder does (a BOM alone is empty)', () => {
    expect(scanBody('app=a&access_key=%EF%BB%BFk').scan.accessKey.text()).toBe('k');
    expect(scanBody('app=a&access_key=%EF%BB%BF').failure).toBe('bad-body');
    expect(scanBody('%EF%BB%BFapp=a&access_key=k').scan.app.text()).toBe('a');
    expect(scanBody('app=a&access_key=k%EF%BB%BF').scan.accessKey.text()).toBe('k\ufeff');
  });

  it('forgets the previous request: a reused scan holds only the new fields', () => {
    const scan = new KnockScan();
    expect(scanBody('app=a%20b&access_key=%41&otp=111111', scan).failure).toBeUndefined();
    expect(scanBody('app=c&access_key=d', scan).failure).toBeUndefined();
    expect([scan.app.text(), scan.accessKey.text(), scan.otp.present]).toEqual(['c', 'd', false]);
  });

  it('returns the request-level reasons as parseKnockRequest does', () => {
    const packet = Buffer.from(`GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`, 'latin1');
    expect(scanKnockRequest(packet, 0, packet.length, PATH_BYTES, new KnockScan())).toBe('not-post');
    const wrongPath = Buffer.from(knockRequest(`${STEP1_PATH}x`, 'app=a&access_key=k'), 'latin1');
    expect(scanKnockRequest(wrongPath, 0, wrongPath.length, PATH_BYTES, new KnockScan())).toBe('bad-path');
  });
});

describe('isWellFormedUtf8', () => {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const decodes = (bytes: Buffer) => {
    try {
      decoder.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };

  it('agrees with a fatal TextDecoder on every one- and two-byte input', () => {
    for (let a = 0; a < 256; a++) {
      expect(isWellFormedUtf8(Buffer.from([a]), 0, 1), `${a}`).toBe(decodes(Buffer.from([a])));
      for (let b = 0; b < 256; b++) {
        const bytes = Buffer.from([a, b]);
        if (isWellFormedUtf8(bytes, 0, 2) !== decodes(bytes)) expect.fail(`disagrees on ${bytes.toString('hex')}`);
      }
    }
  });

  it('agrees on random three- to six-byte inputs built around sequence boundaries', () => {
    const next = seededRandom(3);
    const interesting = [
      0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff,
    ];
    for (let i = 0; i < 100_000; i++) {
      const length = 3 + Math.floor(next() * 4);
      const bytes = Buffer.from(Array.from({ length }, () => interesting[Math.floor(next() * interesting.length)]!));
      if (isWellFormedUtf8(bytes, 0, length) !== decodes(bytes)) expect.fail(`disagrees on ${bytes.toString('hex')}`);
    }
  });
});

describe('KnockAuthenticator', () => {
  const decide = (body: string) => {
    const run = pair();
    const packet = Buffer.from(knockRequest(STEP1_PATH, body), 'latin1');
    return run(packet, 0, packet.length);
  };

  it('grants and refuses as authenticateKnock on hand-picked knocks', () => {
    const key = OPENVPN_KEYS[1]!;
    const code = totpAt(OTP_SECRET, NOW_S);
    const cases: Array<[string, string]> = [
      [`app=openvpn&access_key=${key}`, 'granted openvpn bob'],
      [`app=openvpn&access_key=${encodeURIComponent(key).replace(/-/g, '%2D')}`, 'granted openvpn bob'],
      [`app=openvpn&access_key=${key.slice(0, -1)}`, 'bad-key'],
      [`app=openvpn&access_key=${key}x`, 'bad-key'],
      [`app=openvpn&access_key=x${key}`, 'bad-key'],
      [`app=openvpn&access_key=${key.replace(/-/g, '+')}`, 'bad-key'],
      [`app=openvpnx&access_key=${key}`, 'unknown-app'],
      [`app=openvp&access_key=${key}`, 'unknown-app'],
      [`app=OpenVPN&access_key=${key}`, 'unknown-app'],
      [`app=%6Fpenvpn&access_key=${key}`, 'granted openvpn bob'],
      [`app=ssh&access_key=${key}`, 'bad-key'],
      [`app=ssh&access_key=${SSH_KEY}`, 'otp-required'],
      [`app=ssh&access_key=${SSH_KEY}&otp=000000`, code === '000000' ? 'granted ssh carol' : 'bad-otp'],
      [`app=ssh&access_key=${SSH_KEY}&otp=`, 'bad-otp'],
      [`app=ssh&access_key=${SSH_KEY}&token=${code}`, 'granted ssh carol'],
      [`otp=${code}&access_key=${SSH_KEY}&app=ssh`, 'granted ssh carol'],
      [`app=openvpn&access_key=${key}&otp=123456`, 'granted openvpn bob'],
    ];
    for (const [body, expected] of cases) {
      const { actual, expected: reference } = decide(body);
      expect(reference, body).toBe(expected);
      expect(actual, body).toBe(expected);
    }
  });

  it('refuses a one-time code used once already, and locks a user after wrong codes, like the string path', () => {
    const run = pair();
    const code = totpAt(OTP_SECRET, NOW_S);
    const send = (body: string) => {
      const packet = Buffer.from(knockRequest(STEP1_PATH, body), 'latin1');
      return run(packet, 0, packet.length);
    };
    const right = `app=ssh&access_key=${SSH_KEY}&otp=${code}`;
    expect(send(right)).toEqual({ actual: 'granted ssh carol', expected: 'granted ssh carol' });
    expect(send(right)).toEqual({ actual: 'bad-otp', expected: 'bad-otp' });
    const wrong = `app=ssh&access_key=${SSH_KEY}&otp=${code === '999999' ? '999998' : '999999'}`;
    for (let i = 0; i < POLICY.userFailures; i++) send(wrong);
    expect(send(wrong)).toEqual({ actual: 'locked', expected: 'locked' });
  });

  it('decides as parseKnockRequest + authenticateKnock on many mutated knocks, split anywhere in the packet', () => {
    const next = seededRandom(2024);
    const code = totpAt(OTP_SECRET, NOW_S);
    const seeds = [
      `app=openvpn&access_key=${OPENVPN_KEYS[0]}`,
      `access_key=${encodeURIComponent(OPENVPN_KEYS[1]!)}&app=openvpn&submit=1`,
      `app=ssh&access_key=${SSH_KEY}&otp=${code}`,
      `app=ssh&access_key=${SSH_KEY}&token=${code}&x=%E2%82%AC`,
      `%61pp=openvpn&access%5Fkey=K1%2Dopenvpn%2Dalice%2D7f3a`,
      'app=openvpn&access_key=%EF%BB%BFK1-openvpn-bob-91c2',
    ];
    const alphabet = Buffer.from('&=%+2DdAa0139FfKk-_ \xc3\xa9\xef\xbb\xbf\x80', 'latin1');
    const run = pair();
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const body = [...Buffer.from(seeds[Math.floor(next() * seeds.length)]!, 'latin1')];
      for (let edits = Math.floor(next() * 3); edits > 0; edits--) {
        const at = Math.floor(next() * (body.length + 1));
        const kind = Math.floor(next() * 3);
        const byte = alphabet[Math.floor(next() * alphabet.length)]!;
        if (kind === 0 && at < body.length) body[at] = byte;
        else if (kind === 1) body.splice(at, 0, byte);
        else body.splice(at, 1);
      }
      const request = Buffer.from(knockRequest(STEP1_PATH, Buffer.from(body).toString('latin1')), 'latin1');
      // The request at an odd place inside a larger packet, with bytes around it that must not be read.
      const before = Math.floor(next() * 7);
      const packet = Buffer.concat([Buffer.from('&='.repeat(4)).subarray(0, before), request, Buffer.from('%4')]);
      const { actual, expected } = run(packet, before, before + request.length);
      if (actual !== expected) expect.fail(`${JSON.stringify(Buffer.from(body).toString('latin1'))}: ${actual} !== ${expected}`);
      seen.add(actual.split(' ')[0]!);
    }
    // The mutations reach every outcome, not just the parser's refusals.
    expect([...seen].sort()).toEqual(expect.arrayContaining(['bad-body', 'bad-key', 'bad-otp', 'granted', 'otp-required', 'unknown-app']));
  });
});

describe('Inspector on the allocation-free path', () => {
  const inspector = new Inspector(fixtureConfig(), { cookie: new KeyedCookieSource(Buffer.alloc(16, 7)), now: () => NOW_S * 1000 });
  let sport = 20_000;
  const knock = (body: string) => {
    const client = { src: '192.0.2.50', dst: '198.51.100.1', sport: sport++ };
    const view = new TcpSegmentView();
    decodeTcpPacket(inspector.inspect(craftTcp({ ...client, seq: 5000, flags: TCP_SYN })).reply!, view);
    return inspector.inspect(craftTcp({ ...client, seq: 5001, ack: view.seq + 1, flags: TCP_ACK, payload: knockRequest(STEP1_PATH, body) }));
  };

  it('grants a percent-encoded key and refuses keys one character off', () => {
    const key = OPENVPN_KEYS[0]!;
    expect(knock(`app=openvpn&access_key=${key.replace(/-/g, '%2d')}`)).toMatchObject({
      result: 'granted',
      app: 'openvpn',
      user: 'alice',
      matched: { app: { name: 'openvpn' }, user: { name: 'alice', index: 0 } },
    });
    expect(knock(`app=openvpn&access_key=${key.slice(1)}`)).toMatchObject({ result: 'rejected', reason: 'bad-key' });
    expect(knock(`app=openvpn&access_key=${key}0`)).toMatchObject({ result: 'rejected', reason: 'bad-key' });
    expect(knock(`app=vpn&access_key=${key}`)).toMatchObject({ result: 'rejected', reason: 'unknown-app' });
    expect(knock(`app=openvpn&access_key=${key}&app=openvpn`)).toMatchObject({ result: 'rejected', reason: 'bad-body' });
    expect(knock(`app=ssh&access_key=${SSH_KEY}`)).toMatchObject({ result: 'rejected', reason: 'otp-required' });
    expect(knock(`app=ssh&access_key=${SSH_KEY}&otp=${totpAt(OTP_SECRET, NOW_S)}`)).toMatchObject({ result: 'granted', app: 'ssh', user: 'carol' });
  });
});
