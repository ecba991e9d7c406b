/**
 * The shape of a config file: the original knock-port format (a `global` section plus one
 * section per app) and this project's optional extensions. Value-level rules live here;
 * rules that relate several values live in policy.ts.
 */
import { z } from 'zod';
import { APP_NAME, GATEWAY_NAME, USER_NAME } from './names.js';
import type { KeyPath, PathIssue } from './issues.js';
import { unknownKeyMessage } from './suggest.js';
import {
  parseAbsolutePath,
  parseAccessKey,
  parseClusterKey,
  parseDestination,
  parseInterfaceName,
  parseListenAddress,
  parseMetricsListen,
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

/**
 * A string checked (and converted) by one of the value parsers; `type` names what it holds in
 * the reference (the schema alone would say "string").
 */
function parsedString<T>(parse: (text: string) => Parsed<T>, type: string) {
  return z
    .string()
    .min(1)
    .transform((text, ctx) => {
      const result = parse(text);
      if (!(result instanceof Refusal)) return result;
      ctx.issues.push({ code: 'custom', message: result.message, input: text });
      return z.NEVER;
    })
    .meta({ type });
}

const port = z.int().min(1).max(65535);
const seconds = z.int().min(1);
// The kernel limits take a burst of twice the rate; iptables hashlimit refuses bursts over 1,000,000.
const perSecond = z.int().min(1).max(500_000);
const u16 = z.int().min(0).max(65535);
const accessKey = parsedString(parseAccessKey, 'key (10+ characters), or sha256:<64 hex digits>');
const totpSecret = parsedString(parseTotpSecret, 'base32 secret (80+ bits)');
const interfaceName = parsedString(parseInterfaceName, 'interface name');
const absolutePath = parsedString(parseAbsolutePath, 'absolute path');
const requestPath = () => parsedString(parseRequestPath, 'request path');
const allowedNetworks = () => z.array(parsedString(parseAllowedNetwork, 'IP or network'));

/** A firewall or conntrack mark: a number, or `0x` hex text. */
const mark = z
  .union([z.int(), z.string()])
  .transform((value, ctx) => {
    const parsed = parsePacketMark(value);
    if (!(parsed instanceof Refusal)) return parsed;
    ctx.issues.push({ code: 'custom', message: parsed.message, input: value });
    return z.NEVER;
  })
  .meta({ type: 'number 1-0xffffffff (decimal or 0x hex)' });

export { APP_NAME, GATEWAY_NAME, USER_NAME };

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

/**
 * Every key's documentation (`.meta()`, see KeyDoc in schema-doc.ts) feeds the man page
 * knock-port.yaml(5) and docs/manual/configuration.md (`npm run docs:generate`); a key without
 * a description or an example fails the unit tests.
 */

/** TLS files of `global.cluster.redis.tls`. */
export const redisTlsSchema = z.strictObject({
  ca: absolutePath.optional().meta({
    description: "CA certificate (PEM) the store's certificate must be signed by; without it, `rediss://` uses the system's CAs.",
    example: '/etc/knock-port/redis-ca.pem',
  }),
  cert: absolutePath.optional().meta({
    description: 'Client certificate (PEM) for stores that require one; goes with `key`.',
    example: '/etc/knock-port/redis-client.pem',
  }),
  key: absolutePath.optional().meta({ description: 'Private key (PEM) of `cert`.', example: '/etc/knock-port/redis-client.key' }),
});

/** An ACL user name, of the data nodes or of the Sentinels. */
const redisUsername = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'expected 1-128 printable characters without spaces');

