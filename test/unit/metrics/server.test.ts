import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { request, type RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestKey } from '../../../src/config/key-digest.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { parseMetricsListen, startMetricsServer, MetricsListenError } from '../../../src/metrics/server.js';
import { caAndLeaf, selfSigned, type PemPair } from '../../helpers/tls-certs.js';
import { valueOf } from './values.js';
import { DAEMON_METRICS, DEFAULT_METRICS, declared } from './expected.js';

/** GET over TLS trusting `serverCert`, with a client certificate when given: the status, or the error's code. */
function tlsGet(port: number, serverCert: string, client?: PemPair): Promise<number | string> {
  const options: RequestOptions = {
    host: '127.0.0.1',
    port,
    path: '/metrics',
    ca: readFileSync(serverCert),
    servername: 'metrics',
    checkServerIdentity: () => undefined,
  };
  if (client) Object.assign(options, { cert: readFileSync(client.cert), key: readFileSync(client.key) });
  return new Promise((resolve) => {
    const req = request(options, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

describe('metrics endpoint', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  it('refuses non-loopback and malformed listen addresses', () => {
    expect(parseMetricsListen('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseMetricsListen('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseMetricsListen('localhost:1')).toEqual({ host: 'localhost', port: 1 });
    for (const bad of ['0.0.0.0:9464', '[::]:9464', '192.168.1.1:9464', 'example.com:80', '127.0.0.1', '127.0.0.1:70000']) {
      expect(() => parseMetricsListen(bad), bad).toThrow(MetricsListenError);
    }
    // Guarded by a token or client certificates, any address.
    expect(parseMetricsListen('0.0.0.0:9464', true)).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseMetricsListen('[2001:db8::1]:9464', true)).toEqual({ host: '2001:db8::1', port: 9464 });
    expect(() => parseMetricsListen('0.0.0.0', true)).toThrow(MetricsListenError);
  });

  it('serves GET /metrics on loopback, with the daemon and default metrics, and nothing else', async () => {
    const metrics = createDaemonMetrics(() => 1);
    metrics.grants.inc({ step: 'service' });
    let scrapes = 0;
    metrics.registry.beforeScrape(() => (scrapes += 1));
    server = await startMetricsServer({ listen: '127.0.0.1:0' }, metrics.registry);
    const { port } = server.address() as AddressInfo;
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await ok.text();
    expect(scrapes).toBe(1);
    expect(text).toContain('\nknockport_grants_total{step="service"} 1\n');
    expect(text).toContain('\nknockport_live_sessions 1\n');
    const types = new Map(declared(text).map(([name, type]) => [name, type]));
    for (const [name, type] of [...DAEMON_METRICS, ...DEFAULT_METRICS]) expect(types.get(name), name).toBe(type);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    expect(text).toMatch(/^nodejs_version_info\{version="v\d+\.\d+\.\d+",major="\d+",minor="\d+",patch="\d+"\} 1$/m);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(404);
  });

  it('answers 500 when a scrape fails, and keeps serving', async () => {
    const metrics = createDaemonMetrics(() => 0);
    let fail = true;
    metrics.registry.beforeScrape(() => {
      if (fail) throw new Error('pool gone');
    });
    server = await startMetricsServer({ listen: '127.0.0.1:0' }, metrics.registry);
    const { port } = server.address() as AddressInfo;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(500);
    fail = false;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
  });

  describe('off loopback', () => {
    let dir: string;
    let serverPair: PemPair;
    let clients: ReturnType<typeof caAndLeaf>;
    let stranger: ReturnType<typeof caAndLeaf>;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'kp-metrics-tls-'));
      serverPair = selfSigned(dir, 'metrics');
      clients = caAndLeaf(dir, 'prometheus');
      stranger = caAndLeaf(dir, 'stranger');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('with a bearer token: the right token gets the metrics; none, a wrong one or another scheme get 401, counted, and the server goes on', async () => {
      const metrics = createDaemonMetrics(() => 0);
      const token = 'a1b2c3d4e5f6a7b8c9d0e1f2';
      const onUnauthorized = () => metrics.metricsUnauthorized.inc();
      server = await startMetricsServer({ listen: '0.0.0.0:0', auth: { tokenDigest: digestKey(token) }, onUnauthorized }, metrics.registry);
      const { port } = server.address() as AddressInfo;
      const get = (authorization?: string) => fetch(`http://127.0.0.1:${port}/metrics`, authorization ? { headers: { authorization } } : {});
      const refused = await Promise.all(
        [undefined, 'Bearer wrong', `Bearer ${token}x`, `Basic ${Buffer.from(`u:${token}`).toString('base64')}`, `Bearer ${token} extra`, 'Bearer'].map(get),
      );
      expect(refused.map((res) => res.status)).toEqual([401, 401, 401, 401, 401, 401]);
      expect(refused[0]!.headers.get('www-authenticate')).toBe('Bearer realm="knock-port metrics"');
      expect(await refused[1]!.text()).not.toContain('knockport_');
      expect(await valueOf(metrics.metricsUnauthorized)).toBe(6);
      const ok = await get(`Bearer ${token}`);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^knockport_metrics_unauthorized_total 6$/m);
    });

    it('over TLS with client certificates: only a client whose certificate the CA signed gets through', async () => {
      const metrics = createDaemonMetrics(() => 0);
      const tls = { ...serverPair, clientCa: clients.ca.cert };
      server = await startMetricsServer({ listen: '0.0.0.0:0', auth: { tls } }, metrics.registry);
      const { port } = server.address() as AddressInfo;
      expect(await tlsGet(port, serverPair.cert, clients.leaf)).toBe(200);
      expect(await tlsGet(port, serverPair.cert, stranger.leaf)).not.toBe(200);
      expect(await tlsGet(port, serverPair.cert)).not.toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined))?.status).toBeUndefined();
      expect(await tlsGet(port, serverPair.cert, clients.leaf)).toBe(200);
    });

    it('TLS alone does not make an address other than loopback acceptable; unreadable files are named', async () => {
      const metrics = createDaemonMetrics(() => 0);
      await expect(startMetricsServer({ listen: '0.0.0.0:0', auth: { tls: serverPair } }, metrics.registry)).rejects.toThrow(MetricsListenError);
      const missing = { cert: join(dir, 'none.pem'), key: serverPair.key, clientCa: clients.ca.cert };
      await expect(startMetricsServer({ listen: '0.0.0.0:0', auth: { tls: missing } }, metrics.registry)).rejects.toThrow(
        /metrics_tls_cert .*none\.pem cannot be read/,
      );
    });
  });
});
