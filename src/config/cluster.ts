/**
 * `global.cluster` once the schema and policy accept it: its secrets read from their files at load
 * time, the normalized ClusterConfig, and the store's address as it may be shown (no credentials).
 */
import { digestKey } from './key-digest.js';
import { formatKeyPath, type KeyPath, type PathIssue } from './issues.js';
import type { ClusterSection } from './schema.js';
import { readSecretFile } from './secret-file.js';
import type { ClusterConfig, RedisAddress, RedisConfig, RedisEndpoint } from './types.js';
import type { AppUser } from './users.js';
import { parseClusterKey, Refusal } from './values.js';

export interface ClusterSecrets {
  /** The cluster key, from `key` or `key_file`; undefined when it could not be had (see errors). */
  key?: Buffer;
  /** The store's password, from `password` or `password_file`. */
  password?: string;
  /** The Sentinels' password, from `sentinel_password` or `sentinel_password_file`. */
  sentinelPassword?: string;
  errors: PathIssue[];
  warnings: PathIssue[];
}

const CLUSTER = ['global', 'cluster'] as const;

/**
 * Reads `key_file`, `password_file` and `sentinel_password_file`. The cluster key must not also be an access key: step-1
 * keys travel in clear, and whoever holds the cluster key can open ports on every gateway.
 * Messages never quote a file's content.
 */
export function readClusterSecrets(cluster: ClusterSection, users: readonly AppUser[]): ClusterSecrets {
  const secrets: ClusterSecrets = { errors: [], warnings: [] };
  const redis = cluster.redis;

  let key: Buffer | undefined = cluster.key;
  if (cluster.key_file !== undefined) {
    const path = [...CLUSTER, 'key_file'];
    const text = readSecretFile(cluster.key_file, 'the cluster key file', path, secrets.warnings);
    const parsed = text instanceof Refusal ? text : parseClusterKey(text);
    if (text instanceof Refusal) secrets.errors.push({ path, message: text.message });
    else if (parsed instanceof Refusal) secrets.errors.push({ path, message: `the cluster key file: ${parsed.message}` });
    else key = parsed;
  }
  if (key !== undefined) {
    const clash = accessKeyClash(key, users);
    if (clash) {
      secrets.errors.push({
        path: [...CLUSTER, cluster.key_file !== undefined ? 'key_file' : 'key'],
        message: `the cluster key is also an access key (${formatKeyPath(clash)}); access keys reach the gateway from clients, so the cluster key must be a secret of its own`,
      });
    } else {
      secrets.key = key;
    }
  }

  const password = readPassword(redis.password, redis.password_file, 'password_file', 'the password file', secrets);
  if (password !== undefined) secrets.password = password;
  const sentinelPassword = readPassword(redis.sentinel_password, redis.sentinel_password_file, 'sentinel_password_file', 'the sentinel password file', secrets);
  if (sentinelPassword !== undefined) secrets.sentinelPassword = sentinelPassword;
  return secrets;
}

/** A password written in the config, or read from its file (an unreadable or empty file is an error). */
function readPassword(inline: string | undefined, file: string | undefined, key: string, what: string, secrets: ClusterSecrets): string | undefined {
  if (file === undefined) return inline;
  const path = [...CLUSTER, 'redis', key];
  const text = readSecretFile(file, what, path, secrets.warnings);
  if (text instanceof Refusal) secrets.errors.push({ path, message: text.message });
  else if (text === '') secrets.errors.push({ path, message: `${what} is empty` });
  else return text;
  return undefined;
}

/** The path of the first access key equal to `key`, if any. */
function accessKeyClash(key: Buffer, users: readonly AppUser[]): KeyPath | undefined {
  const digest = digestKey(key).toString('hex');
  for (const user of users) {
    if (user.step1Key.digest.toString('hex') === digest) return user.step1KeyPath;
    if (user.step2Key.digest.toString('hex') === digest) return user.step2KeyPath;
  }
  return undefined;
}

/** The normalized section; `secrets` must hold the key (the caller refuses the config otherwise). */
export function buildCluster(cluster: ClusterSection, secrets: ClusterSecrets): ClusterConfig {
  const redis = cluster.redis;
  const address: RedisAddress = redis.url ? redis.url.address : { kind: 'sentinel', sentinels: dedupe(redis.sentinels ?? []), name: redis.sentinel_name ?? '' };
  const tls = redis.url?.tls || (redis.sentinels !== undefined && redis.tls !== undefined);
  const built: RedisConfig = {
    address,
    ...(redis.username !== undefined ? { username: redis.username } : {}),
    ...(secrets.password !== undefined ? { password: secrets.password } : {}),
    ...(redis.sentinel_username !== undefined ? { sentinelUsername: redis.sentinel_username } : {}),
    ...(secrets.sentinelPassword !== undefined ? { sentinelPassword: secrets.sentinelPassword } : {}),
    ...(tls ? { tls: { ...redis.tls } } : {}),
  };
  return { gateway: cluster.gateway, key: secrets.key!, redis: built, prefix: cluster.prefix, name: cluster.name ?? cluster.prefix };
}

function dedupe(endpoints: readonly RedisEndpoint[]): RedisEndpoint[] {
  const seen = new Map(endpoints.map((endpoint) => [formatEndpoint(endpoint), endpoint]));
  return [...seen.values()];
}

function formatEndpoint({ host, port }: RedisEndpoint): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The store's address as it may be shown in `check`, logs and health: never a credential, e.g.
 * `rediss://redis.example.net:6380/0` or `sentinel master knockport via 10.0.0.5:26379, 10.0.0.6:26379 (TLS)`.
 */
export function describeClusterStore(redis: RedisConfig): string {
  const { address } = redis;
  if (address.kind === 'server') return `${redis.tls ? 'rediss' : 'redis'}://${formatEndpoint(address.endpoint)}/${address.db}`;
  return `sentinel master ${address.name} via ${address.sentinels.map(formatEndpoint).join(', ')}${redis.tls ? ' (TLS)' : ''}`;
}
