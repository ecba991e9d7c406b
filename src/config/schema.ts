/**
 * The shape of a config file: the original knock-port format (a `global` section plus one
 * section per app) and this project's optional extensions. Value-level rules live here;
 * rules that relate several values live in policy.ts.
 */
import { z } from 'zod';
import type { KeyPath, PathIssue } from './issues.js';
import { unknownKeyMessage } from './suggest.js';
import {
  parseAbsolutePath,
  parseAccessKey,
  parseClusterKey,
  parseDestination,
  parseInterfaceName,
  parseListenAddress,
  parseLoopbackListen,
  parseNetwork,
  parseAllowedNetwork,
  parsePacketMark,
  parseRedisUrl,
  parseRequestPath,
  parseSentinelAddress,
  parseTotpSecret,
  Refusal,
  type Parsed,
} from './values.js';

/** A string checked (and converted) by one of the value parsers. */
function parsedString<T>(parse: (text: string) => Parsed<T>) {
  return z
    .string()
    .min(1)
    .transform((text, ctx) => {
      const result = parse(text);
      if (!(result instanceof Refusal)) return result;
      ctx.issues.push({ code: 'custom', message: result.message, input: text });
      return z.NEVER;
    });
}

const port = z.int().min(1).max(65535);
const seconds = z.int().min(1);
// The kernel limits take a burst of twice the rate; iptables hashlimit refuses bursts over 1,000,000.
const perSecond = z.int().min(1).max(500_000);
const u16 = z.int().min(0).max(65535);
const accessKey = parsedString(parseAccessKey);
const totpSecret = parsedString(parseTotpSecret);
const interfaceName = parsedString(parseInterfaceName);
const absolutePath = parsedString(parseAbsolutePath);

/** A firewall or conntrack mark: a number, or `0x` hex text. */
const mark = z.union([z.int(), z.string()]).transform((value, ctx) => {
  const parsed = parsePacketMark(value);
  if (!(parsed instanceof Refusal)) return parsed;
  ctx.issues.push({ code: 'custom', message: parsed.message, input: value });
  return z.NEVER;
});

export const APP_NAME = /^[A-Za-z0-9_-]{1,32}$/;
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
/** A gateway's name in a cluster; it is part of every message the gateway signs. */
export const GATEWAY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export const DEFAULTS = {
  rateLimitPerMinute: 60,
  step1Port: 80,
  step2Port: 443,
  firewallType: 'nftables',
  capture: 'auto',
  queueNum: 0,
  nflogGroup: 1,
  step1Handshake: 'cookie',
  step1Reply: 'silent',
  step1Xdp: 'off',
  stateDir: '/var/lib/knock-port',
  tableName: 'knockport',
  ipv6: true,
  controlSocket: '/run/knock-port/control.sock',
  packetMark: 0x4b50,
  grantMark: 0x10000000,
  sourcePrefixV4: 32,
  sourcePrefixV6: 64,
  lockoutUserFailures: 10,
  lockoutAppFailures: 100,
  lockoutWindowSeconds: 600,
  lockoutSeconds: 900,
  hostFirewall: 'insert',
  gateMode: 'enforce',
  step1RatePerSecond: 100_000,
  step1Workers: 'auto',
  clusterPrefix: 'knock-port:',
} as const;

/** `step1_workers: auto` uses one worker per core, at most this many. */
export const MAX_STEP1_WORKERS = 16;

/** TLS files of `global.cluster.redis.tls`. */
export const redisTlsSchema = z.strictObject({
  ca: absolutePath.optional(),
  cert: absolutePath.optional(),
  key: absolutePath.optional(),
});

/** An ACL user name, of the data nodes or of the Sentinels. */
const redisUsername = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'expected 1-128 printable characters without spaces');

