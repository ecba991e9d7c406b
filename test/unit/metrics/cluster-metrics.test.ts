// The knockport_cluster_* metrics as a scrape shows them: only when clustered, read from the store and the sync.
import { describe, expect, it } from 'vitest';
import { createClusterMetrics, type ClusterGaugeSource } from '../../../src/metrics/cluster-metrics.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { declared } from './expected.js';

const CLUSTER_METRICS: ReadonlyArray<readonly [name: string, type: string]> = [
  ['knockport_cluster_rejected_total', 'counter'],
  ['knockport_cluster_published_total', 'counter'],
  ['knockport_cluster_publish_failures_total', 'counter'],
  ['knockport_cluster_received_total', 'counter'],
  ['knockport_cluster_ignored_total', 'counter'],
  ['knockport_cluster_code_conflicts_total', 'counter'],
  ['knockport_cluster_synced', 'gauge'],
  ['knockport_cluster_backlog', 'gauge'],
  ['knockport_cluster_reconnects_total', 'counter'],
  ['knockport_cluster_snapshots_total', 'counter'],
  ['knockport_cluster_connected', 'gauge'],
  ['knockport_cluster_lag_seconds', 'gauge'],
  ['knockport_cluster_oversized_total', 'counter'],
  ['knockport_cluster_clock_offset_seconds', 'gauge'],
];

function clustered() {
  const state = {
    connected: true,
    synced: false,
    lag: undefined as number | undefined,
    reconnects: 0,
    snapshots: 0,
    oversized: 0,
    offset: undefined as number | undefined,
    backlog: 0,
  };
  const source: ClusterGaugeSource = {
    connected: () => state.connected,
    synced: () => state.synced,
    lagSeconds: () => state.lag,
    reconnects: () => state.reconnects,
    snapshots: () => state.snapshots,
    oversized: () => state.oversized,
    clockOffsetSeconds: () => state.offset,
    backlog: () => state.backlog,
  };
  const daemon = createDaemonMetrics(() => 0);
  const cluster = createClusterMetrics(daemon.registry, source);
  return { state, registry: daemon.registry, cluster };
}

const line = (text: string, series: string): string | undefined => text.split('\n').find((l) => l.startsWith(`${series} `));

describe('cluster metrics', () => {
  it('are absent when not clustered, and all declared when clustered', async () => {
    const alone = await createDaemonMetrics(() => 0).registry.metrics();
    expect(alone).not.toContain('knockport_cluster_');
    const types = new Map(declared(await clustered().registry.metrics()).map(([name, type]) => [name, type]));
    for (const [name, type] of CLUSTER_METRICS) expect(types.get(name), name).toBe(type);
    expect([...types.keys()].filter((name) => name.startsWith('knockport_cluster_')).sort()).toEqual(CLUSTER_METRICS.map(([name]) => name).sort());
  });

  it('show every refusal, ignore and conflict series from the start, at 0', async () => {
    const text = await clustered().registry.metrics();
    for (const reason of ['malformed', 'unsigned', 'bad-signature', 'expired', 'from-the-future', 'unsequenced']) {
      expect(line(text, `knockport_cluster_rejected_total{reason="${reason}"}`), reason).toBe(`knockport_cluster_rejected_total{reason="${reason}"} 0`);
    }
    for (const reason of ['unknown-app', 'revoked', 'revoked-not-shared', 'revoked-replay', 'revoked-in-store'])
      expect(line(text, `knockport_cluster_ignored_total{reason="${reason}"}`)).toMatch(/ 0$/);
    for (const step of ['step1', 'step2']) expect(line(text, `knockport_cluster_code_conflicts_total{step="${step}"}`)).toMatch(/ 0$/);
  });

  it('read the link, sync state, backlog and lag at each scrape', async () => {
    const { state, registry } = clustered();
    state.backlog = 4096;
    state.lag = 0.25;
    let text = await registry.metrics();
    expect([line(text, 'knockport_cluster_connected'), line(text, 'knockport_cluster_synced'), line(text, 'knockport_cluster_backlog')]).toEqual([
      'knockport_cluster_connected 1',
      'knockport_cluster_synced 0',
      'knockport_cluster_backlog 4096',
    ]);
    expect(line(text, 'knockport_cluster_lag_seconds')).toBe('knockport_cluster_lag_seconds 0.25');
    Object.assign(state, { connected: false, synced: true, backlog: 0 });
    text = await registry.metrics();
    expect([line(text, 'knockport_cluster_connected'), line(text, 'knockport_cluster_synced'), line(text, 'knockport_cluster_backlog')]).toEqual([
      'knockport_cluster_connected 0',
      'knockport_cluster_synced 1',
      'knockport_cluster_backlog 0',
    ]);
  });

  it('follow the store’s reconnect and snapshot totals without counting them twice', async () => {
    const { state, registry } = clustered();
    Object.assign(state, { reconnects: 2, snapshots: 3 });
    await registry.metrics();
    let text = await registry.metrics();
    expect([line(text, 'knockport_cluster_reconnects_total'), line(text, 'knockport_cluster_snapshots_total')]).toEqual([
      'knockport_cluster_reconnects_total 2',
      'knockport_cluster_snapshots_total 3',
    ]);
    Object.assign(state, { reconnects: 5 });
    text = await registry.metrics();
    expect(line(text, 'knockport_cluster_reconnects_total')).toBe('knockport_cluster_reconnects_total 5');
    expect(line(text, 'knockport_cluster_snapshots_total')).toBe('knockport_cluster_snapshots_total 3');
  });
});
