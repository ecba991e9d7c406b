/**
 * Step-2 budgets an attacker cannot multiply: the request limit and the open-connection cap
 * count a whole source prefix, and wrong keys and tokens count per secret across sources.
 * Real HTTPS on loopback (127.0.0.0/8 gives the tests several /24s), real curl.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SecretLockout, type LockEvent } from '../../../src/auth/lockout.js';
import { PerMinuteLimiter } from '../../../src/auth/ratelimit.js';
import { newTotpSecret, totpAt, TotpVerifier } from '../../../src/auth/totp.js';
import { TOTP_PERIOD_SECONDS } from '../../../src/shared/otp-format.js';
import type { Config } from '../../../src/config/types.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { createStep2Server, type Step2Limits } from '../../../src/step2/server.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { curl, listen, STEP2_PATH, testConfig, throwawayCertificate } from './fixtures.js';

const TOTP_SECRET = newTotpSecret();
const ALICE = 'app=vpn&access_key=alice-vpn-https-key';
const BOB = 'app=vpn&access_key=bob-vpn-https-key';

let tls: { cert: Buffer; key: Buffer };
let stateDir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];
beforeAll(async () => {
  tls = await throwawayCertificate();
  stateDir = await mkdtemp(join(tmpdir(), 'knock-port-budgets-'));
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
afterAll(() => rm(stateDir, { recursive: true, force: true, maxRetries: 5 }));

interface Options {
  sourcePrefixV4?: number;
  ratePerMinute?: number;
  limits?: Partial<Step2Limits>;
  lockout?: SecretLockout;
}

async function start(options: Options = {}) {
  const base = testConfig(TOTP_SECRET);
  const config: Config = { ...base, global: { ...base.global, sourcePrefixV4: options.sourcePrefixV4 ?? 32 } };
  const logs = capturedLogger('debug');
  const sessions = await SessionStore.open({ stateDir: await mkdtemp(join(stateDir, 's-')), logger: logs.logger }, []);
  const grants: string[] = [];
  const server = createStep2Server({
    config,
    ...tls,
    sessions,
    grantService: async (ip, app, user) => void grants.push(`${ip} ${app.name} ${user.name}`),
    limiter: new PerMinuteLimiter(options.ratePerMinute ?? 100),
    totp: new TotpVerifier(),
    ...(options.lockout ? { lockout: options.lockout } : {}),
    logger: logs.logger,
    metrics: createDaemonMetrics(() => sessions.size),
    limits: options.limits,
  });
  servers.push(server);
  const port = await listen(server);
  const url = `https://127.0.0.1:${port}${STEP2_PATH}`;
  const post = (from: string, body: string) => curl(url, ['--interface', from, '-d', body]);
  return { port, sessions, grants, logs, post };
}

function openIdleTcp(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket));
    socket.once('error', reject);
    sockets.push(socket);
  });
}

function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe('step-2 limits per source prefix', () => {
  it('the request limit counts a whole prefix: another address of it is refused, another prefix is not', async () => {
    const h = await start({ sourcePrefixV4: 24, ratePerMinute: 3 });
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.1.1']) h.sessions.record(ip, 'vpn', 'alice', 'step2', 10);
    for (let i = 0; i < 3; i++) expect((await h.post('127.0.0.1', 'app=vpn&access_key=wrong')).status).toBe(403);
    expect((await h.post('127.0.0.2', ALICE)).status).toBe(429);
    expect((await h.post('127.0.1.1', ALICE)).status).toBe(200);
  });

  it('the open-connection cap counts a whole prefix: another address of it is cut, another prefix is served', async () => {
    const h = await start({ sourcePrefixV4: 24, limits: { connectionsPerPrefix: 3 } });
    h.sessions.record('127.0.1.1', 'vpn', 'alice', 'step2', 10);
    const held = await Promise.all(['127.0.0.1', '127.0.0.2', '127.0.0.1'].map((ip) => openIdleTcp(h.port, ip)));
    const extra = await openIdleTcp(h.port, '127.0.0.3');
    expect(await closedWithin(extra, 1000)).toBe(true);
    for (const socket of held) expect(socket.destroyed).toBe(false);
    expect((await h.post('127.0.1.1', ALICE)).status).toBe(200);
    const refused = h.logs.lines().find((l) => l.msg === 'step 2 connection refused: too many from this source');
    expect(refused).toMatchObject({ ip: '127.0.0.3', source: '127.0.0.0/24', open: 3 });
  });
});

describe('step-2 guesses counted per secret, across sources', () => {
  function lockout(policy: { userFailures?: number; appFailures?: number } = {}) {
    let now = Date.now();
    const events: LockEvent[] = [];
    const lock = new SecretLockout(
      { userFailures: 3, appFailures: 3, windowSeconds: 600, lockSeconds: 900, ...policy },
      { now: () => now, onLock: (e) => events.push(e) },
    );
    return { lock, events, advance: (ms: number) => (now += ms) };
  }
  const wrongToken = (i: number): string => {
    const valid = new Set([-1, 0, 1].map((step) => totpAt(TOTP_SECRET, Date.now() / 1000 + step * TOTP_PERIOD_SECONDS)));
    for (let n = 123_457 + i * 7919; ; n++) if (!valid.has(String(n % 1_000_000).padStart(6, '0'))) return String(n % 1_000_000).padStart(6, '0');
  };

  it("locks a user's token after wrong tokens from several addresses; the right token then gets the same 403 and is not used up", async () => {
    const { lock, events, advance } = lockout();
    const h = await start({ lockout: lock });
    const sources = ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14', '127.0.0.15'];
    for (const ip of sources) h.sessions.record(ip, 'vpn', 'bob', 'step2', 10);
    for (let i = 0; i < 3; i++) expect((await h.post(sources[i]!, `${BOB}&token=${wrongToken(i)}`)).status).toBe(403);
    const right = await h.post(sources[3]!, `${BOB}&token=${totpAt(TOTP_SECRET, Date.now() / 1000)}`);
    const wrong = await h.post(sources[4]!, `${BOB}&token=${wrongToken(9)}`);
    expect([right.status, right.body]).toEqual([403, 'Forbidden\n']);
    expect([wrong.status, wrong.body]).toEqual([403, 'Forbidden\n']);
    expect(right.headers.replace(/^date:.*$/im, '')).toBe(wrong.headers.replace(/^date:.*$/im, ''));
    expect(h.grants).toEqual([]);
    expect(events).toMatchObject([{ factor: 'step2-token', app: 'vpn', user: 'bob', failures: 3 }]);
    // Alice (no token) is not locked out by bob's lock.
    h.sessions.record('127.0.0.16', 'vpn', 'alice', 'step2', 10);
    expect((await h.post('127.0.0.16', ALICE)).status).toBe(200);
    // Once the lock ends, the same code (refused, not consumed, while locked) is accepted.
    advance(900_000);
    expect((await h.post(sources[3]!, `${BOB}&token=${totpAt(TOTP_SECRET, Date.now() / 1000)}`)).status).toBe(200);
  });

  it("locks the app's step 2 after wrong keys from addresses with a window; the right key then gets the same 403", async () => {
    const { lock, events } = lockout({ appFailures: 3 });
    const h = await start({ lockout: lock });
    for (const ip of ['127.0.0.21', '127.0.0.22', '127.0.0.23', '127.0.0.24']) h.sessions.record(ip, 'vpn', 'alice', 'step2', 10);
    h.sessions.record('127.0.0.25', 'ssh', 'alice', 'step2', 10);
    // No window: not a guess at any key, counted against nothing.
    for (let i = 0; i < 5; i++) expect((await h.post('127.0.0.99', 'app=vpn&access_key=wrong')).status).toBe(403);
    for (const ip of ['127.0.0.21', '127.0.0.22', '127.0.0.23']) expect((await h.post(ip, 'app=vpn&access_key=wrong')).status).toBe(403);
    const right = await h.post('127.0.0.24', ALICE);
    expect([right.status, right.body]).toEqual([403, 'Forbidden\n']);
    expect((await h.post('127.0.0.25', 'app=ssh&access_key=alice-ssh-https-key')).status).toBe(200);
    expect(events).toMatchObject([{ factor: 'step2-key', app: 'vpn', failures: 3 }]);
    const reasons = h.logs
      .lines()
      .filter((l) => l.msg === 'step 2 rejected')
      .map((l) => l.reason);
    expect(reasons.filter((r) => r === 'locked')).toHaveLength(1);
    expect(h.logs.text()).not.toContain('alice-vpn-https-key');
  });
});