/** `global.cluster.redis`: one server (`url`) or Sentinels; which one, and pairs, are checked in policy.ts. */
export const redisSchema = z.strictObject({
  url: parsedString(parseRedisUrl, 'URL').optional().meta({
    description:
      'One server: `redis://HOST[:PORT][/DB]`, or `rediss://...` for TLS (port 6379, database 0 by default). No credentials in the URL. Give `url` or `sentinels`, not both.',
    example: 'rediss://redis.example.net:6380',
  }),
  sentinels: z.array(parsedString(parseSentinelAddress, 'HOST:PORT')).min(1).optional().meta({
    description: 'Instead of `url`: the Sentinels, `HOST:PORT`, `[IPv6]:PORT`, or `HOST` for port 26379.',
    example: '[10.0.0.5:26379, 10.0.0.6:26379, 10.0.0.7:26379]',
  }),
  sentinel_name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . - (the name the Sentinels give the master)')
    .optional()
    .meta({ description: 'With `sentinels`: the name they give the master (1-64 of `A-Z a-z 0-9 _ . -`).', example: 'knockport' }),
  username: redisUsername.optional().meta({
    description: 'ACL user on the data nodes (see [A least-privilege user on the data nodes](cluster.md#a-least-privilege-user-on-the-data-nodes)).',
    example: 'knock-port',
  }),
  password: z
    .string()
    .min(1)
    .optional()
    .meta({ description: "The data nodes' password, in the config; give `password` or `password_file`, not both.", example: "'s3cret'" }),
  password_file: absolutePath.optional().meta({
    description: "File holding the data nodes' password, read when the config is loaded.",
    example: '/etc/knock-port/redis.password',
  }),
  // The Sentinels' own credentials, when they differ from the data nodes' (Sentinel's requirepass or ACL user).
  sentinel_username: redisUsername.optional().meta({
    description: "Only with `sentinels`: the Sentinels' own ACL user (Sentinel authenticates its clients itself).",
    example: 'knock-port',
  }),
  sentinel_password: z
    .string()
    .min(1)
    .optional()
    .meta({ description: "Only with `sentinels`: the Sentinels' own password; not with `sentinel_password_file`.", example: "'s3cret'" }),
  sentinel_password_file: absolutePath.optional().meta({
    description: "Only with `sentinels`: a file holding the Sentinels' own password.",
    example: '/etc/knock-port/sentinel.password',
  }),
  tls: redisTlsSchema.optional().meta({
    description:
      'TLS files (below); `cert` and `key` go together. With `url` it needs `rediss://`; with Sentinels it turns TLS on for them and for the servers.',
    example: '{ ca: /etc/knock-port/redis-ca.pem }',
  }),
});

/** `global.cluster`: several gateways sharing one set of grants (docs/cluster.md). */
export const clusterSchema = z.strictObject({
  gateway: z
    .string()
    .regex(GATEWAY_NAME, 'expected 1-63 of a-z 0-9 - (lower case), starting with a letter or digit')
    .meta({ description: "This gateway's name, unique in the site: 1-63 of `a-z 0-9 -`.", example: 'gw-a' }),
  key: parsedString(parseClusterKey, 'key (32+ characters)').optional().meta({
    description:
      'The cluster key itself, in the config. Keys shorter than 32 characters, published ones and a key that is also an access key are refused. Give `key_file` or `key`, not both.',
    example: '"$(openssl rand -hex 32)"',
  }),
  key_file: absolutePath.optional().meta({
    description:
      'File holding the cluster key (at least 32 characters; one final line break is ignored), read when the config is loaded. The same key on every gateway: `openssl rand -hex 32`.',
    example: '/etc/knock-port/cluster.key',
  }),
  redis: redisSchema.meta({ description: 'The store the gateways share (below).', example: '{ url: rediss://redis.example.net:6380 }' }),
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.:/-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : / -')
    .default(DEFAULTS.clusterPrefix)
    .meta({
      description: 'Prefix of every key and channel knock-port uses in the store (1-64 of `A-Z a-z 0-9 _ . : / -`), so several sites can share one store.',
      example: "'site-b:'",
    }),
  // Signed into every message (docs/cluster.md): another site sharing the key cannot feed this one. Default: the prefix.
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.:/-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 _ . : / -')
    .optional()
    .meta({
      description:
        "The cluster's name (same characters), signed into every message with the key: the same on every gateway of the cluster, different per site. Two sites that share a cluster key but not a name refuse each other's messages.",
      default: 'the `prefix`',
      example: 'site-b',
    }),
});

