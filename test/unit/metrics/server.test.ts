import { afterEach, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { parseMetricsListen, startMetricsServer, MetricsListenError } from '../../../src/metrics/server.js';
import { DAEMON_METRICS, DEFAULT_METRICS, declared } from './expected.js';

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
  });

  it('serves GET /metrics on loopback, with the daemon and default metrics, and nothing else', async () => {
    const metrics = createDaemonMetrics(() => 1);
    metrics.grants.inc({ step: 'service' });
    let scrapes = 0;
    metrics.registry.beforeScrape(() => (scrapes += 1));
    server = await startMetricsServer('127.0.0.1:0', metrics.registry);
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
    server = await startMetricsServer('127.0.0.1:0', metrics.registry);
    const { port } = server.address() as AddressInfo;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(500);
    fail = false;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
  });
});
