/**
 * Rules that relate several values: paired key lists, a key used for both steps or by two
 * users, equal step paths or ports, clashing app ports, the cluster's either-or keys. Single values are checked in values.ts.
 */
import { interfaceScopeIssues } from './interface-name.js';
import { formatKeyPath, type KeyPath, type PathIssue } from './issues.js';
import type { AppSection, ClusterSection, GlobalSection } from './schema.js';
import { appUsers, type AppUser } from './users.js';
import { isLoopbackIp } from './values.js';
import { resolveStep1Workers } from './workers.js';
import type { KnockStep } from '../shared/kinds.js';

export interface Sections {
  /** Undefined when the global section itself is invalid (its issues are reported already). */
  global?: GlobalSection;
  apps: { name: string; app: AppSection }[];
  /** Global keys whose value came from a command-line flag, named in messages. */
  overriddenBy?: Partial<Record<keyof GlobalSection, string>>;
}

export interface PolicyResult {
  errors: PathIssue[];
  warnings: PathIssue[];
}

export function checkPolicy(sections: Sections): PolicyResult {
  const result: PolicyResult = { errors: [], warnings: [] };
  const usersByApp = sections.apps.map(({ name, app }) => ({ name, app, users: appUsers(name, app) }));
  if (sections.global) checkGlobal(sections.global, result);
  if (sections.global) checkProxyFront(sections.global, sections.overriddenBy ?? {}, result);
  if (sections.global) checkWorkerRanges(sections.global, sections.overriddenBy ?? {}, result);
  if (sections.global) checkMetricsEndpoint(sections.global, result);
  if (sections.global?.cluster) checkCluster(sections.global.cluster, result);
  if (sections.global) result.errors.push(...interfaceScopeIssues(sections.global, sections.apps));
  for (const { name, app, users } of usersByApp) checkApp(name, app, users, sections.global, result);
  checkKeysAcrossSteps(
    usersByApp.flatMap(({ users }) => users),
    result,
  );
  checkPortClashes(sections, result);
  return result;
}

/** Said by `check` and at every start: report mode is for watching traffic, never for protecting it. */
export const REPORT_MODE_WARNING =
  "report: the gate protects nothing; what it would drop at the apps' ports passes and is counted (knock-port health, knockport_gate_would_drop_packets_total) and logged by the kernel; set enforce once the counts show only what should be dropped";

function checkGlobal(global: GlobalSection, { errors, warnings }: PolicyResult): void {
  if (global.http_post_path === global.https_post_path) {
    errors.push({ path: ['global', 'https_post_path'], message: 'must differ from http_post_path: the step-1 path travels in clear, so step 2 needs its own' });
  }
  if (global.http_port === global.https_port) {
    errors.push({ path: ['global', 'https_port'], message: `the step-1 and step-2 ports must differ (both are ${global.http_port})` });
  }
  checkMarks(global, errors);
  for (const key of ['syn_rate_per_second', 'https_conn_rate_per_second'] as const) {
    if (global[key] !== undefined) {
      warnings.push({
        path: ['global', key],
        message:
          "ignored: per-source budgets in the kernel let anyone who forges a client's address lock it out; the kernel now counts step-1 packets from all sources together (step1_rate_per_second), and per-source budgets apply once a source is proven",
      });
    }
  }
  if (global.gate_mode === 'report') {
    warnings.push({ path: ['global', 'gate_mode'], message: REPORT_MODE_WARNING });
  }
  if (global.healthcheck_app_name !== undefined) {
    warnings.push({
      path: ['global', 'healthcheck_app_name'],
      message: 'accepted but not used: the knock ports never answer unauthenticated requests; check liveness with knock-port health',
    });
  }
}

/**
 * `grant_mark` is or-ed into conntrack marks other tools use too (policy routing, QoS): one bit
 * touches the least, and one bit is what the accept rule in host chains tests. It must not share
 * bits with `packet_mark`, which `ct mark save/restore` rules copy to and from the ct mark.
 */
