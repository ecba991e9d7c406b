/** The step-2 server behind a reverse proxy: real HTTPS on loopback, real curl playing the proxy. */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PerMinuteLimiter } from '../../../src/auth/ratelimit.js';
import { newTotpSecret, TotpVerifier } from '../../../src/auth/totp.js';
import type { Config } from '../../../src/config/types.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { createStep2Server } from '../../../src/step2/server.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { curl, listen, STEP2_PATH, testConfig, throwawayCertificate } from './fixtures.js';

const CLIENT = '203.0.113.9';
const ALICE = 'app=vpn&access_key=alice-vpn-https-key';

let tls: { cert: Buffer; key: Buffer };
let stateDir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];
beforeAll(async () => {
  tls = await throwawayCertificate();
  stateDir = await mkdtemp(join(tmpdir(), 'knock-port-proxy-'));
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
afterAll(() => rm(stateDir, { recursive: true, force: true, maxRetries: 5 }));

/** A step-2 server trusting `trusted`, with a step-2 window open for CLIENT (not for loopback). */
async function start(trusted: string[] | undefined, connectionsPerPrefix = 8) {
  const base = testConfig(newTotpSecret());
  const config: Config = { ...base, global: { ...base.global, ...(trusted ? { trustedProxies: trusted } : {}) } };
  const logs = capturedLogger('debug');
  const sessions = await SessionStore.open({ stateDir: await mkdtemp(join(stateDir, 's-')), logger: logs.logger }, []);
  sessions.record(CLIENT, 'vpn', 'alice', 'step2', 10);
  const grants: string[] = [];
  const server = createStep2Server({
    config,
    ...tls,
    sessions,
    grantService: async (ip) => void grants.push(ip),
    limiter: new PerMinuteLimiter(100),
    totp: new TotpVerifier(),
    logger: logs.logger,
    metrics: createDaemonMetrics(() => sessions.size),
    limits: { connectionsPerPrefix },
  });
  servers.push(server);
  const port = await listen(server);
  return { url: `https://127.0.0.1:${port}${STEP2_PATH}`, port, grants, logs };
}

describe('step 2 behind a trusted proxy', () => {
  it('grants the client the proxy names in X-Real-IP, and logs both addresses', async () => {
    const h = await start(['127.0.0.1/32']);
    const answer = await curl(h.url, ['-H', `X-Real-IP: ${CLIENT}`, '-d', ALICE]);
    expect(answer.status).toBe(200);
    expect(h.grants).toEqual([CLIENT]);

    await curl(h.url, ['-H', `X-Real-IP: ${CLIENT}`, '-d', 'app=vpn&access_key=wrong-key-0123']);
    expect(h.logs.lines()).toContainEqual(expect.objectContaining({ msg: 'step 2 rejected', ip: CLIENT, proxy: '127.0.0.1', outcome: 'forbidden' }));
  });

  it('grants the last X-Forwarded-For entry when there is no X-Real-IP', async () => {
    const h = await start(['127.0.0.0/8']);
    const answer = await curl(h.url, ['-H', `X-Forwarded-For: 10.6.6.6, ${CLIENT}`, '-d', ALICE]);
    expect(answer.status).toBe(200);
    expect(h.grants).toEqual([CLIENT]);
  });

  it('refuses a request through a trusted proxy that names no client with the same 403 as any refusal', async () => {
    const h = await start(['127.0.0.1/32']);
    expect(await curl(h.url, ['-d', ALICE])).toMatchObject({ status: 403, body: 'Forbidden\n' });
    expect(await curl(h.url, ['-H', 'X-Real-IP: somewhere', '-d', ALICE])).toMatchObject({ status: 403, body: 'Forbidden\n' });
    expect(h.grants).toEqual([]);
  });

  it('ignores the headers of a peer that is not trusted: a forged X-Real-IP opens nothing', async () => {
    for (const trusted of [undefined, ['127.0.0.2/32']]) {
      const h = await start(trusted);
      const answer = await curl(h.url, ['-H', `X-Real-IP: ${CLIENT}`, '-H', `X-Forwarded-For: ${CLIENT}`, '-d', ALICE]);
      expect(answer.status).toBe(403);
      expect(h.grants).toEqual([]);
    }
  });

  it('does not cap connections from a trusted proxy: every client behind it shares its address', async () => {
    const h = await start(['127.0.0.1/32'], 2);
    const held = await Promise.all([0, 1, 2].map(() => openIdleTcp(h.port)));
    const answer = await curl(h.url, ['-H', `X-Real-IP: ${CLIENT}`, '-d', ALICE]);
    expect(answer.status).toBe(200);
    for (const socket of held) expect(socket.destroyed).toBe(false);
  });
});

function openIdleTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
    sockets.push(socket);
  });
}
