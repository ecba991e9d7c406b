/**
 * The normalized, validated configuration every other module consumes.
 * `src/config/load.ts` turns YAML (the original knock-port format plus extensions) into this.
 * Secrets never appear in clear here: keys are held as SHA-256 digests (except what the cluster
 * needs to work: its signing key and the store's password, see ClusterConfig).
 */

export type FirewallType = 'nftables' | 'iptables' | 'vyos';
export type CaptureMode = 'auto' | 'nfqueue' | 'nflog';
export type HostFirewallMode = 'insert' | 'report';
/** `enforce`: the gate drops; `report`: it counts and logs what it would drop at protected ports, and lets it pass. */
export type GateMode = 'enforce' | 'report';
export type Step1Handshake = 'cookie' | 'none';
export type Step1Reply = 'silent' | 'reset';
/** `step1_xdp`: `auto` tries native, then generic, then none; `off` never loads the program. */
export type Step1XdpMode = 'off' | 'auto' | 'native' | 'generic';
export type Protocol = 'tcp' | 'udp';
export type IpFamily = 4 | 6;

/** SHA-256 digest (32 bytes) of an access key; compared with crypto.timingSafeEqual. */
export type KeyDigest = Buffer;

export interface User {
  /** Name from `users:`, or `key<i>` for the original's parallel key lists (i starts at 0). */
  name: string;
  /** Position in the app's user list; pairs access_key_http[i] with access_key_https[i]. */
  index: number;
  step1Key: KeyDigest;
  step2Key: KeyDigest;
  /** Base32 TOTP secret required as `token` in step 2, when set. */
  totpSecret?: string;
  /** Base32 TOTP secret required as a one-time `otp` field in step 1, when set. */
  step1OtpSecret?: string;
}

export type Destination =
  { kind: 'local' } | { kind: 'forward'; address: string; family: IpFamily; /** Destination port; equals the app port when not given. */ port: number };

export interface AppConfig {
  name: string;
  port: number;
  protocol: Protocol;
  destination: Destination;
  /** Seconds the service port stays open after step 2. */
  duration: number;
  /** Seconds the HTTPS port stays open after step 1. */
  step2Duration: number;
  users: User[];
  /** Masquerade forwarded traffic so the LAN host answers through the gateway (forwarded apps). */
  masquerade: boolean;
  /**
   * End an address's established flows to the app when its service grant expires. Absent or
   * false: a flow opened while granted lives on after `duration` until it ends by itself.
   */
  endFlowsOnExpiry?: boolean;
  /** Networks that reach the app without a knock: `global.always_allow` and the app's own. */
  alwaysAllow: string[];
  interfaceExt: string;
  interfaceInt: string;
}

export interface GlobalConfig {
  step1Path: string;
  step2Path: string;
  rateLimitPerMinute: number;
  interfaceExt: string;
  interfaceInt: string;
  step1Port: number;
  step2Port: number;
  firewallType: FirewallType;
  capture: CaptureMode;
  queueNum: number;
  nflogGroup: number;
  /**
   * Step-1 worker threads, each fed by its own queue (queueNum + i) or log group
   * (nflogGroup + i); `auto` is one per core, capped (see resolveStep1Workers).
   */
  step1Workers: number | 'auto';
  step1Handshake: Step1Handshake;
  step1Reply: Step1Reply;
  /** The step-1 XDP front on interface_ext (an accelerator: the kernel's rules stay the gate). */
  step1Xdp: Step1XdpMode;
  stateDir: string;
  tableName: string;
  ipv6: boolean;
  /** `host:port` of the Prometheus endpoint, or undefined when disabled. */
  metricsListen?: string;
  /** A token or TLS for the endpoint; required off loopback. */
  metricsAuth?: MetricsAuth;
  controlSocket: string;
  /** Mark carried by the daemon's own raw packets (SYN-ACK, RST). */
  packetMark: number;
  /**
   * Conntrack mark bits set on every connection knock-port lets in (HTTPS window, service
   * grants, forwards), so a host ruleset that drops by default can accept exactly those.
   */
  grantMark: number;
  /** `insert`: put an accept for `grantMark` at the top of host chains that could drop; `report`: only warn. */
  hostFirewall: HostFirewallMode;
  /** `report`: the apps' ports are not protected; what the gate would drop there is counted and logged instead. Absent: `enforce`. */
  gateMode?: GateMode;
  /** Prefix lengths whose addresses share one per-source budget (rate limits, connection caps). */
  sourcePrefixV4: number;
  sourcePrefixV6: number;
  /** Wrong one-time codes of one user (per step), across all sources, that lock that user's code; 0: never. */
  lockoutUserFailures: number;
  /** Wrong keys for one app (per step), across all sources, that lock the app's step; 0: never. */
  lockoutAppFailures: number;
  /** The window those failures are counted in, and how long a lock lasts. */
  lockoutWindowSeconds: number;
  lockoutSeconds: number;
  /** Step-1 SYNs and data segments per second the kernel passes to the daemon, all sources together. */
  step1RatePerSecond: number;
  /** The step-2 certificate (PEM, chain allowed) and key: absolute paths; `run --cert/--key` take precedence. */
  tlsCert?: string;
  tlsKey?: string;
  /**
   * The step-2 port clients reach, gated by the firewall; a reverse proxy listens there and
   * forwards to `step2Port`, which is then dropped on the external interface. Undefined: `step2Port`.
   */
  step2PublicPort?: number;
  /** Address the step-2 listener binds; undefined: every address. */
  step2ListenAddress?: string;
  /** Networks (`address/prefix`) whose step-2 requests name the client in X-Real-IP / X-Forwarded-For. */
  trustedProxies?: string[];
  /** Several gateways sharing one set of grants; undefined: this gateway works alone. */
  cluster?: ClusterConfig;
}