function checkMarks(global: GlobalSection, errors: PathIssue[]): void {
  const { grant_mark: grant, packet_mark: packet } = global;
  if (grant === 0 || (grant & (grant - 1)) !== 0) {
    errors.push({
      path: ['global', 'grant_mark'],
      message: `must be a single bit (such as 0x10000000), not 0x${grant.toString(16)}: the conntrack mark's other bits belong to other tools`,
    });
  } else if ((grant & packet) !== 0) {
    errors.push({ path: ['global', 'grant_mark'], message: `shares bits with packet_mark (0x${packet.toString(16)}): pick a bit packet_mark does not use` });
  }
}

/**
 * The metrics endpoint: TLS files come as a pair, client certificates need TLS, and off loopback
 * the endpoint needs a token or client certificates (anyone who reaches it would read the counts).
 */
function checkMetricsEndpoint(global: GlobalSection, { errors }: PolicyResult): void {
  const at = (key: keyof GlobalSection): KeyPath => ['global', key];
  const { metrics_listen: listen, metrics_token_file: token, metrics_tls_cert: cert, metrics_tls_key: key, metrics_tls_client_ca: clientCa } = global;
  if (listen === undefined) {
    for (const name of ['metrics_token_file', 'metrics_tls_cert', 'metrics_tls_key', 'metrics_tls_client_ca'] as const) {
      if (global[name] !== undefined) errors.push({ path: at(name), message: 'only used with metrics_listen, which is not set' });
    }
    return;
  }
  if ((cert === undefined) !== (key === undefined)) {
    errors.push({ path: at(cert === undefined ? 'metrics_tls_key' : 'metrics_tls_cert'), message: 'metrics_tls_cert and metrics_tls_key go together' });
  }
  if (clientCa !== undefined && cert === undefined) {
    errors.push({ path: at('metrics_tls_client_ca'), message: 'client certificates need TLS: give metrics_tls_cert and metrics_tls_key too' });
  }
  const host = listen.replace(/^\[/, '').replace(/\]?:\d+$/, '');
  if (!isLoopbackIp(host) && token === undefined && clientCa === undefined) {
    errors.push({
      path: at('metrics_listen'),
      message: `${host} is not a loopback address: whoever reaches it could read the metrics; give metrics_token_file (a bearer token Prometheus sends) or metrics_tls_client_ca (TLS with client certificates), or listen on 127.0.0.1`,
    });
  }
}

const CLUSTER = ['global', 'cluster'] as const;
const REDIS = [...CLUSTER, 'redis'] as const;

/** `global.cluster`: one key source, one store address, one source per password; TLS and Sentinel credentials that can apply. */
function checkCluster(cluster: ClusterSection, { errors }: PolicyResult): void {
  const either = (first: string, second: string) => `give ${first} or ${second}, not both`;
  if (cluster.key !== undefined && cluster.key_file !== undefined) errors.push({ path: [...CLUSTER, 'key_file'], message: either('key', 'key_file') });
  if (cluster.key === undefined && cluster.key_file === undefined) {
    errors.push({
      path: CLUSTER,
      message:
        'the cluster key is missing: give key_file (a file holding at least 32 characters, e.g. from openssl rand -hex 32, the same on every gateway) or key',
    });
  }
  const redis = cluster.redis;
  if (redis.url !== undefined && redis.sentinels !== undefined) errors.push({ path: [...REDIS, 'sentinels'], message: either('url', 'sentinels') });
  if (redis.url === undefined && redis.sentinels === undefined) {
    errors.push({ path: [...REDIS], message: 'the store address is missing: give url (redis:// or rediss://) or sentinels with sentinel_name' });
  }
  if (redis.sentinels !== undefined && redis.sentinel_name === undefined) {
    errors.push({ path: [...REDIS, 'sentinels'], message: 'sentinels need sentinel_name: the name the Sentinels give the master (sentinel monitor NAME ...)' });
  }
  if (redis.sentinel_name !== undefined && redis.sentinels === undefined) {
    errors.push({ path: [...REDIS, 'sentinel_name'], message: 'sentinel_name is only used with sentinels (a list of HOST:PORT)' });
  }
  if (redis.password !== undefined && redis.password_file !== undefined) {
    errors.push({ path: [...REDIS, 'password_file'], message: either('password', 'password_file') });
  }
  if (redis.sentinel_password !== undefined && redis.sentinel_password_file !== undefined) {
    errors.push({ path: [...REDIS, 'sentinel_password_file'], message: either('sentinel_password', 'sentinel_password_file') });
  }
  if (redis.sentinels === undefined) {
    for (const key of ['sentinel_username', 'sentinel_password', 'sentinel_password_file'] as const) {
      if (redis[key] !== undefined) errors.push({ path: [...REDIS, key], message: `${key} is only used with sentinels (the Sentinels' own credentials)` });
    }
  }
  if (redis.tls !== undefined && redis.url !== undefined && !redis.url.tls) {
    errors.push({ path: [...REDIS, 'tls'], message: 'TLS settings need a rediss:// url (redis:// is plain text)' });
  }
  const tls = redis.tls;
  if (tls !== undefined && (tls.cert === undefined) !== (tls.key === undefined)) {
    errors.push({ path: [...REDIS, 'tls', tls.cert === undefined ? 'key' : 'cert'], message: 'a client certificate needs both cert and key' });
  }
}

