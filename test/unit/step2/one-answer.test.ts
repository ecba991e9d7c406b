/**
 * Step 2 gives one answer for every failure: whatever a prober varies (path, method, body, app,
 * key, token, window), the whole response is the same bytes, so none confirms a right path or
 * key. 413 and 429 answer apart, on every path alike. And TLS takes AEAD suites only.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PerMinuteLimiter } from '../../../src/auth/ratelimit.js';
import { newTotpSecret, totpAt, TotpVerifier } from '../../../src/auth/totp.js';
import type { UsedCode } from '../../../src/auth/used-codes.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { createStep2Server } from '../../../src/step2/server.js';
import { seriesOf, STEP2_OUTCOMES } from '../metrics/expected.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { listen, rawExchange, rawRequest, STEP2_PATH, testConfig, throwawayCertificate } from './fixtures.js';

const run = promisify(execFile);
const TOTP_SECRET = newTotpSecret();
const config = testConfig(TOTP_SECRET);
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };
const JSON_BODY = { 'Content-Type': 'application/json' };
const ALICE = 'app=vpn&access_key=alice-vpn-https-key';
const BOB = 'app=vpn&access_key=bob-vpn-https-key';

/** The one refusal, whole. No Date header: two refusals are the same bytes at any time. */
const REFUSAL =
  'HTTP/1.1 403 Forbidden\r\n' +
  'Content-Type: text/plain; charset=utf-8\r\n' +
  'Content-Length: 10\r\n' +
  'Cache-Control: no-store\r\n' +
  'Connection: close\r\n' +
  '\r\n' +
  'Forbidden\n';

let tls: { cert: Buffer; key: Buffer };
let stateDir: string;
const servers: Server[] = [];
beforeAll(async () => {
  tls = await throwawayCertificate();
  stateDir = await mkdtemp(join(tmpdir(), 'knock-port-one-answer-'));
});
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
afterAll(() => rm(stateDir, { recursive: true, force: true, maxRetries: 5 }));

/** A step-2 server with windows open from loopback for alice (vpn) and bob (vpn, TOTP). */
async function start(options: { ratePerMinute?: number; confirmCode?: (code: UsedCode) => Promise<boolean> } = {}) {
  const logs = capturedLogger('debug');
  const sessions = await SessionStore.open({ stateDir: await mkdtemp(join(stateDir, 's-')), logger: logs.logger }, []);
  sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
  sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
  const metrics = createDaemonMetrics(() => sessions.size);
  const grants: string[] = [];
  const server = createStep2Server({
    config,
    ...tls,
    sessions,
    grantService: async (ip, app, user) => void grants.push(`${ip} ${app.name} ${user.name}`),
    ...(options.confirmCode ? { confirmCode: options.confirmCode } : {}),
    limiter: new PerMinuteLimiter(options.ratePerMinute ?? 100),
    totp: new TotpVerifier(),
    logger: logs.logger,
    metrics,
  });
  servers.push(server);
  const port = await listen(server);
  const send = (request: Buffer) => rawExchange(port, request);
  return { port, send, grants, logs, metrics };
}

const post = (body: string | Buffer, headers: Record<string, string> = FORM, path = STEP2_PATH) => rawRequest('POST', path, body, headers);