export const globalSchema = z.strictObject({
  // The original's keys.
  http_post_path: requestPath().meta({
    description:
      'Secret path of step 1 (plain HTTP, stealth port). Matched exactly. It must start with `/`, use printable ASCII, and contain no `?`, `#` or whitespace. There is no length limit. Make one with `openssl rand -hex 16`.',
    example: '/8f18837d44f4d73f4e0eafa2b40e16dc',
  }),
  https_post_path: requestPath().meta({
    description: 'Secret path of step 2 (HTTPS). Same rules as `http_post_path`, and it must differ from it.',
    example: '/de34caef460ed2b33c6de88beade586f',
  }),
  step1_2_rate_limit_per_minute: z.int().min(1).default(DEFAULTS.rateLimitPerMinute).meta({
    description: 'Requests per minute allowed per source (an IPv4 address or IPv6 /64, see `source_prefix_v4/v6`), for each step.',
    example: '30',
  }),
  interface_ext: interfaceName.meta({
    description:
      'External interface: knock-port only catches traffic on it (see [Interfaces](#interfaces)). A name of an interface of this host (`eth0`; `check` and `run` refuse one that matches none), a name ending in `?` for an interface that may come later (`wg0?`), or a prefix wildcard at the end written `ppp+` (as in the original and iptables) or `ppp*` (as in nft), which mean the same on every backend. At most 15 characters, a wildcard included (a final `?` not counted); no spaces, `/` or `:`. Refused: `any` (or a bare `*`/`+`), and a wildcard that also matches `interface_int`: the gate would catch LAN traffic too.',
    example: 'eth0',
  }),
  interface_int: interfaceName.optional().meta({
    description:
      'LAN interface, used for forwarded apps (forward rule, masquerade). Same syntax; `any` allowed (forwarded traffic may leave on any interface).',
    default: '`interface_ext`',
    example: 'eth1',
  }),
  '2fa_config_folder': z.string().min(1).optional().meta({
    type: 'path',
    description:
      'The original\'s per-key TOTP files: `<folder>/<access_key_http>.json` (`{"secret": ..., "interval": 30}`). It requires that user to send a one-time `otp` in step 1. A relative path is resolved against the working directory. Every user needs a readable, valid file there, or a `step1_otp_secret` of their own (users with hashed keys always do): a missing folder, or a user without a file, is a config error, never a user knocking without the second factor.',
    example: '/etc/knock-port/2fa',
  }),
  healthcheck_app_name: z.string().regex(APP_NAME, 'expected 1-32 of A-Z a-z 0-9 _ -').optional().meta({
    description: 'Accepted and ignored, with a warning: the knock ports never answer unauthenticated requests. Use `knock-port health` instead.',
    example: 'healthcheck',
  }),
  // Extensions.
  http_port: port.default(DEFAULTS.step1Port).meta({ description: 'Step-1 port (TCP). Nothing listens on it.', example: '8080' }),
  https_port: port.default(DEFAULTS.step2Port).meta({ description: 'Step-2 port (TCP).', example: '8443' }),
  firewall_type: z
    .enum(['nftables', 'iptables', 'vyos'])
    .default(DEFAULTS.firewallType)
    .meta({ description: '`nftables`, `iptables` (with ipset) or `vyos`.', example: 'iptables' }),
  capture: z.enum(['auto', 'nfqueue', 'nflog']).default(DEFAULTS.capture).meta({
    description: 'How step-1 packets reach the daemon: `nfqueue`, `nflog`, or `auto` (nfqueue where the backend can install it, else nflog).',
    example: 'nflog',
  }),
  queue_num: u16.default(DEFAULTS.queueNum).meta({ description: 'NFQUEUE number (0-65535).', example: '100' }),
  nflog_group: u16.default(DEFAULTS.nflogGroup).meta({ description: 'NFLOG group (0-65535).', example: '5' }),
  // Step-1 inspectors on their own threads, fed by queues queue_num.. (or log groups nflog_group..).
  step1_workers: z
    .union([z.literal('auto'), z.int().min(1).max(MAX_STEP1_WORKERS)])
    .default(DEFAULTS.step1Workers)
    .meta({
      description:
        'Step-1 inspectors, each on its own thread with its own queue or log group: queues `queue_num` to `queue_num`+N-1 (the kernel spreads packets over them by CPU) or groups `nflog_group` to `nflog_group`+N-1 (one per CPU, CPU c to group `nflog_group` + c mod N). `auto`: one per core, at most 16; or a number from 1 to 16. The last queue and group must stay at most 65535.',
      example: '2',
    }),
  step1_handshake: z.enum(['cookie', 'none']).default(DEFAULTS.step1Handshake).meta({
    description:
      '`cookie`: answer SYNs with a stateless cookie SYN-ACK, so that plain curl works. `none`: never answer, so the port looks filtered. Only a SYN carrying the whole request (TCP Fast Open) knocks, and because that can be spoofed, it only opens the step-2 window. Clients then knock with `knock-port knock --tcp-fastopen`, or with `curl --tcp-fastopen` after a sysctl: see [Invisible step 1](how-it-works.md#invisible-step-1-step1_handshake-none).',
    example: 'none',
  }),
  step1_reply: z.enum(['silent', 'reset']).default(DEFAULTS.step1Reply).meta({
    description: '`silent`: step-1 requests never get an answer. `reset`: every step-1 request gets a RST, valid or not, which stops client retransmissions.',
    example: 'reset',
  }),
  step1_xdp: z.enum(['off', 'auto', 'native', 'generic']).default(DEFAULTS.step1Xdp).meta({
    description:
      "The XDP front on `interface_ext` (see [xdp.md](xdp.md)): a BPF program in the driver answers step-1 SYNs with the daemon's own cookie SYN-ACK and drops junk data segments before the kernel's stack; the rules and the daemon still check everything. `auto`: native mode, else generic (generic directly on a veth), else the kernel path alone; `native` or `generic`: that mode only, and a problem in `health` where it cannot attach. `off`: no program.",
    example: 'auto',
  }),
  state_dir: absolutePath
    .prefault(DEFAULTS.stateDir)
    .meta({ description: 'Sessions are kept here across restarts, with the record of the firewall installed.', example: '/var/lib/knock-port' }),
  table_name: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_]{0,30}$/, 'expected a letter then up to 30 of A-Z a-z 0-9 _')
    .default(DEFAULTS.tableName)
    .meta({ description: 'nftables table (`inet <name>`), and the prefix of ipset names.', example: 'knockport2' }),
  ipv6: z.boolean().default(DEFAULTS.ipv6).meta({ description: 'Protect the ports and grant access over IPv6 too.', example: 'false' }),
  metrics_listen: parsedString(parseMetricsListen, 'address:port').optional().meta({
    description:
      'Prometheus endpoint, `IP:PORT` or `[IPv6]:PORT`. An address other than loopback needs `metrics_token_file` or `metrics_tls_client_ca`: anyone who reaches the port could read the counts otherwise. The `metrics_*` keys take effect at the next restart (a reload warns). See [metrics.md](metrics.md).',
    default: 'disabled',
    example: "'127.0.0.1:9464'",
  }),
  // Off loopback, the endpoint wants a bearer token, or TLS with client certificates (policy.ts).
  metrics_token_file: absolutePath.optional().meta({
    description:
      "Absolute path of a file holding the bearer token Prometheus must send (`Authorization: Bearer TOKEN`; at least 16 characters, e.g. `openssl rand -hex 32`); readable by the daemon's user only. Requests without it get 401 and are counted.",
    default: 'none',
    example: '/etc/knock-port/metrics.token',
  }),
  metrics_tls_cert: absolutePath.optional().meta({
    description: 'Serve the metrics over HTTPS with this certificate (PEM); needs `metrics_tls_key`.',
    default: 'none',
    example: '/etc/knock-port/metrics-cert.pem',
  }),
  metrics_tls_key: absolutePath.optional().meta({
    description: 'The private key (PEM) of `metrics_tls_cert`.',
    default: 'none',
    example: '/etc/knock-port/metrics-key.pem',
  }),
  metrics_tls_client_ca: absolutePath.optional().meta({
    description: 'With TLS: only clients whose certificate this CA (PEM) signed get through the handshake.',
    default: 'none',
    example: '/etc/knock-port/prometheus-ca.pem',
  }),
  control_socket: absolutePath.prefault(DEFAULTS.controlSocket).meta({
    description: 'Absolute path of the local control socket (`sessions`, `revoke`, `health`).',
    example: '/run/knock-port/control.sock',
  }),
  packet_mark: mark.prefault(DEFAULTS.packetMark).meta({
    description: "Firewall mark on the daemon's own packets (1 to 0xffffffff, decimal or `0x` hex).",
    default: '`0x4b50`',
    example: '0x4b51',
  }),
  // Connections knock-port lets in carry these conntrack mark bits, so the host's own ruleset can accept them.
  grant_mark: mark.prefault(DEFAULTS.grantMark).meta({
    description:
      'The conntrack mark bit set on every connection knock-port lets in; the host firewall accepts exactly this bit. One bit, not shared with `packet_mark`; pick one no other tool on the gateway uses (multi-WAN and VPN tools often use the low bits). See [host-firewall.md](host-firewall.md#exactly-what-a-grant-admits).',
    default: '`0x10000000`',
    example: '0x20000000',
  }),
  host_firewall: z.enum(['insert', 'report']).default(DEFAULTS.hostFirewall).meta({
    description:
      "What to do about the gateway's own firewall (see [host-firewall.md](host-firewall.md)): `insert` keeps one accept rule for granted connections at the top of every host chain that could drop them; `report` changes nothing and warns (start log, `health`) with the rule to add.",
    example: 'report',
  }),
  // `report`: the gate counts and logs what it would drop at protected ports, and drops none of it.
  gate_mode: z.enum(['enforce', 'report']).default(DEFAULTS.gateMode).meta({
    description:
      "`report`: the gate drops nothing at the apps' ports; it counts what it would drop (per port, in `health` and the metrics) and logs a few packets a minute to the kernel log. It protects nothing: `check` and the daemon warn. Step 1 and the HTTPS port work as in `enforce`. See [Try before you trust](running.md#try-before-you-trust-trial-and-report-mode).",
    example: 'report',
  }),
  // Per-source budgets count a whole prefix: an IPv6 client owns a /64, not one address.
  source_prefix_v4: z.int().min(8).max(32).default(DEFAULTS.sourcePrefixV4).meta({
    description:
      "What one source is for every per-source budget (requests per minute, open HTTPS connections; all counted by the daemon once the cookie or the TLS handshake proved the source): an IPv4 source's network of this prefix length.",
    example: '24',
  }),
  source_prefix_v6: z.int().min(16).max(128).default(DEFAULTS.sourcePrefixV6).meta({
    description: 'The same for IPv6. An IPv6 client holds a whole /64: counted per address, it would have 2^64 budgets.',
    example: '56',
  }),
  // Wrong guesses counted per secret across all sources (auth/lockout.ts); 0 turns a lock off.
  lockout_user_failures: z.int().min(0).max(10_000).default(DEFAULTS.lockoutUserFailures).meta({
    description:
      "Wrong one-time codes (step-1 `otp`, step-2 `token`, each step apart) sent with one user's right key, from any sources, within `lockout_window_seconds`, that lock that user's code for `lockout_seconds`. `0`: never.",
    example: '5',
  }),
  lockout_app_failures: z.int().min(0).max(100_000).default(DEFAULTS.lockoutAppFailures).meta({
    description:
      'Wrong keys for one app (each step apart), from any sources, within `lockout_window_seconds`, that lock the app: every knock for it (or step-2 request, for step 2) is refused for `lockout_seconds`. `0`: never.',
    example: '0',
  }),
  lockout_window_seconds: seconds
    .max(86_400)
    .default(DEFAULTS.lockoutWindowSeconds)
    .meta({ description: 'The window those failures are counted in.', example: '300' }),
  lockout_seconds: seconds.max(86_400).default(DEFAULTS.lockoutSeconds).meta({ description: 'How long a lock lasts.', example: '3600' }),
  // Step-1 segments per second the kernel hands to the daemon, from all sources together: no
  // kernel budget is keyed on a source address before the cookie proves it (a forger's lever).
  step1_rate_per_second: z.int().min(100).max(1_000_000).default(DEFAULTS.step1RatePerSecond).meta({
    description:
      "Step-1 SYNs and data segments per second the kernel passes to the daemon, **from all sources together** (burst: twice as many). Before the cookie proves a source nothing is counted per source: a budget per claimed address would let anyone who forges a client's address lock it out.",
    example: '20000',
  }),
  // Per-source kernel budgets of earlier versions: accepted and ignored (policy.ts says why).
  syn_rate_per_second: perSecond.optional().meta({
    description: 'A per-source kernel budget of earlier versions: accepted, ignored with a warning (see the [threat model](threat-model.md)).',
    example: '10',
  }),
  https_conn_rate_per_second: perSecond.optional().meta({ description: 'The same as `syn_rate_per_second`: accepted, ignored with a warning.', example: '10' }),
  // The step-2 certificate (chain) and key; `run --cert/--key` override them.
  tls_cert: absolutePath.optional().meta({
    description:
      "Absolute path of the step-2 certificate (PEM: the server certificate first, then its intermediates, as certbot's `fullchain.pem`). `--cert` overrides it. With `tls_cert` and `tls_key` set, `run` and `check` need no flags, and `check` checks the pair as `run` does.",
    example: '/etc/knock-port/tls/cert.pem',
  }),
  tls_key: absolutePath.optional().meta({
    description: "Absolute path of its private key (PEM, unencrypted, readable by the daemon's user only). `--key` overrides it.",
    example: '/etc/knock-port/tls/key.pem',
  }),
  // A reverse proxy or WAF in front of step 2 (the original's --waf-https-port / --waf-trusted-ips).
  https_public_port: port.optional().meta({
    description:
      "The step-2 port clients connect to, when a reverse proxy or WAF serves it and forwards to `https_port` (see [nginx-waf.md](nginx-waf.md)). The firewall gates this port, and drops `https_port` on `interface_ext`. It must differ from `http_port` and from the TCP apps' ports.",
    default: '`https_port`',
    example: '443',
  }),
  https_listen_address: parsedString(parseListenAddress, 'IP address').optional().meta({
    description: "IP address knock-port's HTTPS listener binds, e.g. `127.0.0.1` behind a proxy on the same host.",
    default: 'every address',
    example: '127.0.0.1',
  }),
  trusted_proxies: z.array(parsedString(parseNetwork, 'IP or network')).optional().meta({
    description:
      "IPs or networks whose step-2 requests name the client: the rightmost `X-Forwarded-For` entry that is not a trusted proxy, or `X-Real-IP`, which must then agree with it (see [nginx-waf.md](nginx-waf.md)). Other peers' headers are ignored.",
    example: '[10.0.0.0/8, "::1"]',
  }),
  // An operator's lifeline: sources that reach every protected port without a knock.
  always_allow: allowedNetworks().optional().meta({
    description:
      "An operator's lifeline: IPs or networks that reach every protected port (local and forwarded apps, not the HTTPS port) with no knock, in the kernel; `0.0.0.0/0` and `::/0` are refused. Shown by `check` and `rules`. An app may add its own (`always_allow` in the app).",
    example: '[198.51.100.0/24, "2001:db8:9::/48"]',
  }),
  // Several gateways sharing one set of grants through a Redis or Valkey store.
  cluster: clusterSchema.optional().meta({
    description: 'Several gateways sharing one set of grants (the keys below; see [cluster.md](cluster.md)).',
    example: '{ gateway: gw-a, key_file: /etc/knock-port/cluster.key, redis: { url: "redis://10.0.0.5" } }',
  }),
});