type Origins = NonNullable<Sections['overriddenBy']>;

/** Highest NFQUEUE number and NFLOG group. */
const MAX_QUEUE_ID = 65535;

/**
 * N step-1 workers read queues queue_num..queue_num+N-1 (or log groups nflog_group..+N-1):
 * the last one must still be a valid number. `auto` is checked as it resolves on this machine.
 */
function checkWorkerRanges(global: GlobalSection, overriddenBy: Origins, { errors }: PolicyResult): void {
  const workers = resolveStep1Workers(global.step1_workers);
  const what = `${workers} step-1 workers (step1_workers${global.step1_workers === 'auto' ? ': auto, on this machine' : ''})`;
  for (const [key, name] of [
    ['queue_num', 'queues'],
    ['nflog_group', 'log groups'],
  ] as const) {
    const first = global[key];
    const last = first + workers - 1;
    if (last > MAX_QUEUE_ID) {
      errors.push({
        path: ['global', key],
        message: `${what} use ${name} ${first}..${last} (${origin(key, overriddenBy)} is the first), past ${MAX_QUEUE_ID}: lower it to at most ${MAX_QUEUE_ID - workers + 1} or use fewer workers`,
      });
    }
  }
}

/** `global.KEY`, naming the flag that set it when it came from the command line. */
function origin(key: keyof GlobalSection, overriddenBy: Origins): string {
  return `global.${key}${overriddenBy[key] ? `, set by ${overriddenBy[key]}` : ''}`;
}

/** A reverse proxy serving step 2 on `https_public_port` and forwarding to knock-port's `https_port`. */
function checkProxyFront(global: GlobalSection, overriddenBy: Origins, { errors, warnings }: PolicyResult): void {
  const publicPort = global.https_public_port;
  if (publicPort === undefined) return;
  const setBy = overriddenBy.https_public_port ? ` (set by ${overriddenBy.https_public_port})` : '';
  if (publicPort === global.http_port) {
    errors.push({
      path: ['global', 'https_public_port'],
      message: `is ${publicPort}${setBy}, the step-1 port (${origin('http_port', overriddenBy)}); the public step-2 port must differ`,
    });
  }
  if (publicPort !== global.https_port && !global.trusted_proxies?.length) {
    warnings.push({
      path: ['global', 'https_public_port'],
      message:
        "differs from https_port but trusted_proxies is empty: step 2 through a proxy would see the proxy's address and be refused; list the proxy in trusted_proxies",
    });
  }
}

