/** The `knockport_cluster_*` metrics, registered only when `global.cluster` is set. */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

export interface ClusterMetrics {
  /** Messages refused from the store, by reason (malformed, unsigned, bad-signature, expired, from-the-future). */
  readonly rejected: Counter<'reason'>;
  /** Grants, revokes and used codes this gateway published, by kind. */
  readonly published: Counter<'kind'>;
  /** Publishes that failed (store down, timeout, error), by kind. */
  readonly publishFailures: Counter<'kind'>;
  /** Valid entries from other gateways, by kind. */
  readonly received: Counter<'kind'>;
}

export interface ClusterGaugeSource {
  connected(): boolean;
  /** Seconds, or undefined when no live update came yet. */
  lagSeconds(): number | undefined;
}

const REFUSALS = ['malformed', 'unsigned', 'bad-signature', 'expired', 'from-the-future'] as const;

export function createClusterMetrics(registry: MetricsRegistry, source: ClusterGaugeSource): ClusterMetrics {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers });
  const metrics: ClusterMetrics = {
    rejected: counter('knockport_cluster_rejected_total', 'Cluster messages refused, by reason.', ['reason']),
    published: counter('knockport_cluster_published_total', 'Cluster messages this gateway published, by kind.', ['kind']),
    publishFailures: counter('knockport_cluster_publish_failures_total', 'Cluster publishes that failed (store down, timeout, error), by kind.', ['kind']),
    received: counter('knockport_cluster_received_total', 'Valid cluster messages from other gateways, by kind.', ['kind']),
  };
  new Gauge({
    name: 'knockport_cluster_connected',
    help: '1 while the cluster store is connected, else 0.',
    registers,
    collect() {
      this.set(source.connected() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'knockport_cluster_lag_seconds',
    help: 'Publish-to-delivery time of the last live cluster update (includes clock skew between gateways).',
    registers,
    collect() {
      const lag = source.lagSeconds();
      if (lag !== undefined) this.set(lag);
    },
  });
  for (const reason of REFUSALS) metrics.rejected.inc({ reason }, 0);
  return metrics;
}
