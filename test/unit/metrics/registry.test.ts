import { afterEach, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from '../../../src/metrics/registry.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { parseMetricsListen, startMetricsServer, MetricsListenError } from '../../../src/metrics/server.js';

describe('metrics registry', () => {
  it('renders counters with labels, escaped, in the Prometheus text format', () => {
    const registry = new Registry();
    const requests = registry.counter('demo_requests_total', 'Requests.', ['outcome']);
    requests.inc({ outcome: 'ok' });
    requests.inc({ outcome: 'ok' }, 2);
    requests.inc({ outcome: 'say "hi"\\\n' });
    expect(registry.render()).toBe(
      '# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\n' +
        'demo_requests_total{outcome="ok"} 3\n' +
        'demo_requests_total{outcome="say \\"hi\\"\\\\\\n"} 1\n',
    );
    expect(requests.get({ outcome: 'ok' })).toBe(3);
    expect(() => requests.inc({ outcome: 'ok' }, -1)).toThrow(RangeError);
  });

  it('renders cumulative histogram buckets, sum and count', () => {
    const registry = new Registry();
    const latency = registry.histogram('demo_seconds', 'Latency.', [0.1, 1]);
    for (const value of [0.05, 0.5, 5]) latency.observe(value);
    expect(registry.render()).toBe(
      '# HELP demo_seconds Latency.\n# TYPE demo_seconds histogram\n' +
        'demo_seconds_bucket{le="0.1"} 1\ndemo_seconds_bucket{le="1"} 2\ndemo_seconds_bucket{le="+Inf"} 3\n' +
        'demo_seconds_sum 5.55\ndemo_seconds_count 3\n',
    );
  });

  it('reads collected gauges at render time and refuses duplicate or invalid names', () => {
    let live = 2;
    const metrics = createDaemonMetrics(() => live);
    live = 7;
    expect(metrics.registry.render()).toContain('knockport_live_sessions 7\n');
    expect(() => metrics.registry.counter('knockport_revokes_total', 'again')).toThrow(/twice/);
    expect(() => new Registry().counter('bad-name', 'x')).toThrow(/invalid metric name/);
    expect(() => new Registry().counter('ok', 'x', ['le'])).toThrow(/invalid label/);
  });
});

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

  it('serves GET /metrics on loopback and nothing else', async () => {
    const metrics = createDaemonMetrics(() => 1);
    metrics.grants.inc({ step: 'service' });
    server = await startMetricsServer('127.0.0.1:0', metrics.registry);
    const { port } = server.address() as AddressInfo;
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await ok.text()).toContain('knockport_grants_total{step="service"} 1\n');
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(404);
  });
});
