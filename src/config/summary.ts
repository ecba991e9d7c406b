/**
 * The summary of a valid config that `knock-port check` prints: ports, backend, capture, cluster,
 * apps and warnings. Secrets (request paths, keys, TOTP secrets, the cluster key, the store's
 * password) are never shown.
 */
import { describeClusterStore } from './cluster.js';
import { describeStep1Queues, resolveStep1Workers } from './workers.js';
import { publicStep2Port, type AppConfig, type Config, type Destination, type GlobalConfig } from './types.js';
import { dropInLabel } from './drop-ins.js';

function describeDestination(destination: Destination): string {
  if (destination.kind === 'local') return 'local';
  const host = destination.family === 6 ? `[${destination.address}]` : destination.address;
  return `${host}:${destination.port}`;
}

function describeUsers(app: AppConfig): string {
  const count = app.users.length;
  const withTotp = app.users.filter((user) => user.totpSecret).length;
  const withOtp = app.users.filter((user) => user.step1OtpSecret).length;
  const extras = [withTotp > 0 ? `${withTotp} with step-2 TOTP` : '', withOtp > 0 ? `${withOtp} with step-1 OTP` : ''].filter(Boolean);
  return `${count} user${count === 1 ? '' : 's'}${extras.length > 0 ? ` (${extras.join(', ')})` : ''}`;
}

/** `443/tcp`, and where knock-port itself listens and whom it trusts when a proxy is in front. */
function describeStep2(global: GlobalConfig): string {
  const parts = [`${publicStep2Port(global)}/tcp`];
  if (publicStep2Port(global) !== global.step2Port || global.step2ListenAddress !== undefined) {
    parts.push(`knock-port listens on ${global.step2ListenAddress ?? 'every address'} port ${global.step2Port}`);
  }
  if (global.trustedProxies?.length) parts.push(`client address from trusted proxies ${global.trustedProxies.join(', ')}`);
  return parts.join('; ');
}

/** `enforce`, or report mode said so that nobody mistakes it for protection. */
function describeGate(global: GlobalConfig): string {
  return global.gateMode === 'report' ? "report (drops nothing at the apps' ports: counts and logs what it would drop)" : 'enforce';
}

/**
 * A short human summary of a valid config, as `knock-port check` prints it, with `hostWarnings`
 * (what this host says about the config, e.g. missing interfaces) after the file's own warnings.
 * Request paths, keys and TOTP secrets are never shown.
 */
export function summarizeConfig(config: Config, hostWarnings: readonly string[] = []): string {
  const { global } = config;
  const rows = config.apps.map((app) => [
    app.name,
    `${app.port}/${app.protocol}`,
    `-> ${describeDestination(app.destination)}${app.masquerade ? ' (masquerade)' : ''}`,
    `open ${app.duration} s${app.endFlowsOnExpiry ? ' (flows end at expiry)' : ''}, step-2 window ${app.step2Duration} s, ${describeUsers(app)}${app.alwaysAllow.length ? `; always allowed: ${app.alwaysAllow.join(', ')}` : ''}`,
  ]);
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = [
    `config OK: ${config.source}${config.dropIns ? ` with ${config.dropIns.map(dropInLabel).join(', ')}` : ''}`,
    `step 1: ${global.step1Port}/tcp (handshake ${global.step1Handshake}, reply ${global.step1Reply}, XDP ${global.step1Xdp}); step 2: ${describeStep2(global)}; ${global.rateLimitPerMinute} requests/min per source (IPv4 /${global.sourcePrefixV4}, IPv6 /${global.sourcePrefixV6})`,
    `firewall: ${global.firewallType} (table ${global.tableName}); gate: ${describeGate(global)}; capture: ${global.capture}; IPv6: ${global.ipv6 ? 'on' : 'off'}; interfaces: ${global.interfaceExt} (external), ${global.interfaceInt} (internal)`,
    `step-1 capture: ${describeStep1Queues({ ...global, step1Workers: resolveStep1Workers(global.step1Workers) })}`,
    ...(global.cluster
      ? [`cluster: gateway ${global.cluster.gateway}; store ${describeClusterStore(global.cluster.redis)} (key prefix ${global.cluster.prefix})`]
      : []),
    `apps (${config.apps.length}):`,
    ...rows.map((row) => `  ${row.map((cell, column) => (column < 3 ? cell.padEnd(widths[column]!) : cell)).join('  ')}`),
  ];
  const warnings = [...(config.warnings ?? []), ...hostWarnings];
  if (warnings.length) lines.push('warnings:', ...warnings.map((warning) => `  ${warning}`));
  return `${lines.join('\n')}\n`;
}

