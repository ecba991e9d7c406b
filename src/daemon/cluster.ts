/**
 * Clustered (`global.cluster`): the sync and its store, connecting in the background (start never
 * waits for it; the snapshot is applied when it comes). This gateway's grants and accepted codes
 * are shared through the Granter's and the used codes' events; other gateways' entries are applied
 * under the running config's apps.
 */
import type { ClusterConfig } from '../config/types.js';
import { storeOptionsFromConfig } from '../cluster/from-config.js';
import { RedisClusterStore } from '../cluster/store.js';
import { RevokeJournal } from '../cluster/revoke-journal.js';
import { ClusterSync } from '../cluster/sync.js';
import { createClusterMetrics } from '../metrics/cluster-metrics.js';
import type { DaemonMetrics } from '../metrics/daemon-metrics.js';
import type { Granter } from '../sessions/grants.js';
import type { SessionStore } from '../sessions/store.js';
import type { Logger } from '../shared/log.js';
import type { LastingState } from './lasting-state.js';
import type { RunningConfig } from './running.js';

export interface ClusterParts {
  running: RunningConfig;
  sessions: SessionStore;
  granter: Granter;
  metrics: DaemonMetrics;
  lasting: LastingState;
  logger: Logger;
}

export interface Cluster {
  sync: ClusterSync;
  store: RedisClusterStore;
}

export function startCluster(cluster: ClusterConfig, parts: ClusterParts): Cluster {
  const { running, sessions, granter, metrics, lasting, logger } = parts;
  // The gauges read the store and the sync, which need the metrics first.
  const live: { store?: RedisClusterStore; sync?: ClusterSync } = {};
  const clusterMetrics = createClusterMetrics(metrics.registry, {
    connected: () => live.store?.state().connected ?? false,
    synced: () => live.store?.state().synced ?? false,
    lagSeconds: () => {
      const lag = live.store?.state().lagMs;
      return lag === undefined ? undefined : lag / 1000;
    },
    reconnects: () => live.store?.state().reconnects ?? 0,
    snapshots: () => live.store?.state().snapshots ?? 0,
    oversized: () => live.store?.state().oversized ?? 0,
    clockOffsetSeconds: () => {
      const offset = live.store?.state().clockOffsetMs;
      return offset === undefined ? undefined : offset / 1000;
    },
    backlog: () => live.sync?.backlog() ?? 0,
  });
  const sync = new ClusterSync({
    cluster,
    granter,
    sessions,
    markCodeUsed: (code) => lasting.usedCodes.markUsedElsewhere(code),
    apps: () => running.config.apps,
    connect: (handlers) => (live.store = RedisClusterStore.connect({ ...storeOptionsFromConfig(cluster), logger, ...handlers })),
    logger,
    metrics: clusterMetrics,
    journal: RevokeJournal.open(running.config.global.stateDir, (reason) =>
      logger.error({ reason }, 'cluster revoke journal unreadable: starting without it (revokes made or learned before are forgotten here)'),
    ),
  });
  live.sync = sync;
  granter.on('granted', (record) => sync.grantedLocally(record));
  lasting.usedCodes.onClaimed((code) => sync.codeClaimed(code, 'step2'));
  return { sync, store: live.store! };
}