/** What protects the metrics endpoint: a bearer token, TLS (with client certificates), or both. */
export interface MetricsAuth {
  /** SHA-256 of the bearer token read from `metrics_token_file`; the token itself is never kept. */
  tokenDigest?: Buffer;
  /** PEM files (absolute paths), read when the endpoint starts; `clientCa`: only clients with a certificate it signed. */
  tls?: { cert: string; key: string; clientCa?: string };
}

/** A host (DNS name or IP address) and port of the cluster's store or of one of its Sentinels. */
export interface RedisEndpoint {
  host: string;
  port: number;
}

/** Where the cluster's store is: one server (`url`), or the master that Sentinels name `name`. */
export type RedisAddress = { kind: 'server'; endpoint: RedisEndpoint; db: number } | { kind: 'sentinel'; sentinels: RedisEndpoint[]; name: string };

/** TLS to the store: files (absolute paths) read when connecting; none given: the system's CAs, no client certificate. */
export interface RedisTlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface RedisConfig {
  address: RedisAddress;
  username?: string;
  /** From `password` or `password_file`; never logged or shown. */
  password?: string;
  /** The Sentinels' ACL user, when they have their own (`sentinel_username`). */
  sentinelUsername?: string;
  /** From `sentinel_password` or `sentinel_password_file`: the Sentinels' own; never logged or shown. */
  sentinelPassword?: string;
  /** Present when the store is reached over TLS (`rediss://`, or `tls:` with Sentinels, then for them too). */
  tls?: RedisTlsFiles;
}

/**
 * `global.cluster`: this gateway shares its grants, revokes and used one-time codes with the other
 * gateways of the site through a Redis or Valkey store (docs/cluster.md).
 */
export interface ClusterConfig {
  /** This gateway's name, unique in the site: `[a-z0-9-]`. */
  gateway: string;
  /** The cluster key (HMAC-SHA256 over every message), in clear: signing needs it. Never logged or shown. */
  key: Buffer;
  redis: RedisConfig;
  /** Prefix of every key and channel in the store, e.g. `knock-port:`. */
  prefix: string;
  /** Signed into every message: the same on every gateway of the cluster (default: the prefix). */
  name: string;
}

/** The step-2 port clients connect to (a proxy's, when one sits in front of knock-port). */
export function publicStep2Port(global: Pick<GlobalConfig, 'step2Port' | 'step2PublicPort'>): number {
  return global.step2PublicPort ?? global.step2Port;
}

export interface Config {
  global: GlobalConfig;
  apps: AppConfig[];
  /** File the config was read from, for messages. */
  source: string;
  /** The drop-ins merged into it (conf.d/*.yaml, users.d/*.yaml), in the order read. */
  dropIns?: string[];
  /** Accepted but noteworthy settings, as `FILE:LINE:COL: PATH: message` (log them at start). */
  warnings?: string[];
  /** Some key was written in clear rather than as a `sha256:` digest (see file-exposure.ts). */
  keysInClear?: true;
}
