/**
 * Config loading: YAML text in, a validated and normalized `Config` out, or a `ConfigError`
 * listing every problem with its key path, line and column.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { explainReadError } from '../shared/read-error.js';
import { ConfigError, formatIssue, type ConfigIssue, type PathIssue } from './issues.js';
import { buildCluster, readClusterSecrets, type ClusterSecrets } from './cluster.js';
import { readMetricsAuth, type MetricsAuthRead } from './metrics-auth.js';
import { checkPolicy, type Sections } from './policy.js';
import { APP_KEYS, APP_NAME, appSchema, globalKeysAt, globalSchema, USER_KEYS, validateSection, type AppSection, type GlobalSection } from './schema.js';
import { closestMatch } from './suggest.js';
import { readFolderSecrets } from './totp-folder.js';
import type { AppConfig, CaptureMode, Config, FirewallType } from './types.js';
import { appUsers, type AppUser } from './users.js';
import { dropInFiles, mergeFiles, type SourceFile } from './drop-ins.js';

export { ConfigError, type ConfigIssue } from './issues.js';

/** Command-line flags that take precedence over the file. */
export interface ConfigOverrides {
  firewallType?: FirewallType;
  step1Port?: number;
  step2Port?: number;
  capture?: CaptureMode;
  stateDir?: string;
  /** `--waf-https-port`: the port a reverse proxy serves step 2 on. */
  step2PublicPort?: number;
  /** `--waf-trusted-ips`: networks already normalized by `parseNetwork`. */
  trustedProxies?: string[];
}

/** Reads the config file and its drop-ins (conf.d/*.yaml, users.d/*.yaml next to it; see drop-ins.ts). */
export function loadConfigFile(path: string, overrides: ConfigOverrides = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ path: '', message: `cannot read the config file: ${explainReadError(err, path)}${directoryHint(err, path)}` }]);
  }
  const dropIns = dropInFiles(path);
  return parseConfigFiles({ file: path, text }, dropIns.files, overrides, dropIns.issues);
}

/** `-c /etc/knock-port`: which file to name instead. */
function directoryHint(err: unknown, path: string): string {
  if ((err as NodeJS.ErrnoException).code !== 'EISDIR') return '';
  const inside = join(path, 'config.yaml');
  return existsSync(inside) ? `; give the file: -c ${inside}` : '; give the YAML file with -c FILE';
}

/** One config text, without drop-ins. */
export function parseConfig(text: string, source: string, overrides: ConfigOverrides = {}): Config {
  return parseConfigFiles({ file: source, text }, [], overrides);
}

function parseConfigFiles(main: SourceFile, dropIns: readonly SourceFile[], overrides: ConfigOverrides, readIssues: readonly ConfigIssue[] = []): Config {
  const source = main.file;
  const yaml = mergeFiles(main, dropIns);
  if (yaml.issues.length > 0 || readIssues.length > 0) throw new ConfigError(source, [...readIssues, ...yaml.issues]);

  const read = readSections(yaml.data);
  const sections: Sections = {
    apps: read.apps,
    ...(read.global ? { global: applyOverrides(read.global, overrides) } : {}),
    overriddenBy: {
      ...(overrides.step1Port ? { http_port: '--http-port' } : {}),
      ...(overrides.step2Port ? { https_port: '--https-port' } : {}),
      ...(overrides.step2PublicPort ? { https_public_port: '--waf-https-port' } : {}),
      ...(overrides.trustedProxies ? { trusted_proxies: '--waf-trusted-ips' } : {}),
    },
  };
  const policy = checkPolicy(sections);
  const users = new Map(sections.apps.map(({ name, app }) => [name, appUsers(name, app)]));
  const folder = sections.global?.['2fa_config_folder'];
  const fromFolder = folder === undefined ? undefined : readFolderSecrets(folder, [...users.values()].flat());
  const cluster = sections.global?.cluster;
  const clusterSecrets = cluster === undefined ? undefined : readClusterSecrets(cluster, [...users.values()].flat());

  const metricsAuth = sections.global && policy.errors.length === 0 ? readMetricsAuth(sections.global) : undefined;

  const errors = [...read.issues, ...policy.errors, ...(fromFolder?.errors ?? []), ...(clusterSecrets?.errors ?? []), ...(metricsAuth?.errors ?? [])];
  if (errors.length > 0 || !sections.global)
    throw new ConfigError(
      source,
      errors.map((issue) => yaml.locate(issue)),
    );

  const warnings = [...policy.warnings, ...(clusterSecrets?.warnings ?? []), ...(metricsAuth?.warnings ?? [])].map((issue) =>
    formatIssue(source, yaml.locate(issue)),
  );
  const config: Config = {
    global: buildGlobal(sections.global, clusterSecrets, metricsAuth),
    apps: sections.apps.map(({ name, app }) => buildApp(name, app, sections.global!, users.get(name)!, fromFolder?.secrets)),
    source,
    ...(yaml.dropIns.length > 0 ? { dropIns: yaml.dropIns } : {}),
    ...([...users.values()].flat().some((user) => user.step1Key.clear !== undefined || user.step2Key.clear !== undefined)
      ? { keysInClear: true as const }
      : {}),
  };
  return warnings.length > 0 ? { ...config, warnings } : config;
}

interface ReadSections {
  global?: GlobalSection;
  apps: { name: string; app: AppSection }[];
  issues: PathIssue[];
}

const FILE_SHAPE = 'expected a mapping with a global section and one section per app (see config.example.yaml)';

