/**
 * The monitoring kit: promtool checks the alert rules and runs their unit tests, and every
 * metric the rules and the dashboard query is one the daemon's registry declares (with every
 * part registered, the cluster's too). The kernel test (test/kernel/packaging/prometheus.test.ts)
 * checks the same against a real daemon's scrape.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createClusterMetrics } from '../../../src/metrics/cluster-metrics.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { registerGateMetrics } from '../../../src/metrics/gate-metrics.js';
import { registerStatusMetrics } from '../../../src/metrics/status-metrics.js';
import { registerTlsMetrics } from '../../../src/metrics/tls-metrics.js';
import { ALERT_RULES, ALERT_TESTS, DASHBOARD, alertRules, monitoringQueries, queriedMetricNames, undeclaredIn } from '../../helpers/monitoring.js';
import { requiredInCi } from '../../helpers/netns.js';

const promtoolMissing = spawnSync('promtool', ['--version']).error ? "promtool is not installed (Debian's prometheus package)" : undefined;
const skipPromtool = requiredInCi(promtoolMissing);
if (skipPromtool) console.warn(`SKIPPED promtool checks: ${skipPromtool}`);

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** A scrape of a registry holding every metric the daemon registers, cluster included. */
async function everyDaemonMetric(): Promise<string> {
  const metrics = createDaemonMetrics(() => 0);
  const registry = metrics.registry;
  registerStatusMetrics(
    registry,
    { version: '0', backend: 'nftables', capture: 'nflog', xdp: 'off' },
    { problemCount: () => 0, lastReload: () => ({ at: new Date(), outcome: 'applied' }) },
  );
  registerTlsMetrics(registry, { notAfter: () => new Date(), reloadRefused: () => false });
  registerGateMetrics(registry, { reportMode: () => false, wouldDrop: async () => [], onReadError: () => {} });
  createClusterMetrics(registry, {
    connected: () => true,
    synced: () => true,
    lagSeconds: () => 0,
    reconnects: () => 0,
    snapshots: () => 0,
    oversized: () => 0,
    clockOffsetSeconds: () => 0,
    backlog: () => 0,
  });
  return registry.metrics();
}

describe('monitoring kit', () => {
  it.skipIf(skipPromtool)('promtool accepts the alert rules and their unit tests pass', () => {
    const checked = promtool(['check', 'rules', ALERT_RULES]);
    expect(checked.status, checked.output).toBe(0);
    const tested = promtool(['test', 'rules', ALERT_TESTS]);
    expect(tested.status, tested.output).toBe(0);
    expect(tested.output).toContain('SUCCESS');
  });

  it('every alert has a unit test that fires it', () => {
    const tests = readFileSync(ALERT_TESTS, 'utf8');
    for (const { alert } of alertRules().groups.flatMap((group) => group.rules)) {
      expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
    }
  });

  it('the rules and the dashboard query only metrics the daemon declares', async () => {
    const names = queriedMetricNames();
    // The queries do read the daemon's metrics (a broken extraction would pass vacuously).
    expect(names).toEqual(
      expect.arrayContaining([
        'knockport_health_problems',
        'knockport_app_grants_total',
        'knockport_cluster_synced',
        'knockport_knock_to_grant_seconds_bucket',
      ]),
    );
    expect(undeclaredIn(await everyDaemonMetric(), names)).toEqual([]);
    // The check itself refuses a name nobody declares.
    expect(undeclaredIn(await everyDaemonMetric(), ['knockport_no_such_metric', 'knockport_health_problems_count'])).toEqual([
      'knockport_no_such_metric',
      'knockport_health_problems_count',
    ]);
  });

  it('the dashboard is valid JSON with one query per target, every panel a title and a description', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Array<{ type: string; title: string; description?: string }> };
    expect(dashboard.uid).toBe('knock-port');
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) expect(panel.description, panel.title).toBeTruthy();
    expect(monitoringQueries().every((query) => query.trim().length > 0)).toBe(true);
  });
});
