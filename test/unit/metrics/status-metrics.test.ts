import { describe, expect, it } from 'vitest';
import { ReloadHistory } from '../../../src/daemon/reload.js';
import { createDaemonMetrics, showApps, showGrantFailures } from '../../../src/metrics/daemon-metrics.js';
import { registerStatusMetrics } from '../../../src/metrics/status-metrics.js';
import { seriesOf } from './expected.js';

const BUILD = { version: '1.2.3', backend: 'iptables', capture: 'nflog', xdp: 'off' };

describe('status metrics', () => {
  it('say the build, the health problem count and the last reload, read at each scrape', async () => {
    const metrics = createDaemonMetrics(() => 0);
    const started = new Date('2026-01-02T03:04:05Z');
    const reloads = new ReloadHistory(started);
    let problems = 0;
    const status = registerStatusMetrics(metrics.registry, BUILD, { problemCount: () => problems, lastReload: () => reloads.lastReload() });
    const scrape = () => metrics.registry.metrics();

    let text = await scrape();
    expect(seriesOf(text, 'knockport_build_info')).toEqual([['{version="1.2.3",backend="iptables",capture="nflog",xdp="off"}', 1]]);
    expect(seriesOf(text, 'knockport_health_problems')).toEqual([['', 0]]);
    expect(seriesOf(text, 'knockport_healthy')).toEqual([['', 1]]);
    expect(seriesOf(text, 'knockport_config_last_reload_successful')).toEqual([['', 1]]);
    expect(seriesOf(text, 'knockport_config_last_reload_timestamp_seconds')).toEqual([['', started.getTime() / 1000]]);
    expect(seriesOf(text, 'knockport_config_reloads_total')).toEqual([
      ['{outcome="applied"}', 0],
      ['{outcome="failed"}', 0],
    ]);

    problems = 2;
    const failedAt = new Date('2026-01-02T04:00:00Z');
    reloads.record('failed', failedAt);
    status.reloads.inc({ outcome: 'failed' });
    text = await scrape();
    expect(seriesOf(text, 'knockport_health_problems')).toEqual([['', 2]]);
    expect(seriesOf(text, 'knockport_healthy')).toEqual([['', 0]]);
    expect(seriesOf(text, 'knockport_config_last_reload_successful')).toEqual([['', 0]]);
    expect(seriesOf(text, 'knockport_config_last_reload_timestamp_seconds')).toEqual([['', failedAt.getTime() / 1000]]);
    expect(seriesOf(text, 'knockport_config_reloads_total')).toContainEqual(['{outcome="failed"}', 1]);
  });

  it('a failed reload stays a health problem until a reload succeeds', () => {
    const reloads = new ReloadHistory();
    expect(reloads.problems()).toEqual([]);
    reloads.record('failed', new Date('2026-01-02T04:00:00Z'));
    expect(reloads.problems()).toEqual([expect.stringMatching(/^the config reload at 2026-01-02T04:00:00.000Z failed: still running on the previous config/)]);
    reloads.record('applied');
    expect(reloads.problems()).toEqual([]);
  });

  it('per-app grant series follow the config: every app at 0 from the start, a removed app gone', async () => {
    const metrics = createDaemonMetrics(() => 0);
    showApps(metrics, ['ssh', 'vpn']);
    showGrantFailures(metrics, 'vyos');
    metrics.appGrants.inc({ app: 'vpn', step: 'service' });
    let text = await metrics.registry.metrics();
    expect(seriesOf(text, 'knockport_app_grants_total')).toEqual([
      ['{app="ssh",step="step2"}', 0],
      ['{app="ssh",step="service"}', 0],
      ['{app="vpn",step="step2"}', 0],
      ['{app="vpn",step="service"}', 1],
    ]);
    expect(seriesOf(text, 'knockport_grant_failures_total')).toEqual([
      ['{backend="vyos",step="step2"}', 0],
      ['{backend="vyos",step="service"}', 0],
    ]);
    showApps(metrics, ['vpn', 'web'], ['ssh', 'vpn']);
    text = await metrics.registry.metrics();
    expect(seriesOf(text, 'knockport_app_grants_total')).toEqual([
      ['{app="vpn",step="step2"}', 0],
      ['{app="vpn",step="service"}', 1],
      ['{app="web",step="step2"}', 0],
      ['{app="web",step="service"}', 0],
    ]);
  });
});
