import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { totpAt, TotpVerifier } from '../../../src/auth/totp.js';
import { base32Encode } from '../../../src/shared/otp-format.js';
import { UsedCodes } from '../../../src/auth/used-codes.js';
import { TCP_ACK, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { SavedUsedCodes, USED_CODES_FILE_NAME, parseUsedCodesFile } from '../../../src/daemon/used-codes-file.js';
import { KeyedCookieSource } from '../../../src/step1/cookie.js';
import { Inspector } from '../../../src/step1/inspector.js';
import { craftTcp, knockRequest } from '../packet/craft.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { OTP_SECRET, SSH_KEY, STEP1_PATH, fixtureConfig } from '../step1/fixture-config.js';

const SECRET = base32Encode(Buffer.from('one-time-code-secret'));
const OTHER_SECRET = base32Encode(Buffer.from('another-code-secret!'));
const T0 = 1_760_000_010; // unix seconds, 10 s into a 30 s time step

describe('TotpVerifier with a used-code cache', () => {
  it('accepts a code once per secret, whichever app, user or step presents it', () => {
    const verifier = new TotpVerifier(1, () => T0);
    const code = totpAt(SECRET, T0);
    expect(verifier.verify(SECRET, code)).toBe(true);
    expect(verifier.verify(SECRET, code)).toBe(false);
    // Another secret's code in the same time step is its own.
    expect(verifier.verify(OTHER_SECRET, totpAt(OTHER_SECRET, T0))).toBe(true);
  });

  it('refuses a code used through another verifier sharing the cache (what a reload builds)', () => {
    const used = new UsedCodes();
    const code = totpAt(SECRET, T0);
    expect(new TotpVerifier(1, () => T0, used).verify(SECRET, code)).toBe(true);
    expect(new TotpVerifier(1, () => T0 + 20, used).verify(SECRET, code)).toBe(false);
  });

  it('forgets a code once no window can accept it any more, and never stores the secret', () => {
    let now = T0;
    const used = new UsedCodes();
    const verifier = new TotpVerifier(1, () => now, used);
    expect(verifier.verify(SECRET, totpAt(SECRET, now))).toBe(true);
    expect(JSON.stringify(used.list(now))).not.toContain(SECRET);
    now += 90;
    expect(used.list(now)).toEqual([]);
  });

  it('does the same work for a wrong key without touching the cache', () => {
    const used = new UsedCodes();
    const verifier = new TotpVerifier(1, () => T0, used);
    verifier.verifyNothing(totpAt(SECRET, T0));
    verifier.verifyNothing('not a code');
    expect(used.size).toBe(0);
    expect(verifier.verify(SECRET, totpAt(SECRET, T0))).toBe(true);
  });

  it('stays bounded: a full cache refuses new codes instead of forgetting used ones', () => {
    let full = 0;
    const used = new UsedCodes({ maxEntries: 2, onFull: () => full++ });
    const verifier = new TotpVerifier(1, () => T0, used);
    const secrets = ['first-secret-bytes!!', 'second-secret-bytes!', 'third-secret-bytes!!'].map((text) => base32Encode(Buffer.from(text)));
    expect(secrets.map((secret) => verifier.verify(secret, totpAt(secret, T0)))).toEqual([true, true, false]);
    expect(full).toBe(1);
    expect(verifier.verify(secrets[0]!, totpAt(secrets[0]!, T0))).toBe(false);
  });
});

describe('the step-1 inspector rebuilt by a reload', () => {
  /** A fresh inspector (as daemon.reload builds one) sharing `totp`; returns the decision of one otp knock. */
  function knock(totp: TotpVerifier, body: string, sport: number) {
    const inspector = new Inspector(fixtureConfig(), { cookie: new KeyedCookieSource(Buffer.alloc(16, 7)), now: () => T0 * 1000, totp });
    const client = { src: '192.0.2.7', dst: '198.51.100.1', sport };
    const syn = inspector.inspect(craftTcp({ ...client, seq: 9000, flags: TCP_SYN }));
    const view = new TcpSegmentView();
    expect(decodeTcpPacket(syn.reply!, view)).toBeUndefined();
    return inspector.inspect(craftTcp({ ...client, seq: 9001, ack: view.seq + 1, flags: TCP_ACK, payload: knockRequest(STEP1_PATH, body) }));
  }

  it('refuses a replayed otp knock: the used-code cache is injected, not rebuilt', () => {
    const totp = new TotpVerifier(1, () => T0, new UsedCodes());
    const body = `app=ssh&access_key=${SSH_KEY}&otp=${totpAt(OTP_SECRET, T0)}`;
    expect(knock(totp, body, 41000)).toMatchObject({ result: 'granted', app: 'ssh' });
    expect(knock(totp, body, 41001)).toMatchObject({ result: 'rejected', reason: 'bad-otp' });
  });
});

describe('used codes saved in state_dir', () => {
  let dir: string;
  let nowMs: number;
  const clock = () => nowMs;
  const file = () => join(dir, USED_CODES_FILE_NAME);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-used-codes-'));
    nowMs = T0 * 1000;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const open = (logger = capturedLogger().logger) => SavedUsedCodes.open({ stateDir: dir, logger, now: clock });
  const verifierOf = (saved: SavedUsedCodes) => new TotpVerifier(1, () => nowMs / 1000, saved.codes);

  it('refuses after a restart a code accepted before it, even without a clean stop', async () => {
    const first = await open();
    const code = totpAt(SECRET, T0);
    expect(verifierOf(first).verify(SECRET, code)).toBe(true);
    await first.flush(); // what the background write has done by the time a kill -9 comes
    nowMs += 20_000;
    const second = await open();
    expect(verifierOf(second).verify(SECRET, code)).toBe(false);
    expect(verifierOf(second).verify(OTHER_SECRET, totpAt(OTHER_SECRET, nowMs / 1000))).toBe(true);
    await second.close();
  });

  it('saves each accepted code by itself, atomically, as digests and expiries only', async () => {
    const saved = await open();
    expect(verifierOf(saved).verify(SECRET, totpAt(SECRET, T0))).toBe(true);
    const deadline = Date.now() + 5000;
    let text = '';
    while (Date.now() < deadline && !text.includes('"codes":[{')) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      text = await readFile(file(), 'utf8').catch(() => '');
    }
    const content = parseUsedCodesFile(text);
    expect(content).toMatchObject({ kind: 'ok', codes: [{ counter: Math.floor(T0 / 30), expiresAt: (Math.floor(T0 / 30) + 2) * 30 }] });
    expect(text).not.toContain(SECRET);
    expect(await readdir(dir)).toEqual([USED_CODES_FILE_NAME]); // no temporary file left
    await saved.close();
  });

  it('drops expired codes on load', async () => {
    const first = await open();
    expect(verifierOf(first).verify(SECRET, totpAt(SECRET, T0))).toBe(true);
    await first.close();
    nowMs += 120_000;
    const logs = capturedLogger();
    const second = await open(logs.logger);
    expect(second.codes.size).toBe(0);
    expect(logs.lines().find((l) => l.msg === 'used one-time codes restored')).toMatchObject({ restored: 0 });
    await second.close();
  });

  it('fails closed on a corrupt file: set aside, and the codes of the current time steps refused until they are over', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(file(), '{"version":1,"codes":[{"scope":');
    const logs = capturedLogger();
    const saved = await open(logs.logger);
    const verifier = verifierOf(saved);
    expect(verifier.verify(SECRET, totpAt(SECRET, T0))).toBe(false);
    expect(verifier.verify(SECRET, totpAt(SECRET, T0 + 30))).toBe(false);
    expect((await readdir(dir)).some((name) => name.startsWith(`${USED_CODES_FILE_NAME}.corrupt-`))).toBe(true);
    expect(logs.lines().some((l) => l.level === 50 && String(l.msg).includes('refused for the next 90 s'))).toBe(true);
    nowMs += 60_000; // two time steps later: nothing from before the restart can still be accepted
    expect(verifier.verify(SECRET, totpAt(SECRET, nowMs / 1000))).toBe(true);
    await saved.close();
  });

  it('keeps at most the bound when the saved file holds more', async () => {
    const many = Array.from({ length: 50 }, (_, i) => ({
      scope: i.toString(16).padStart(32, '0'),
      counter: 1,
      expiresAt: new Date((T0 + 60 + i) * 1000).toISOString(),
    }));
    await writeFile(file(), JSON.stringify({ version: 1, codes: many }));
    const saved = await SavedUsedCodes.open({ stateDir: dir, logger: capturedLogger().logger, now: clock, maxEntries: 10 });
    expect(saved.codes.size).toBe(10);
    // The ones kept are those that matter longest.
    expect(saved.codes.isUsed((49).toString(16).padStart(32, '0'), 1, T0)).toBe(true);
    await saved.close();
  });
});