/** Every top-level key except `global` is an app, as in the original. */
function readSections(data: unknown): ReadSections {
  const read: ReadSections = { apps: [], issues: [] };
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    read.issues.push({ path: [], message: data === null || data === undefined ? `the file is empty; ${FILE_SHAPE}` : FILE_SHAPE });
    return read;
  }
  const entries = Object.entries(data as Record<string, unknown>);
  const hasGlobal = entries.some(([key]) => key === 'global');
  if (!hasGlobal) read.issues.push({ path: [], message: 'the global section is missing (http_post_path, https_post_path, interface_ext, ...)' });

  for (const [key, value] of entries) {
    if (key === 'global') {
      const { data: global, issues } = validateSection(globalSchema, value ?? {}, ['global'], globalKeysAt);
      read.issues.push(...issues);
      if (global) read.global = global;
    } else if (!hasGlobal && closestMatch(key, ['global'])) {
      read.issues.push({ path: [key], message: `unknown section '${key}'; did you mean 'global'?`, atKey: true });
    } else if (!APP_NAME.test(key)) {
      read.issues.push({ path: [key], message: `app name '${key}' is not 1-32 of A-Z a-z 0-9 _ - (it names firewall objects)`, atKey: true });
    } else {
      const { data: app, issues } = validateSection(appSchema, value, [key], (inner) => (inner.length === 0 ? APP_KEYS : USER_KEYS));
      read.issues.push(...issues);
      if (app) read.apps.push({ name: key, app });
    }
  }
  return read;
}

function applyOverrides(global: GlobalSection, overrides: ConfigOverrides): GlobalSection {
  return {
    ...global,
    ...(overrides.firewallType ? { firewall_type: overrides.firewallType } : {}),
    ...(overrides.step1Port ? { http_port: overrides.step1Port } : {}),
    ...(overrides.step2Port ? { https_port: overrides.step2Port } : {}),
    ...(overrides.capture ? { capture: overrides.capture } : {}),
    ...(overrides.stateDir ? { state_dir: resolve(overrides.stateDir) } : {}),
    ...(overrides.step2PublicPort ? { https_public_port: overrides.step2PublicPort } : {}),
    ...(overrides.trustedProxies ? { trusted_proxies: overrides.trustedProxies } : {}),
  };
}

function buildGlobal(global: GlobalSection, clusterSecrets: ClusterSecrets | undefined, metricsAuth: MetricsAuthRead | undefined): Config['global'] {
  return {
    step1Path: global.http_post_path,
    step2Path: global.https_post_path,
    rateLimitPerMinute: global.step1_2_rate_limit_per_minute,
    interfaceExt: global.interface_ext,
    interfaceInt: global.interface_int ?? global.interface_ext,
    step1Port: global.http_port,
    step2Port: global.https_port,
    firewallType: global.firewall_type,
    capture: global.capture,
    queueNum: global.queue_num,
    nflogGroup: global.nflog_group,
    step1Workers: global.step1_workers,
    step1Handshake: global.step1_handshake,
    step1Reply: global.step1_reply,
    step1Xdp: global.step1_xdp,
    stateDir: global.state_dir,
    tableName: global.table_name,
    ipv6: global.ipv6,
    ...(global.metrics_listen ? { metricsListen: global.metrics_listen } : {}),
    ...(metricsAuth?.auth ? { metricsAuth: metricsAuth.auth } : {}),
    controlSocket: global.control_socket,
    packetMark: global.packet_mark,
    grantMark: global.grant_mark,
    hostFirewall: global.host_firewall,
    gateMode: global.gate_mode,
    sourcePrefixV4: global.source_prefix_v4,
    sourcePrefixV6: global.source_prefix_v6,
    lockoutUserFailures: global.lockout_user_failures,
    lockoutAppFailures: global.lockout_app_failures,
    lockoutWindowSeconds: global.lockout_window_seconds,
    lockoutSeconds: global.lockout_seconds,
    step1RatePerSecond: global.step1_rate_per_second,
    ...(global.tls_cert !== undefined ? { tlsCert: global.tls_cert } : {}),
    ...(global.tls_key !== undefined ? { tlsKey: global.tls_key } : {}),
    ...(global.https_public_port !== undefined ? { step2PublicPort: global.https_public_port } : {}),
    ...(global.https_listen_address !== undefined ? { step2ListenAddress: global.https_listen_address } : {}),
    ...(global.trusted_proxies?.length ? { trustedProxies: [...new Set(global.trusted_proxies)] } : {}),
    ...(global.cluster && clusterSecrets ? { cluster: buildCluster(global.cluster, clusterSecrets) } : {}),
  };
}

function buildApp(name: string, app: AppSection, global: GlobalSection, users: AppUser[], folderSecrets: Map<AppUser, string> | undefined): AppConfig {
  const destination = app.destination;
  return {
    name,
    port: app.port,
    protocol: app.protocol,
    destination: destination.kind === 'local' ? destination : { ...destination, port: destination.port ?? app.port },
    duration: app.duration,
    step2Duration: app.step2_https_duration,
    users: users.map((user) => {
      const step1OtpSecret = user.step1OtpSecret ?? folderSecrets?.get(user);
      return {
        name: user.name,
        index: user.index,
        step1Key: user.step1Key.digest,
        step2Key: user.step2Key.digest,
        ...(user.totpSecret ? { totpSecret: user.totpSecret } : {}),
        ...(step1OtpSecret ? { step1OtpSecret } : {}),
      };
    }),
    masquerade: destination.kind === 'forward' && (app.masquerade ?? true),
    endFlowsOnExpiry: app.end_flows_on_expiry,
    alwaysAllow: [...new Set([...(global.always_allow ?? []), ...(app.always_allow ?? [])])],
    interfaceExt: app.interface_ext ?? global.interface_ext,
    interfaceInt: app.interface_int ?? global.interface_int ?? global.interface_ext,
  };
}
