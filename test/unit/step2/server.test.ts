import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PerMinuteLimiter } from '../../../src/auth/ratelimit.js';
import { newTotpSecret, totpAt, TotpVerifier } from '../../../src/auth/totp.js';
import { secretScope, type UsedCode } from '../../../src/auth/used-codes.js';
import type { AppConfig, User } from '../../../src/config/types.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { base32Decode, TOTP_PERIOD_SECONDS } from '../../../src/shared/otp-format.js';
import { valueOf } from '../metrics/values.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { createStep2Server, type Step2Limits } from '../../../src/step2/server.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { curl, listen, STEP2_PATH, testConfig, throwawayCertificate } from './fixtures.js';

const TOTP_SECRET = newTotpSecret();
const config = testConfig(TOTP_SECRET);

let tls: { cert: Buffer; key: Buffer };
let stateDir: string;
beforeAll(async () => {
  tls = await throwawayCertificate();
  stateDir = await mkdtemp(join(tmpdir(), 'knock-port-step2-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true, maxRetries: 5 });
});

interface Harness {
  url: string;
  port: number;
  sessions: SessionStore;
  grants: Array<{ ip: string; app: string; user: string }>;
  logs: ReturnType<typeof capturedLogger>;
  metrics: ReturnType<typeof createDaemonMetrics>;
  server: Server;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function start(
  overrides: {
    limits?: Partial<Step2Limits>;
    ratePerMinute?: number;
    host?: string;
    failGrant?: boolean;
    confirmCode?: (code: UsedCode) => Promise<boolean>;
  } = {},
): Promise<Harness> {
  const logs = capturedLogger('debug');
  const sessions = await SessionStore.open({ stateDir: await mkdtemp(join(stateDir, 's-')), logger: logs.logger }, []);
  const metrics = createDaemonMetrics(() => sessions.size);
  const grants: Harness['grants'] = [];
  const server = createStep2Server({
    config,
    ...tls,
    sessions,
    grantService: async (ip: string, app: AppConfig, user: User) => {
      if (overrides.failGrant) throw new Error('nft: no such table');
      grants.push({ ip, app: app.name, user: user.name });
    },
    ...(overrides.confirmCode ? { confirmCode: overrides.confirmCode } : {}),
    limiter: new PerMinuteLimiter(overrides.ratePerMinute ?? 100),
    totp: new TotpVerifier(),
    logger: logs.logger,
    metrics,
    limits: overrides.limits,
  });
  servers.push(server);
  const host = overrides.host ?? '127.0.0.1';
  const port = await listen(server, host);
  return { url: `https://127.0.0.1:${port}${STEP2_PATH}`, port, sessions, grants, logs, metrics, server };
}

describe('step 2 HTTPS answers (as curl shows them)', () => {
  it('grants the user whose step-1 window is open, with 200 OK and Connection: close', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    const answer = await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key']);
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('OK\n');
    expect(answer.headers).toMatch(/^connection: close$/im);
    expect(h.grants).toEqual([{ ip: '127.0.0.1', app: 'vpn', user: 'alice' }]);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'granted' })).toBe(1);
  });

  it('accepts a JSON body too', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'ssh', 'alice', 'step2', 10);
    const answer = await curl(h.url, ['-H', 'Content-Type: application/json', '-d', '{"app":"ssh","access_key":"alice-ssh-https-key"}']);
    expect([answer.status, answer.body]).toEqual([200, 'OK\n']);
  });

  it('gives every auth failure the same 403 and grants nothing', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    const attempts = [
      'app=vpn&access_key=wrong-key', // wrong key
      'app=ssh&access_key=alice-ssh-https-key', // right key, but step 1 was for vpn, not ssh
      'app=vpn&access_key=bob-vpn-https-key', // another user's valid key: bob did not pass step 1
      'app=nope&access_key=alice-vpn-https-key', // unknown app
    ];
    const answers = await Promise.all(attempts.map((data) => curl(h.url, ['-d', data])));
    for (const answer of answers) expect([answer.status, answer.body]).toEqual([403, 'Forbidden\n']);
    expect(h.grants).toEqual([]);
    const reasons = h.logs
      .lines()
      .filter((l) => l.msg === 'step 2 rejected')
      .map((l) => l.reason);
    expect(reasons.sort()).toEqual(['bad-key', 'bad-key', 'no-window', 'unknown-app']);
  });

  it('answers a missing token exactly as a wrong key, so the answer never confirms the step-2 key', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    const rightKeyNoToken = await curl(h.url, ['-d', 'app=vpn&access_key=bob-vpn-https-key']);
    const wrongKeyNoToken = await curl(h.url, ['-d', 'app=vpn&access_key=not-bobs-https-key']);
    const wrongKeyToken = await curl(h.url, ['-d', 'app=vpn&access_key=not-bobs-https-key&token=123456']);
    // Status, headers (but the date) and body, byte for byte.
    const seen = (answer: { status: number; headers: string; body: string }) => [answer.status, answer.headers.replace(/^date: .*$/im, ''), answer.body];
    expect(seen(rightKeyNoToken)).toEqual(seen(wrongKeyNoToken));
    expect(seen(wrongKeyToken)).toEqual(seen(wrongKeyNoToken));
    expect(rightKeyNoToken.status).toBe(403);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'forbidden' })).toBe(3);
    expect(h.grants).toEqual([]);
  });

  it('refuses a window from another IP', async () => {
    const h = await start();
    h.sessions.record('127.0.0.2', 'vpn', 'alice', 'step2', 10);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(403);
    expect((await curl(h.url, ['--interface', '127.0.0.2', '-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(200);
  });

  it('refuses a TOTP user without a token, or with a wrong or reused one (403), and grants the right one', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    const base = 'app=vpn&access_key=bob-vpn-https-key';
    const missing = await curl(h.url, ['-d', base]);
    expect([missing.status, missing.body]).toEqual([403, 'Forbidden\n']);
    const now = Date.now() / 1000;
    const wrong = String((Number(totpAt(TOTP_SECRET, now)) + 500_000) % 1_000_000).padStart(6, '0');
    expect((await curl(h.url, ['-d', `${base}&token=${wrong}`])).status).toBe(403);
    const good = totpAt(TOTP_SECRET, now);
    expect((await curl(h.url, ['-d', `${base}&token=${good}`])).status).toBe(200);
    expect((await curl(h.url, ['-d', `${base}&token=${good}`])).status).toBe(403);
    expect(h.grants).toEqual([{ ip: '127.0.0.1', app: 'vpn', user: 'bob' }]);
  });

  it('clustered: refuses a TOTP code another gateway used first with the same 403 as any refusal, and grants nothing', async () => {
    const confirmed: UsedCode[] = [];
    const h = await start({
      confirmCode: async (code) => {
        confirmed.push(code);
        return false;
      },
    });
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    const base = 'app=vpn&access_key=bob-vpn-https-key';
    const now = Date.now() / 1000;
    const refused = await curl(h.url, ['-d', `${base}&token=${totpAt(TOTP_SECRET, now)}`]);
    expect(h.grants).toEqual([]);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'forbidden' })).toBe(1);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'granted' })).toBe(0);
    // The store is asked about this very code: the secret's scope and the token's time step.
    const secret = base32Decode(TOTP_SECRET)!;
    expect(confirmed).toEqual([{ scope: secretScope(secret), counter: Math.floor(now / TOTP_PERIOD_SECONDS), expiresAt: expect.any(Number) as number }]);
    const wrong = String((Number(totpAt(TOTP_SECRET, now)) + 500_000) % 1_000_000).padStart(6, '0');
    const wrongToken = await curl(h.url, ['-d', `${base}&token=${wrong}`]);
    const seen = (answer: { status: number; headers: string; body: string }) => [answer.status, answer.headers.replace(/^date: .*$/im, ''), answer.body];
    expect(seen(refused)).toEqual(seen(wrongToken));
    expect([refused.status, refused.body]).toEqual([403, 'Forbidden\n']);
    const reasons = h.logs
      .lines()
      .filter((l) => l.msg === 'step 2 rejected')
      .map((l) => l.reason);
    expect(reasons).toEqual(['one-time code used on another gateway first', 'bad-token']);
  });

  it('clustered: grants when the other gateways confirm the code, and never asks for a user without TOTP', async () => {
    const confirmed: UsedCode[] = [];
    const h = await start({
      confirmCode: async (code) => {
        confirmed.push(code);
        return true;
      },
    });
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    h.sessions.record('127.0.0.1', 'ssh', 'alice', 'step2', 10);
    const token = totpAt(TOTP_SECRET, Date.now() / 1000);
    expect((await curl(h.url, ['-d', `app=vpn&access_key=bob-vpn-https-key&token=${token}`])).status).toBe(200);
    expect(confirmed).toHaveLength(1);
    expect((await curl(h.url, ['-d', 'app=ssh&access_key=alice-ssh-https-key'])).status).toBe(200);
    expect(confirmed).toHaveLength(1);
    expect(h.grants).toEqual([
      { ip: '127.0.0.1', app: 'vpn', user: 'bob' },
      { ip: '127.0.0.1', app: 'ssh', user: 'alice' },
    ]);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'granted' })).toBe(2);
  });

  it('answers malformed bodies with the same 403 as a wrong key, and large ones with 413', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    const malformed = [
      ['-d', 'app=vpn'],
      ['-d', 'app=vpn&access_key=a&access_key=b'],
      ['-d', `app=vpn&access_key=${'k'.repeat(300)}`],
      ['-H', 'Content-Type: application/json', '-d', '{"app":"vpn","access_key":42}'],
      ['-H', 'Content-Type: application/json', '-d', '{"app":'],
      ['-H', 'Content-Type: text/plain', '-d', 'app=vpn&access_key=alice-vpn-https-key'],
    ];
    for (const args of malformed) expect([(await curl(h.url, args)).body, args.join(' ')]).toEqual(['Forbidden\n', args.join(' ')]);
    const big = await curl(h.url, ['-d', `app=vpn&access_key=alice-vpn-https-key&pad=${'x'.repeat(2000)}`]);
    expect([big.status, big.body]).toEqual([413, 'Payload Too Large\n']);
    const chunked = await curl(h.url, ['-H', 'Transfer-Encoding: chunked', '-d', `app=vpn&access_key=alice-vpn-https-key&pad=${'x'.repeat(2000)}`]);
    expect(chunked.status).toBe(413);
    expect(h.grants).toEqual([]);
    expect(await valueOf(h.metrics.step2Requests, { outcome: 'forbidden' })).toBe(malformed.length);
  });

  it('answers any other path or method with the same 403 as a wrong key, revealing nothing', async () => {
    const h = await start();
    const base = `https://127.0.0.1:${h.port}`;
    const answers = await Promise.all([
      curl(`${base}/`),
      curl(`${base}${STEP2_PATH}`), // GET on the real path
      curl(`${base}${STEP2_PATH}?x=1`, ['-d', 'app=vpn&access_key=k']),
      curl(`${base}${STEP2_PATH}x`, ['-d', 'app=vpn&access_key=k']),
      curl(`${base}/step-2`, ['-d', 'app=vpn&access_key=k']),
      curl(`${base}${STEP2_PATH}`, ['-d', 'app=vpn&access_key=wrong-key-0123']), // the real path, a wrong key
    ]);
    for (const answer of answers) expect([answer.status, answer.headers, answer.body]).toEqual([403, answers[0].headers, 'Forbidden\n']);
  });

  it('answers 429 over the per-IP limit per minute', async () => {
    const h = await start({ ratePerMinute: 3 });
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await curl(h.url, ['-d', 'app=vpn&access_key=wrong'])).status);
    expect(statuses).toEqual([403, 403, 403, 429]);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(429);
    expect((await curl(h.url, ['--interface', '127.0.0.2', '-d', 'app=vpn&access_key=wrong'])).status).toBe(403);
  });

  it('answers 500 when the grant cannot be applied, and says so in the log', async () => {
    const h = await start({ failGrant: true });
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(500);
    expect(h.logs.lines().some((l) => l.level === 40 && String(l.err).includes('no such table'))).toBe(true);
  });

  it('normalizes IPv4-mapped client addresses on a dual-stack listener', async () => {
    const h = await start({ host: '::' });
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    h.sessions.record('::1', 'ssh', 'alice', 'step2', 10);
    expect((await curl(`https://127.0.0.1:${h.port}${STEP2_PATH}`, ['-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(200);
    expect((await curl(`https://[::1]:${h.port}${STEP2_PATH}`, ['-d', 'app=ssh&access_key=alice-ssh-https-key'])).status).toBe(200);
    expect(h.grants.map((g) => g.ip)).toEqual(['127.0.0.1', '::1']);
  });

  it('never logs a key or token', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    const token = totpAt(TOTP_SECRET, Date.now() / 1000 + 30);
    await curl(h.url, ['-d', `app=vpn&access_key=bob-vpn-https-key&token=${token}`]);
    await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key']);
    const text = h.logs.text();
    expect(text).toContain('step 2 rejected');
    for (const secret of ['bob-vpn-https-key', 'alice-vpn-https-key', token]) expect(text).not.toContain(secret);
  });

  it('refuses TLS below 1.2', async () => {
    const h = await start();
    const error = await new Promise<Error & { code?: string }>((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: h.port,
        rejectUnauthorized: false,
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT:@SECLEVEL=0',
      });
      socket.once('secureConnect', () => resolve(Object.assign(new Error('handshake succeeded'), { code: 'CONNECTED' })));
      socket.once('error', resolve);
    });
    expect(error.code).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    expect((await curl(h.url, ['--tls-max', '1.2'])).status).toBe(403);
  });
});