export const userSchema = z.strictObject({
  name: z
    .string()
    .regex(USER_NAME, 'expected a letter or digit then up to 63 of A-Z a-z 0-9 _ . @ -')
    .meta({ description: "The user's name in logs, `sessions` and metrics: a letter or digit then up to 63 of `A-Z a-z 0-9 _ . @ -`.", example: 'alice' }),
  access_key_http: accessKey.meta({
    description: "The user's step-1 key, in clear or as `sha256:` digest ([Hashed keys](#hashed-keys)).",
    example: '1ac6221c842379fe0f081e8b4b1dae43',
  }),
  access_key_https: accessKey.meta({
    description: "The user's step-2 key; it must differ from every step-1 key.",
    example: 'f51beb003717642ad33ce216c5703898',
  }),
  /** Required as `token` in step 2. */
  totp_secret: totpSecret.optional().meta({
    description: 'Makes a one-time `token` required in step 2 (`knock-port totp new` makes one).',
    example: 'RQALHPYNKR5U2C23PBH4V3KFEHVTUMQV',
  }),
  /** Required as a one-time `otp` field in step 1. */
  step1_otp_secret: totpSecret.optional().meta({
    description: 'Makes a one-time `otp` required in step 1; give it a secret other than `totp_secret`.',
    example: 'E77IDL63C75IXWQG2WFFARTX7B2VJO2Q',
  }),
});