function checkApp(name: string, app: AppSection, users: AppUser[], global: GlobalSection | undefined, { errors, warnings }: PolicyResult): void {
  const step1KeyCount = app.access_key_http?.length ?? 0;
  const step2KeyCount = app.access_key_https?.length ?? 0;
  if (step1KeyCount !== step2KeyCount) {
    const longer = step1KeyCount > step2KeyCount ? 'access_key_http' : 'access_key_https';
    errors.push({
      path: [name, longer],
      message: `access_key_http has ${plural(step1KeyCount, 'key')} and access_key_https has ${plural(step2KeyCount, 'key')}: entry i of one pairs with entry i of the other (one pair per user), so both lists need the same length`,
    });
  }
  if (step1KeyCount === 0 && step2KeyCount === 0 && !app.users) {
    errors.push({ path: [name], message: 'no keys: give access_key_http and access_key_https lists, or a users list' });
  }
  checkUniqueNames(name, users, errors);
  checkDuplicateKeys(users, 'step1', errors);
  checkDuplicateKeys(users, 'step2', errors);
  if (app.destination.kind === 'forward' && app.destination.family === 6 && global?.ipv6 === false) {
    errors.push({ path: [name, 'destination'], message: 'an IPv6 destination needs global.ipv6: true' });
  }
  if (app.destination.kind === 'local' && app.masquerade === true) {
    warnings.push({ path: [name, 'masquerade'], message: 'ignored: masquerade only applies to forwarded apps (destination IP or IP:PORT)' });
  }
  if (global?.healthcheck_app_name === name) {
    errors.push({ path: ['global', 'healthcheck_app_name'], message: `'${name}' is also an app name; the health-check name must not be an app` });
  }
}

/** List-form users are key0, key1, ... so a clash always comes from a `users:` entry. */
function checkUniqueNames(appName: string, users: AppUser[], errors: PathIssue[]): void {
  const seen = new Set<string>();
  for (const user of users) {
    if (seen.has(user.name)) {
      errors.push({
        path: [...user.step1KeyPath.slice(0, -1), 'name'],
        message: `user name '${user.name}' is used twice in app ${appName} (list-form keys are named key0, key1, ...)`,
      });
    }
    seen.add(user.name);
  }
}

/** Two users of one app with the same key could not be told apart, so step 2 could not be bound to step 1's user. */
function checkDuplicateKeys(users: AppUser[], step: KnockStep, errors: PathIssue[]): void {
  const first = new Map<string, AppUser>();
  for (const user of users) {
    const hex = user[`${step}Key`].digest.toString('hex');
    const earlier = first.get(hex);
    if (earlier) {
      errors.push({
        path: user[`${step}KeyPath`],
        message: `same key as ${formatKeyPath(earlier[`${step}KeyPath`])}; each user needs their own key`,
      });
    } else {
      first.set(hex, user);
    }
  }
}

/** A step-1 key travels in clear; if it also opened step 2, sniffing step 1 would be enough. */
function checkKeysAcrossSteps(users: AppUser[], { errors }: PolicyResult): void {
  const step1KeyAt = new Map<string, AppUser['step1KeyPath']>();
  for (const user of users) if (!step1KeyAt.has(user.step1Key.digest.toString('hex'))) step1KeyAt.set(user.step1Key.digest.toString('hex'), user.step1KeyPath);
  for (const user of users) {
    const clash = step1KeyAt.get(user.step2Key.digest.toString('hex'));
    if (clash) {
      errors.push({
        path: user.step2KeyPath,
        message: `this step-2 key is also a step-1 key (${formatKeyPath(clash)}); step-1 keys travel in clear, so step 2 needs a different key`,
      });
    }
  }
}

function checkPortClashes({ global, apps, overriddenBy }: Sections, { errors }: PolicyResult): void {
  const owner = new Map<string, string>();
  for (const { name, app } of apps) {
    const slot = `${app.port}/${app.protocol}`;
    const earlier = owner.get(slot);
    if (earlier) errors.push({ path: [name, 'port'], message: `${slot} is already the port of app ${earlier}` });
    else owner.set(slot, name);
    if (global && app.protocol === 'tcp') {
      if (app.port === global.http_port)
        errors.push({ path: [name, 'port'], message: `${slot} is the step-1 port (${origin('http_port', overriddenBy ?? {})})` });
      if (app.port === global.https_port)
        errors.push({ path: [name, 'port'], message: `${slot} is the step-2 port (${origin('https_port', overriddenBy ?? {})})` });
      if (global.https_public_port !== undefined && global.https_public_port !== global.https_port && app.port === global.https_public_port) {
        errors.push({ path: [name, 'port'], message: `${slot} is the public step-2 port (${origin('https_public_port', overriddenBy ?? {})})` });
      }
    }
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
