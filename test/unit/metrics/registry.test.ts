import { describe, expect, it } from 'vitest';
import { Counter } from 'prom-client';
import { MetricsRegistry } from '../../../src/metrics/registry.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { ADDED_METRICS, DAEMON_METRICS, DEFAULT_METRICS, STEP2_OUTCOMES, declared, seriesOf } from './expected.js';

describe('metrics registry', () => {
  it('exposes every daemon metric under its old name, type and help, the added ones after, then the default process and Node.js metrics', async () => {
    const text = await createDaemonMetrics(() => 0).registry.metrics();
    const metrics = declared(text);
    expect(metrics.filter(([name]) => name.startsWith('knockport_'))).toEqual([...DAEMON_METRICS, ...ADDED_METRICS]);
    const types = new Map(metrics.map(([name, type]) => [name, type]));
    for (const [name, type] of DEFAULT_METRICS) expect(types.get(name), name).toBe(type);
    // Nothing but the daemon's own and the defaults (no prefix, no collision).
    expect(metrics.every(([name]) => /^(knockport|process|nodejs)_/.test(name))).toBe(true);
  });

  it('keeps label sets and histogram buckets', async () => {
    const metrics = createDaemonMetrics(() => 0);
    metrics.step1Packets.inc({ outcome: 'syn', reason: '' }, 2);
    metrics.step1Packets.inc({ outcome: 'rejected', reason: 'bad-credentials' });
    metrics.knockToGrantSeconds.observe({ step: 'step2' }, 0.003);
    const text = await metrics.registry.metrics();
    expect(text).toContain('\nknockport_step1_packets_total{outcome="syn",reason=""} 2\n');
    expect(text).toContain('\nknockport_step1_packets_total{outcome="rejected",reason="bad-credentials"} 1\n');
    const buckets = [...text.matchAll(/^knockport_knock_to_grant_seconds_bucket\{le="([^"]+)",step="step2"\} (\d+)$/gm)];
    expect(buckets.map((m) => m[1])).toEqual(['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '+Inf']);
    expect(buckets.map((m) => Number(m[2]))).toEqual([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(text).toContain('\nknockport_knock_to_grant_seconds_sum{step="step2"} 0.003\n');
    expect(text).toContain('\nknockport_knock_to_grant_seconds_count{step="step2"} 1\n');
  });

  it('shows every step-2 outcome at 0 from the start, and no other', async () => {
    const text = await createDaemonMetrics(() => 0).registry.metrics();
    expect(seriesOf(text, 'knockport_step2_requests_total')).toEqual(STEP2_OUTCOMES.map((outcome) => [`{outcome="${outcome}"}`, 0]));
  });

  it('escapes label values and refuses negative increments', async () => {
    const registry = new MetricsRegistry();
    const requests = new Counter({ name: 'demo_requests_total', help: 'Requests.', labelNames: ['outcome'], registers: [registry] });
    requests.inc({ outcome: 'ok' });
    requests.inc({ outcome: 'ok' }, 2);
    requests.inc({ outcome: 'say "hi"\\\n' });
    expect(await registry.metrics()).toBe(
      '# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\n' +
        'demo_requests_total{outcome="ok"} 3\n' +
        'demo_requests_total{outcome="say \\"hi\\"\\\\\\n"} 1\n',
    );
    expect(() => requests.inc({ outcome: 'ok' }, -1)).toThrow(/decrease/);
  });

  it('reads collected gauges and runs scrape hooks at scrape time, and refuses duplicate or invalid names', async () => {
    let live = 2;
    const metrics = createDaemonMetrics(() => live);
    let hooks = 0;
    metrics.registry.beforeScrape(() => {
      hooks += 1;
      metrics.step1Workers.set(hooks);
    });
    live = 7;
    const text = await metrics.registry.metrics();
    expect(text).toContain('\nknockport_live_sessions 7\n');
    expect(text).toContain('\nknockport_step1_workers 1\n');
    expect(hooks).toBe(1);
    const registers = [metrics.registry];
    expect(() => new Counter({ name: 'knockport_revokes_total', help: 'again', registers })).toThrow(/already been registered/);
    expect(() => new Counter({ name: 'bad-name', help: 'x', registers })).toThrow(/Invalid metric name/);
    expect(() => new Counter({ name: 'ok', help: 'x', labelNames: ['bad-label'], registers })).toThrow(/Invalid label name/);
  });

  it('keeps daemons apart: each has its own registry, none in the global one', async () => {
    const one = createDaemonMetrics(() => 1);
    const two = createDaemonMetrics(() => 2);
    one.revokes.inc();
    expect(await one.registry.metrics()).toContain('\nknockport_revokes_total 1\n');
    expect(await two.registry.metrics()).toContain('\nknockport_revokes_total 0\n');
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('knockport_revokes_total')).toBeUndefined();
  });
});