/** `global.cluster.redis`: one server (`url`) or Sentinels; which one, and pairs, are checked in policy.ts. */
export const redisSchema = z.strictObject({
  url: parsedString(parseRedisUrl).optional(),
  sentinels: z.array(parsedString(parseSentinelAddress)).min(1).optional(),
  sentinel_name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . - (the name the Sentinels give the master)')
    .optional(),
  username: redisUsername.optional(),
  password: z.string().min(1).optional(),
  password_file: absolutePath.optional(),
  // The Sentinels' own credentials, when they differ from the data nodes' (Sentinel's requirepass or ACL user).
  sentinel_username: redisUsername.optional(),
  sentinel_password: z.string().min(1).optional(),
  sentinel_password_file: absolutePath.optional(),
  tls: redisTlsSchema.optional(),
});

/** `global.cluster`: several gateways sharing one set of grants (docs/cluster.md). */
export const clusterSchema = z.strictObject({
  gateway: z.string().regex(GATEWAY_NAME, 'expected 1-63 of a-z 0-9 - (lower case), starting with a letter or digit'),
  key: parsedString(parseClusterKey).optional(),
  key_file: absolutePath.optional(),
  redis: redisSchema,
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.:/-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : / -')
    .default(DEFAULTS.clusterPrefix),
});

export const globalSchema = z.strictObject({
  // The original's keys.
  http_post_path: parsedString(parseRequestPath),
  https_post_path: parsedString(parseRequestPath),
  step1_2_rate_limit_per_minute: z.int().min(1).default(DEFAULTS.rateLimitPerMinute),
  interface_ext: interfaceName,
  interface_int: interfaceName.optional(),
  '2fa_config_folder': z.string().min(1).optional(),
  healthcheck_app_name: z.string().regex(APP_NAME, 'expected 1-32 of A-Z a-z 0-9 _ -').optional(),
  // Extensions.
  http_port: port.default(DEFAULTS.step1Port),
  https_port: port.default(DEFAULTS.step2Port),
  firewall_type: z.enum(['nftables', 'iptables', 'vyos']).default(DEFAULTS.firewallType),
  capture: z.enum(['auto', 'nfqueue', 'nflog']).default(DEFAULTS.capture),
  queue_num: u16.default(DEFAULTS.queueNum),
  nflog_group: u16.default(DEFAULTS.nflogGroup),
  // Step-1 inspectors on their own threads, fed by queues queue_num.. (or log groups nflog_group..).
  step1_workers: z.union([z.literal('auto'), z.int().min(1).max(MAX_STEP1_WORKERS)]).default(DEFAULTS.step1Workers),
  step1_handshake: z.enum(['cookie', 'none']).default(DEFAULTS.step1Handshake),
  step1_reply: z.enum(['silent', 'reset']).default(DEFAULTS.step1Reply),
  // The XDP front on interface_ext: off (default), auto (native, else generic, else off), or one mode.
  step1_xdp: z.enum(['off', 'auto', 'native', 'generic']).default(DEFAULTS.step1Xdp),
  state_dir: absolutePath.prefault(DEFAULTS.stateDir),
  table_name: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_]{0,30}$/, 'expected a letter then up to 30 of A-Z a-z 0-9 _')
    .default(DEFAULTS.tableName),
  ipv6: z.boolean().default(DEFAULTS.ipv6),
  metrics_listen: parsedString(parseLoopbackListen).optional(),
  control_socket: absolutePath.prefault(DEFAULTS.controlSocket),
  packet_mark: mark.prefault(DEFAULTS.packetMark),
  // Connections knock-port lets in carry these conntrack mark bits, so the host's own ruleset can accept them.
  grant_mark: mark.prefault(DEFAULTS.grantMark),
  host_firewall: z.enum(['insert', 'report']).default(DEFAULTS.hostFirewall),
  // `report`: the gate counts and logs what it would drop at protected ports, and drops none of it.
  gate_mode: z.enum(['enforce', 'report']).default(DEFAULTS.gateMode),
  // Per-source budgets count a whole prefix: an IPv6 client owns a /64, not one address.
  source_prefix_v4: z.int().min(8).max(32).default(DEFAULTS.sourcePrefixV4),
  source_prefix_v6: z.int().min(16).max(128).default(DEFAULTS.sourcePrefixV6),
  // Wrong guesses counted per secret across all sources (auth/lockout.ts); 0 turns a lock off.
  lockout_user_failures: z.int().min(0).max(10_000).default(DEFAULTS.lockoutUserFailures),
  lockout_app_failures: z.int().min(0).max(100_000).default(DEFAULTS.lockoutAppFailures),
  lockout_window_seconds: seconds.max(86_400).default(DEFAULTS.lockoutWindowSeconds),
  lockout_seconds: seconds.max(86_400).default(DEFAULTS.lockoutSeconds),
  // Step-1 segments per second the kernel hands to the daemon, from all sources together: no
  // kernel budget is keyed on a source address before the cookie proves it (a forger's lever).
  step1_rate_per_second: z.int().min(100).max(1_000_000).default(DEFAULTS.step1RatePerSecond),
  // Per-source kernel budgets of earlier versions: accepted and ignored (policy.ts says why).
  syn_rate_per_second: perSecond.optional(),
  https_conn_rate_per_second: perSecond.optional(),
  // The step-2 certificate (chain) and key; `run --cert/--key` override them.
  tls_cert: absolutePath.optional(),
  tls_key: absolutePath.optional(),
  // A reverse proxy or WAF in front of step 2 (the original's --waf-https-port / --waf-trusted-ips).
  https_public_port: port.optional(),
  https_listen_address: parsedString(parseListenAddress).optional(),
  trusted_proxies: z.array(parsedString(parseNetwork)).optional(),
  // An operator's lifeline: sources that reach every protected port without a knock.
  always_allow: z.array(parsedString(parseAllowedNetwork)).optional(),
  // Several gateways sharing one set of grants through a Redis or Valkey store.
  cluster: clusterSchema.optional(),
});