describe('step 2 refuses every failure with one answer, byte for byte', () => {
  it('wrong path or method, malformed body, unknown app, wrong key, missing, wrong or used token, no window: the same 403', async () => {
    const h = await start();
    const now = Date.now() / 1000;
    const good = totpAt(TOTP_SECRET, now);
    const wrong = String((Number(good) + 500_000) % 1_000_000).padStart(6, '0');
    expect(await h.send(post(`${BOB}&token=${good}`))).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    const failures: Array<[string, Buffer]> = [
      ['another path', post(ALICE, FORM, '/step-2')],
      ['the path with a suffix', post(ALICE, FORM, `${STEP2_PATH}x`)],
      ['the path with a query', post(ALICE, FORM, `${STEP2_PATH}?a=1`)],
      ['the root', post(ALICE, FORM, '/')],
      ['GET on the path', rawRequest('GET', STEP2_PATH)],
      ['PUT on the path with a right body', rawRequest('PUT', STEP2_PATH, ALICE, FORM)],
      ['DELETE elsewhere', rawRequest('DELETE', '/anything')],
      ['an empty body', post('')],
      ['no access_key', post('app=vpn')],
      ['no app', post('access_key=alice-vpn-https-key')],
      ['a field twice', post(`${ALICE}&access_key=x`)],
      ['a key too long', post(`app=vpn&access_key=${'k'.repeat(300)}`)],
      ['a JSON key that is no string', post('{"app":"vpn","access_key":42}', JSON_BODY)],
      ['broken JSON', post('{"app":', JSON_BODY)],
      ['another content type', post(ALICE, { 'Content-Type': 'text/plain' })],
      ['a body that is not UTF-8', post(Buffer.from([0x61, 0x70, 0x70, 0x3d, 0xff, 0xfe]))],
      ['an unknown app', post('app=nope&access_key=alice-vpn-https-key')],
      ['a wrong key', post('app=vpn&access_key=not-anyones-key-0123')],
      ['a right key of an app without a window', post('app=ssh&access_key=alice-ssh-https-key')],
      ['a TOTP user with the right key and no token', post(BOB)],
      ['a TOTP user with the right key and a wrong token', post(`${BOB}&token=${wrong}`)],
      ['a TOTP user with the right key and a used token', post(`${BOB}&token=${good}`)],
      ['a wrong key with a token', post(`app=vpn&access_key=not-anyones-key-0123&token=${wrong}`)],
    ];
    for (const [what, request] of failures) expect([what, await h.send(request)]).toEqual([what, REFUSAL]);
    expect(h.grants).toEqual(['127.0.0.1 vpn bob']);
    // Counted alike too: one series for every refusal, nothing that names the cause.
    const counted = Object.fromEntries(seriesOf(await h.metrics.registry.metrics(), 'knockport_step2_requests_total'));
    expect(counted).toEqual(Object.fromEntries(STEP2_OUTCOMES.map((o) => [`{outcome="${o}"}`, { granted: 1, forbidden: failures.length }[o as string] ?? 0])));
    // The operator's debug log still says why, one line per refusal.
    expect(h.logs.lines().filter((l) => l.msg === 'step 2 rejected')).toHaveLength(failures.length);
  });

  it('clustered: a one-time code another gateway used first gets the same 403', async () => {
    const h = await start({ confirmCode: async () => false });
    expect(await h.send(post(`${BOB}&token=${totpAt(TOTP_SECRET, Date.now() / 1000)}`))).toBe(REFUSAL);
    expect(h.grants).toEqual([]);
  });

  it('answers a body over the limit with the same 413 on the real path and on any other', async () => {
    const h = await start();
    const declared = (method: string, path: string) => rawRequest(method, path, '', { ...FORM, 'Content-Length': '5000' });
    const chunked = (path: string) => {
      const data = `${ALICE}&pad=${'x'.repeat(1100)}`;
      return Buffer.from(`POST ${path} HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n${data.length.toString(16)}\r\n${data}\r\n0\r\n\r\n`);
    };
    const answers = [
      await h.send(declared('POST', STEP2_PATH)),
      await h.send(declared('POST', '/step-2')),
      await h.send(declared('PUT', '/')),
      await h.send(chunked(STEP2_PATH)),
      await h.send(chunked('/elsewhere')),
    ];
    expect(answers[0]).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n/);
    for (const answer of answers) expect(answer).toBe(answers[0]);
    expect(h.grants).toEqual([]);
  });

  it('answers over the rate limit with the same 429 on the real path and on any other', async () => {
    const h = await start({ ratePerMinute: 2 });
    expect(await h.send(post('app=vpn&access_key=wrong-key-0123'))).toBe(REFUSAL);
    expect(await h.send(post(ALICE, FORM, '/nope'))).toBe(REFUSAL);
    const answers = [await h.send(post(ALICE)), await h.send(post(ALICE, FORM, '/nope')), await h.send(rawRequest('GET', '/'))];
    expect(answers[0]).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
    for (const answer of answers) expect(answer).toBe(answers[0]);
    expect(h.grants).toEqual([]);
  });
});

/** The TLS version and suite a client with `options` gets, or the error that refused it. */
function handshake(port: number, options: ConnectionOptions): Promise<{ version: string | null; cipher: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      resolve({ version: socket.getProtocol(), cipher: socket.getCipher().name });
      socket.destroy();
    });
    socket.once('error', (err: Error & { code?: string }) => resolve({ error: err.code ?? err.message }));
  });
}

/** What `openssl s_client` negotiates (an operator's check): the cipher line of its session summary. */
async function sClientCipher(port: number, args: string[]): Promise<string> {
  const running = run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { timeout: 5_000 });
  running.child.stdin?.end(); // no request: s_client ends after the handshake
  const result = await running.catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  return /Cipher is (\S+)/.exec(result.stdout)?.[1] ?? 'no summary';
}

describe('step 2 TLS', () => {
  it('takes TLS 1.2 with ECDHE AEAD suites and TLS 1.3', async () => {
    const { port } = await start();
    for (const cipher of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      expect(await handshake(port, { maxVersion: 'TLSv1.2', ciphers: cipher })).toEqual({ version: 'TLSv1.2', cipher });
    }
    expect(await handshake(port, {})).toMatchObject({ version: 'TLSv1.3' });
  });

  it('refuses CBC suites (with SHA-1 or SHA-256) and TLS 1.1', async () => {
    const { port } = await start();
    for (const ciphers of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256']) {
      expect([ciphers, await handshake(port, { maxVersion: 'TLSv1.2', ciphers })]).toEqual([ciphers, { error: 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE' }]);
    }
    const old = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    expect(old).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
  });

  it('as openssl s_client shows it: a CBC-SHA1 suite gets no session, an AEAD suite does', async () => {
    const { port } = await start();
    expect(await sClientCipher(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'])).toBe('(NONE)');
    expect(await sClientCipher(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'])).toBe('ECDHE-ECDSA-AES128-GCM-SHA256');
  });
});
