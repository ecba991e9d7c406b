/** The `knockport_cluster_*` metrics, registered only when `global.cluster` is set. */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

export interface ClusterMetrics {
  /** Messages refused from the store, by reason (malformed, unsigned, bad-signature, expired, from-the-future, unsequenced). */
  readonly rejected: Counter<'reason'>;
  /** Grants, revokes and used codes this gateway published, by kind. */
  readonly published: Counter<'kind'>;
  /** Publishes that failed (store down, timeout, error), by kind. */
  readonly publishFailures: Counter<'kind'>;
  /** Valid entries from other gateways, by kind. */
  readonly received: Counter<'kind'>;
  /** Valid grants and revokes from other gateways not applied here (and grants the store refused to share), by reason. */
  readonly ignored: Counter<'reason'>;
  /** One-time codes accepted here that another gateway had already used, by step. */
  readonly codeConflicts: Counter<'step'>;
}

export interface ClusterGaugeSource {
  connected(): boolean;
  /** The last snapshot since the (re)connect was delivered: live updates flow. */
  synced(): boolean;
  /** Seconds, or undefined when no live update came yet. */
  lagSeconds(): number | undefined;
  /** Times the store came back after an outage, and snapshots delivered (counters kept by the store). */
  reconnects(): number;
  snapshots(): number;
  /** Values under the prefix too large to be messages, skipped unread (counted by the store). */
  oversized(): number;
  /** This gateway's clock minus the store's, seconds (heartbeat); undefined before the first. */
  clockOffsetSeconds(): number | undefined;
  /** Entries received and not applied yet. */
  backlog(): number;
}

const REFUSALS = ['malformed', 'unsigned', 'bad-signature', 'expired', 'from-the-future', 'unsequenced'] as const;
/** Why a valid entry is not applied (sync.ts): an app or user this gateway lacks, expired on arrival, or a later revoke. */
const IGNORED = [
  'unknown-app',
  'unknown-user',
  'expired',
  'revoked',
  'revoked-not-shared',
  'revoked-replay',
  'revoked-in-store',
  'revoke-unknown-app',
] as const;

export function createClusterMetrics(registry: MetricsRegistry, source: ClusterGaugeSource): ClusterMetrics {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers });
  const metrics: ClusterMetrics = {
    rejected: counter('knockport_cluster_rejected_total', 'Cluster messages refused, by reason.', ['reason']),
    published: counter('knockport_cluster_published_total', 'Cluster messages this gateway published, by kind.', ['kind']),
    publishFailures: counter('knockport_cluster_publish_failures_total', 'Cluster publishes that failed (store down, timeout, error), by kind.', ['kind']),
    received: counter('knockport_cluster_received_total', 'Valid cluster messages from other gateways, by kind.', ['kind']),
    ignored: counter(
      'knockport_cluster_ignored_total',
      'Valid cluster grants (or revokes) not applied here (an app or user this gateway lacks, expired, or covered by a later revoke), by reason.',
      ['reason'],
    ),
    codeConflicts: counter(
      'knockport_cluster_code_conflicts_total',
      'One-time codes accepted here that another gateway had already used (a replay on one of them), by step.',
      ['step'],
    ),
  };
  const gauge = (name: string, help: string, read: () => number | undefined): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const value = read();
        if (value !== undefined) this.set(value);
      },
    });
  };
  gauge('knockport_cluster_synced', '1 once the snapshot since the last (re)connect is delivered and live updates flow, else 0.', () =>
    source.synced() ? 1 : 0,
  );
  gauge('knockport_cluster_backlog', 'Cluster entries received and not yet applied to this gateway.', () => source.backlog());
  // The store keeps these totals itself: each scrape adds their growth since the last one.
  const total = (name: string, help: string, read: () => number): void => {
    let seen = 0;
    new Counter({
      name,
      help,
      registers,
      collect() {
        const value = read();
        if (value > seen) this.inc(value - seen);
        seen = Math.max(seen, value);
      },
    });
  };
  total('knockport_cluster_reconnects_total', 'Times the cluster store came back after an outage.', () => source.reconnects());
  total('knockport_cluster_snapshots_total', 'Cluster snapshots received (one per successful (re)connect).', () => source.snapshots());
  total('knockport_cluster_oversized_total', 'Values in the cluster store too large to be messages, skipped without reading them.', () => source.oversized());
  gauge('knockport_cluster_clock_offset_seconds', "This gateway's clock minus the cluster store's (heartbeat).", () => source.clockOffsetSeconds());
  gauge('knockport_cluster_connected', '1 while the cluster store is connected, else 0.', () => (source.connected() ? 1 : 0));
  gauge('knockport_cluster_lag_seconds', 'Publish-to-delivery time of the last live cluster update (includes clock skew between gateways).', () =>
    source.lagSeconds(),
  );
  for (const reason of REFUSALS) metrics.rejected.inc({ reason }, 0);
  for (const reason of IGNORED) metrics.ignored.inc({ reason }, 0);
  for (const step of ['step1', 'step2']) metrics.codeConflicts.inc({ step }, 0);
  return metrics;
}
