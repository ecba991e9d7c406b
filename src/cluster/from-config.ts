/** The store's connection options from `global.cluster` (config/cluster.ts's ClusterConfig). */
import { readFileSync } from 'node:fs';
import type { ClusterConfig } from '../config/types.js';
import type { ClusterStoreOptions } from './store.js';

export type StoreAddressOptions = Pick<
  ClusterStoreOptions,
  'url' | 'sentinels' | 'sentinelName' | 'username' | 'password' | 'sentinelUsername' | 'sentinelPassword' | 'tls' | 'prefix' | 'gateway'
>;

/**
 * Reads the TLS files (throws when one cannot be read); credentials go as options, never in the URL.
 * With Sentinels the same TLS settings apply to the Sentinels and to the master they name.
 */
export function storeOptionsFromConfig(cluster: ClusterConfig): StoreAddressOptions {
  const { redis } = cluster;
  const address = redis.address;
  const tls = redis.tls
    ? {
        ...(redis.tls.ca !== undefined ? { ca: readFileSync(redis.tls.ca) } : {}),
        ...(redis.tls.cert !== undefined ? { cert: readFileSync(redis.tls.cert) } : {}),
        ...(redis.tls.key !== undefined ? { key: readFileSync(redis.tls.key) } : {}),
      }
    : undefined;
  const where =
    address.kind === 'server'
      ? {
          url: `${tls ? 'rediss' : 'redis'}://${address.endpoint.host.includes(':') ? `[${address.endpoint.host}]` : address.endpoint.host}:${address.endpoint.port}/${address.db}`,
        }
      : { sentinels: address.sentinels.map(({ host, port }) => ({ host, port })), sentinelName: address.name };
  return {
    ...where,
    ...(redis.username !== undefined ? { username: redis.username } : {}),
    ...(redis.password !== undefined ? { password: redis.password } : {}),
    ...(redis.sentinelUsername !== undefined ? { sentinelUsername: redis.sentinelUsername } : {}),
    ...(redis.sentinelPassword !== undefined ? { sentinelPassword: redis.sentinelPassword } : {}),
    ...(tls ? { tls } : {}),
    prefix: cluster.prefix,
    gateway: cluster.gateway,
  };
}