/**
 * A list of keys; one key written alone (`access_key_http: KEY`, as the original's sample config
 * does) is a list of one.
 */
const accessKeyList = () => z.preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(accessKey).min(1));

export const appSchema = z.strictObject({
  // The original's keys.
  port: port.meta({
    description: 'Service port on the gateway. No two apps may share a port and protocol, and a TCP app cannot use `http_port` or `https_port`.',
    example: '22',
  }),
  access_key_http: accessKeyList()
    .optional()
    .meta({ description: 'List of step-1 keys (one key alone is a list of one).', example: '[1f6612b5bc1996191745672119b4b5d6]' }),
  access_key_https: accessKeyList().optional().meta({
    description: 'List of step-2 keys. Entry *i* pairs with `access_key_http[i]` as user `key<i>`, so both lists must have the same length.',
    example: '[64927eeb562ed6a228f89d05b08b6bd9]',
  }),
  destination: parsedString(parseDestination, 'local, or IP[:PORT]').prefault('local').meta({
    description:
      "`local` (a service on this host), `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address: forward (DNAT) to a LAN host. Without a port, the app's `port` is used. Loopback, unspecified and multicast addresses are refused.",
    example: '192.168.1.10:3389',
  }),
  protocol: z.enum(['tcp', 'udp']).default('tcp').meta({ description: "The service port's protocol.", example: 'udp' }),
  duration: seconds.meta({
    description:
      'Seconds the service stays open for a client after step 2. It limits new connections: a flow opened while granted lives on after the grant expires, until it ends by itself (a VPN tunnel kept alive by its keepalives: for good), unless `end_flows_on_expiry` is set.',
    example: '3600',
  }),
  step2_https_duration: seconds.meta({ description: 'Seconds the HTTPS port stays open for a client after step 1.', example: '5' }),
  interface_ext: interfaceName.optional().meta({
    description: "Per-app override of `global.interface_ext` (same syntax) for the app's own port; the step-1 and step-2 ports always use the global one.",
    default: '`global.interface_ext`',
    example: 'ppp+',
  }),
  interface_int: interfaceName.optional().meta({
    description: 'Per-app override of `global.interface_int` (same syntax).',
    default: '`global.interface_int`',
    example: 'eth2',
  }),
  // Extensions.
  users: z.array(userSchema).min(1).optional().meta({
    type: 'list of users (below)',
    description: 'Named users, as an alternative to (or alongside) the two key lists; each is a mapping of the keys below.',
    example: '[{ name: alice, access_key_http: ..., access_key_https: ... }]',
  }),
  masquerade: z.boolean().optional().meta({
    description: 'Masquerade forwarded traffic, so that the LAN host answers through the gateway.',
    default: '`true` when forwarded',
    example: 'false',
  }),
  // Established flows outlive `duration` unless this ends them when the grant expires.
  end_flows_on_expiry: z.boolean().default(false).meta({
    description:
      "`true`: when an address's grant for this app expires, its flows to the app's port end then, within about a second, as `knock-port revoke --app` ends them (a TCP client served on this host is reset). A re-knock that renewed the grant in time keeps them.",
    example: 'true',
  }),
  // Sources that reach this app without a knock, besides global.always_allow.
  always_allow: allowedNetworks()
    .optional()
    .meta({ description: 'Networks that reach this app with no knock, besides `global.always_allow`.', example: '[192.0.2.7]' }),
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