/** The summary as data, for `knock-port check --json`: the same facts, never a path, key or TOTP secret. */
export interface ConfigSummary {
  config: string;
  step1: { port: number; handshake: string; reply: string; xdp: string };
  step2: { port: number; listenPort: number; listenAddress?: string; trustedProxies: string[] };
  rateLimitPerMinute: number;
  sourcePrefix: { ipv4: number; ipv6: number };
  firewall: { type: string; table: string };
  /** `report`: the apps' ports are not protected, would-be drops are counted. */
  gate: 'enforce' | 'report';
  capture: string;
  ipv6: boolean;
  interfaces: { external: string; internal: string };
  /** Present when the gateway shares its grants: its name and the store's address, never a credential. */
  cluster?: { gateway: string; store: string; prefix: string; tls: boolean };
  apps: {
    name: string;
    port: number;
    protocol: string;
    destination: string;
    masquerade: boolean;
    duration: number;
    /** The app's established flows end when a grant expires (false: they outlive `duration`). */
    endFlowsOnExpiry: boolean;
    /** Networks that reach the app without a knock. */
    alwaysAllow: string[];
    /** `step2Duration` under the name `check --json` has always printed. */
    step2HttpsDuration: number;
    users: number;
    usersWithTotp: number;
    usersWithStep1Otp: number;
  }[];
}

export function configSummary(config: Config): ConfigSummary {
  const { global } = config;
  return {
    config: config.source,
    step1: { port: global.step1Port, handshake: global.step1Handshake, reply: global.step1Reply, xdp: global.step1Xdp },
    step2: {
      port: publicStep2Port(global),
      listenPort: global.step2Port,
      ...(global.step2ListenAddress !== undefined ? { listenAddress: global.step2ListenAddress } : {}),
      trustedProxies: [...(global.trustedProxies ?? [])],
    },
    rateLimitPerMinute: global.rateLimitPerMinute,
    sourcePrefix: { ipv4: global.sourcePrefixV4, ipv6: global.sourcePrefixV6 },
    firewall: { type: global.firewallType, table: global.tableName },
    gate: global.gateMode ?? 'enforce',
    capture: global.capture,
    ipv6: global.ipv6,
    interfaces: { external: global.interfaceExt, internal: global.interfaceInt },
    ...(global.cluster
      ? {
          cluster: {
            gateway: global.cluster.gateway,
            store: describeClusterStore(global.cluster.redis),
            prefix: global.cluster.prefix,
            tls: global.cluster.redis.tls !== undefined,
          },
        }
      : {}),
    apps: config.apps.map((app) => ({
      name: app.name,
      port: app.port,
      protocol: app.protocol,
      destination: describeDestination(app.destination),
      masquerade: app.masquerade,
      duration: app.duration,
      endFlowsOnExpiry: app.endFlowsOnExpiry ?? false,
      alwaysAllow: [...app.alwaysAllow],
      step2HttpsDuration: app.step2Duration,
      users: app.users.length,
      usersWithTotp: app.users.filter((user) => user.totpSecret).length,
      usersWithStep1Otp: app.users.filter((user) => user.step1OtpSecret).length,
    })),
  };
}