describe('step 2 under idle and slow clients', () => {
  const SHORT: Partial<Step2Limits> = { handshakeTimeoutMs: 1500, headersTimeoutMs: 1500, requestTimeoutMs: 2000, idleTimeoutMs: 1500 };

  function openIdleTcp(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket));
      socket.once('error', reject);
      sockets.push(socket);
    });
  }

  function closedWithin(socket: Socket, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (socket.destroyed || socket.readyState === 'closed') return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** TLS up, then the request line and one header byte every 100 ms (at most 60 bytes). */
  function startSlowloris(port: number): { socket: Socket; stop: () => void } {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    socket.on('error', () => undefined);
    sockets.push(socket);
    let timer: NodeJS.Timeout | undefined;
    socket.once('secureConnect', () => {
      socket.write(`POST ${STEP2_PATH} HTTP/1.1\r\nHost: x\r\n`);
      let sent = 0;
      timer = setInterval(() => {
        if (sent++ >= 60 || socket.destroyed) return clearInterval(timer);
        socket.write('X');
      }, 100);
    });
    return { socket, stop: () => clearInterval(timer) };
  }

  it('one idle TCP connection and one slowloris client do not delay another client', async () => {
    const h = await start({ limits: SHORT });
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    const idle = await openIdleTcp(h.port);
    const slow = startSlowloris(h.port);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answer = await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key']);
    expect([answer.status, answer.body]).toEqual([200, 'OK\n']);
    expect(answer.seconds).toBeLessThan(1);
    // And neither holds its connection for long: the handshake and header timeouts cut them.
    expect(await closedWithin(idle, 4000)).toBe(true);
    expect(await closedWithin(slow.socket, 4000)).toBe(true);
    slow.stop();
  });

  it('caps open connections per address without affecting other addresses', async () => {
    const h = await start({ limits: { ...SHORT, connectionsPerPrefix: 3 } });
    h.sessions.record('127.0.0.2', 'vpn', 'alice', 'step2', 10);
    const held = await Promise.all([0, 1, 2].map(() => openIdleTcp(h.port)));
    const extra = await openIdleTcp(h.port);
    expect(await closedWithin(extra, 1000)).toBe(true);
    for (const socket of held) expect(socket.destroyed).toBe(false);
    const answer = await curl(h.url, ['--interface', '127.0.0.2', '-d', 'app=vpn&access_key=alice-vpn-https-key']);
    expect(answer.status).toBe(200);
    expect(h.logs.lines().some((l) => l.msg === 'step 2 connection refused: too many from this source')).toBe(true);
  });
});