export const userSchema = z.strictObject({
  name: z.string().regex(USER_NAME, 'expected a letter or digit then up to 63 of A-Z a-z 0-9 _ . @ -'),
  access_key_http: accessKey,
  access_key_https: accessKey,
  /** Required as `token` in step 2. */
  totp_secret: totpSecret.optional(),
  /** Required as a one-time `otp` field in step 1. */
  step1_otp_secret: totpSecret.optional(),
});

/**
 * A list of keys; one key written alone (`access_key_http: KEY`, as the original's sample config
 * does) is a list of one.
 */
const accessKeyList = z.preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(accessKey).min(1));

export const appSchema = z.strictObject({
  // The original's keys.
  port,
  access_key_http: accessKeyList.optional(),
  access_key_https: accessKeyList.optional(),
  destination: parsedString(parseDestination).prefault('local'),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
  duration: seconds,
  step2_https_duration: seconds,
  interface_ext: interfaceName.optional(),
  interface_int: interfaceName.optional(),
  // Extensions.
  users: z.array(userSchema).min(1).optional(),
  masquerade: z.boolean().optional(),
  // Established flows outlive `duration` unless this ends them when the grant expires.
  end_flows_on_expiry: z.boolean().default(false),
  // Sources that reach this app without a knock, besides global.always_allow.
  always_allow: z.array(parsedString(parseAllowedNetwork)).optional(),
});

export type GlobalSection = z.output<typeof globalSchema>;
export type AppSection = z.output<typeof appSchema>;
export type UserSection = z.output<typeof userSchema>;
export type ClusterSection = z.output<typeof clusterSchema>;

export const GLOBAL_KEYS = Object.keys(globalSchema.shape);
export const APP_KEYS = Object.keys(appSchema.shape);
export const USER_KEYS = Object.keys(userSchema.shape);
export const CLUSTER_KEYS = Object.keys(clusterSchema.shape);
export const REDIS_KEYS = Object.keys(redisSchema.shape);
export const REDIS_TLS_KEYS = Object.keys(redisTlsSchema.shape);

/** The keys allowed in the object at `inner`, a path inside the global section, for hints. */
export function globalKeysAt(inner: KeyPath): readonly string[] {
  if (inner[0] !== 'cluster') return GLOBAL_KEYS;
  if (inner.length === 1) return CLUSTER_KEYS;
  return inner.length === 2 ? REDIS_KEYS : REDIS_TLS_KEYS;
}