describe('the info lines security tools read (fail2ban)', () => {
  const infoLines = (h: Harness) => h.logs.lines().filter((l) => l.level === 30);

  it('logs one "knock refused" line per refused request, the same class for every secret problem', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'bob', 'step2', 10);
    const attempts = [
      'app=vpn&access_key=bob-vpn-https-key', // bob's right key, no one-time code
      'app=vpn&access_key=not-bobs-https-key', // a wrong key
      'app=vpn&access_key=bob-vpn-https-key&token=000000', // the right key, a wrong code
      'app=nope&access_key=bob-vpn-https-key', // an unknown app
      'app=ssh&access_key=alice-ssh-https-key', // a right key without a step-1 window
    ];
    for (const data of attempts) expect((await curl(h.url, ['-d', data])).status).toBe(403);
    const refused = infoLines(h).filter((l) => l.msg === 'knock refused');
    expect(refused).toHaveLength(attempts.length);
    for (const line of refused) {
      const { time: _time, port, ...rest } = line;
      expect(rest).toEqual({ level: 30, name: 'knock-port', ip: '127.0.0.1', step: 2, class: 'refused', msg: 'knock refused' });
      expect(port).toEqual(expect.any(Number));
    }
    // Nothing at info or above tells the right key from a wrong one.
    const loud = h.logs
      .text()
      .split('\n')
      .filter((l) => /"level":[3-6]0/.test(l));
    for (const line of loud) expect(line).not.toMatch(/bad-key|bad-otp|otp-required|unknown-app|no-window|locked/);
  });

  it('classes size and rate refusals apart, as the answers already do', async () => {
    const h = await start({ ratePerMinute: 2, limits: { bodyBytes: 64 } });
    expect((await curl(h.url, ['-d', `app=vpn&access_key=${'x'.repeat(100)}`])).status).toBe(413);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=wrong'])).status).toBe(403);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=wrong'])).status).toBe(429);
    const classes = infoLines(h)
      .filter((l) => l.msg === 'knock refused')
      .map((l) => l.class);
    expect(classes).toEqual(['malformed', 'refused', 'rate-limited']);
  });

  it('logs no refusal line for a granted request', async () => {
    const h = await start();
    h.sessions.record('127.0.0.1', 'vpn', 'alice', 'step2', 10);
    expect((await curl(h.url, ['-d', 'app=vpn&access_key=alice-vpn-https-key'])).status).toBe(200);
    expect(infoLines(h).filter((l) => l.msg === 'knock refused')).toEqual([]);
  });

  it('logs a failed TLS handshake at info with the client address and port, on one line', async () => {
    const h = await start();
    const socket = tcpConnect(h.port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
    const localPort = socket.localPort;
    socket.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // plain HTTP where TLS is expected
    const deadline = Date.now() + 3000;
    const failed = () => infoLines(h).find((l) => l.msg === 'step 2 TLS handshake failed');
    while (!failed() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(failed()).toMatchObject({ level: 30, ip: '127.0.0.1', port: localPort });
    expect(String(failed()!.reason)).not.toContain('\n');
  });
});