/**
 * Validates one section; issues carry the full key path (`base` + the path inside the section).
 * `knownKeysAt` names the keys allowed in the object at a path inside the section, for hints.
 */
export function validateSection<S extends z.ZodType>(
  schema: S,
  value: unknown,
  base: KeyPath,
  knownKeysAt: (inner: KeyPath) => readonly string[],
): { data?: z.output<S>; issues: PathIssue[] } {
  const result = schema.safeParse(value);
  if (result.success) return { data: result.data, issues: [] };
  const issues = result.error.issues.flatMap((issue): PathIssue[] => {
    const inner = issue.path.filter((segment): segment is string | number => typeof segment !== 'symbol');
    const path = [...base, ...inner];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, knownKeysAt(inner)), atKey: true }));
    }
    return [{ path, message: describeZodIssue(issue, valueAt(value, inner), isSecretPath(path)) }];
  });
  return { issues };
}

/**
 * Keys whose values are secrets (access keys, request paths, TOTP secrets, the cluster key and
 * the store's password) or name one (the 2FA
 * folder's files are named by keys): messages about them give the expected type only, never
 * what was written, so a config error shown in a terminal or a log discloses nothing.
 */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'access_key_http',
  'access_key_https',
  'http_post_path',
  'https_post_path',
  'totp_secret',
  'step1_otp_secret',
  '2fa_config_folder',
  // global.cluster: the cluster key, the store's and the Sentinels' passwords, and the URL (which could hold one).
  'key',
  'password',
  'sentinel_password',
  'url',
]);

/** True when the value at `path` (or inside it, e.g. one entry of a key list) is a secret. */
export function isSecretPath(path: KeyPath): boolean {
  return path.some((segment) => typeof segment === 'string' && SECRET_KEYS.has(segment));
}

function valueAt(root: unknown, path: KeyPath): unknown {
  let value = root;
  for (const segment of path) value = value !== null && typeof value === 'object' ? (value as Record<string | number, unknown>)[segment] : undefined;
  return value;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping of keys to values',
};

/** What the operator wrote, in words, for "expected X, got Y"; only its kind when it is a secret. */
function describeValue(value: unknown, secret: boolean): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (secret) return typeof value === 'string' ? 'text' : `a ${typeof value}`;
  if (typeof value === 'string') return `the text '${value}'`;
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- lists and mappings returned above
  return `${typeof value} ${String(value)}`;
}

/** `secret`: the value must not appear in the message (see SECRET_KEYS). */
export function describeZodIssue(issue: z.core.$ZodIssue, actual: unknown, secret = false): string {
  const describe = (value: unknown) => describeValue(value, secret);
  const shown = (value: unknown) => (secret ? describe(value) : String(value));
  switch (issue.code) {
    case 'invalid_type': {
      if (actual === undefined) return 'this key is required';
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      const hint =
        typeof actual === 'number' && issue.expected === 'string'
          ? " (put it in quotes to make it text, e.g. '0123')"
          : typeof actual === 'string' && /^\d+$/.test(actual) && (issue.expected === 'number' || issue.expected === 'int')
            ? ' (remove the quotes)'
            : '';
      if (issue.expected === 'int' && typeof actual === 'number') return `expected a whole number, got ${shown(actual)}`;
      return `expected ${expected}, got ${describe(actual)}${hint}`;
    }
    case 'too_small':
      if (issue.origin === 'array') return 'the list must not be empty';
      if (issue.origin === 'string') return 'must not be empty';
      return `expected a number ${issue.inclusive ? '>=' : '>'} ${String(issue.minimum)}, got ${shown(actual)}`;
    case 'too_big':
      return `expected a number ${issue.inclusive ? '<=' : '<'} ${String(issue.maximum)}, got ${shown(actual)}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map(String).join(', ')}; got ${describe(actual)}`;
    case 'invalid_union':
      return `unexpected ${describe(actual)}`;
    default:
      return issue.message;
  }
}
