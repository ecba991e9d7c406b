/**
 * Revokes across two real daemons and a real redis-server (`global.cluster`), when the store is
 * down, when a gateway restarts, is cut off silently or runs a clock 60 s ahead, and when
 * something writes huge values into the store, seen from a client the way a user would check it:
 * is the service port closed on both gateways? Same topology as gateways.test.ts:
 *
 *   client ── switch: br-ext ── gateway A (gw-a), gateway B (gw-b) ── switch: br-lan ── store
 *
 * Every case uses a client address of its own, so no case sees another's grant.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, Netns, run, waitFor } from '../../helpers/netns.js';
import { execIn, startServices, tcpProbe } from '../../helpers/scenario.js';
import { CLI } from '../../helpers/sandbox.js';
import { createSelfSignedCert } from '../../../src/demo/topology.js';
import { spawnDaemon, type DaemonProcess } from '../../../src/demo/daemon-process.js';
import { healthReportSchema, type HealthReport } from '../../../src/control/protocol.js';
import { CLOCK_SKEW, CLUSTER_DISCONNECTED, REVOKES_NOT_SHARED } from '../../../src/cluster/sync.js';

const FILE = 'cluster/revokes';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'redis-server', 'redis-cli', 'curl', 'openssl', 'faketime']));

const STEP1_PATH = '/knock-cluster-5d1e7a';
const STEP2_PATH = '/step2-cluster-93b0c4';
const HTTP_KEY = 'cluster-http-key-0123456789';
const HTTPS_KEY = 'cluster-https-key-0123456789';
const CLUSTER_KEY = randomBytes(32).toString('hex');
const PREFIX = `kpt-${randomBytes(3).toString('hex')}:`;
const SVC_PORT = 2222;

/** How long a grant, revoke or step-2 window made on one gateway may take to show on the other. */
const PROPAGATE_MS = 2000;
/** The longest a step-1 knock may take to open the step-2 window. */
const KNOCK_SECONDS = 4;
/** Reconnect backoff is capped at 10 s (store-parts.ts), plus a snapshot. */
const RECONNECT_MS = 15_000;
const PROBE_MS = 500;

const NET = {
  client4: '198.51.100.10',
  a4: '198.51.100.1',
  b4: '198.51.100.2',
  client6: '2001:db8:e::10',
  a6: '2001:db8:e::1',
  b6: '2001:db8:e::2',
  vip4: '203.0.113.80',
  vip6: '2001:db8:ff::80',
  lanA: '192.0.2.1',
  lanB: '192.0.2.2',
  store: '192.0.2.50',
} as const;

/** A fresh client address per case: 198.51.100.(20+i). */
const clientAddr = (i: number) => `198.51.100.${20 + i}`;

interface Gateway {
  name: 'gw-a' | 'gw-b';
  ns: Netns;
  dir: string;
  ext4: string;
  ext6: string;
  config: string;
  daemon?: DaemonProcess;
}

const namespaces: Netns[] = [];
const dirs: string[] = [];
let sw: Netns;
let client: Netns;
let store: Netns;
let A: Gateway;
let B: Gateway;
let redis: ChildProcess | undefined;
let redisDir: string;
let cert: { cert: string; key: string };

function ns(label: string): Netns {
  const made = Netns.create(label);
  namespaces.push(made);
  return made;
}

/** A veth from `host` (ifname `hostIf`) to the switch, enslaved to `bridge` there. */
function plug(host: Netns, hostIf: string, swIf: string, bridge: string, v4: string, v6?: string): void {
  run('ip', ['link', 'add', hostIf, 'netns', host.name, 'type', 'veth', 'peer', 'name', swIf, 'netns', sw.name]);
  sw.ip('link', 'set', swIf, 'master', bridge, 'up');
  host.sysctl(`net.ipv6.conf.${hostIf}.accept_dad`, '0');
  host.ip('addr', 'add', `${v4}/24`, 'dev', hostIf);
  if (v6) host.ip('addr', 'add', `${v6}/64`, 'dev', hostIf, 'nodad');
  host.ip('link', 'set', hostIf, 'up');
}

function configYaml(gw: Gateway): string {
  return `global:
  interface_ext: ext0
  interface_int: lan0
  http_post_path: ${STEP1_PATH}
  https_post_path: ${STEP2_PATH}
  http_port: 80
  https_port: 443
  firewall_type: nftables
  capture: nflog
  step1_2_rate_limit_per_minute: 100
  source_prefix_v6: 128
  state_dir: ${join(gw.dir, 'state')}
  control_socket: ${join(gw.dir, 'control.sock')}
  metrics_listen: 127.0.0.1:9464
  cluster:
    gateway: ${gw.name}
    key: "${CLUSTER_KEY}"
    redis:
      url: redis://${NET.store}:6379
    prefix: "${PREFIX}"
svc:
  port: ${SVC_PORT}
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: 60
  step2_https_duration: 20
`;
}

function makeGateway(name: 'gw-a' | 'gw-b', ext4: string, ext6: string, lan4: string, swExt: string, swLan: string): Gateway {
  const gwNs = ns(name === 'gw-a' ? 'rga' : 'rgb');
  const dir = join(redisDir, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  plug(gwNs, 'ext0', swExt, 'brext', ext4, ext6);
  plug(gwNs, 'lan0', swLan, 'brlan', lan4);
  gwNs.ip('addr', 'add', `${NET.vip4}/32`, 'dev', 'lo');
  gwNs.ip('addr', 'add', `${NET.vip6}/128`, 'dev', 'lo');
  const gw: Gateway = { name, ns: gwNs, dir, ext4, ext6, config: join(dir, 'config.yaml') };
  writeFileSync(gw.config, configYaml(gw), { mode: 0o600 });
  return gw;
}

/** `launcher`: what the daemon runs under (row 4: faketime, for a clock ahead of the others'). */
async function startGateway(gw: Gateway, launcher: readonly string[] = []): Promise<void> {
  gw.daemon = spawnDaemon(gw.ns, ['-c', gw.config, '--cert', cert.cert, '--key', cert.key, '--log-level', 'debug'], launcher);
  const ready = await gw.daemon.waitForLog(/knock-port ready/, 20_000);
  if (!ready) throw new Error(`${gw.name} did not start:\n${gw.daemon.output.slice(-30).join('\n')}`);
}

async function startRedis(): Promise<void> {
  if (redis && redis.exitCode === null && redis.signalCode === null) return;
  const args = ['--port', '6379', '--bind', NET.store, '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', redisDir];
  const child = spawn('ip', ['netns', 'exec', store.name, 'redis-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  redis = child;
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const ok = await waitFor(() => output.includes('Ready to accept connections') || child.exitCode !== null, 10_000);
  if (!ok || child.exitCode !== null) throw new Error(`redis-server did not start: ${output}`);
}

async function killRedis(): Promise<void> {
  const child = redis;
  redis = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
}

function redisCli(...args: string[]): string {
  return store.exec('redis-cli', ['-h', NET.store, '-p', '6379', ...args]);
}

/** The gateway the client's route to the floating service address goes through. */
let routed: Gateway | undefined;

/** The client's route to the floating service address: through A or through B. */
function routeVia(gw: Gateway): void {
  routed = gw;
  client.ip('route', 'replace', `${NET.vip4}/32`, 'via', gw.ext4);
  client.ip('-6', 'route', 'replace', `${NET.vip6}/128`, 'via', gw.ext6);
}

const host = (addr: string) => (addr.includes(':') ? `[${addr}]` : addr);

/**
 * Step 1 from `from` to the VIP: never answered by design, so it ends when the gateway the route
 * goes through opens the step-2 window (or after KNOCK_SECONDS, which a busy machine may need);
 * step 2 then shows what it did.
 */
async function step1(from: string, key = HTTP_KEY, app = 'svc'): Promise<void> {
  const to = from.includes(':') ? NET.vip6 : NET.vip4;
  const daemon = routed?.daemon;
  if (!daemon) throw new Error('step 1 before routeVia: no gateway to watch');
  await knockStep1({ client, daemon, url: `http://${host(to)}${STEP1_PATH}`, body: `app=${app}&access_key=${key}`, from, timeoutSeconds: KNOCK_SECONDS });
}

/** Step 2 from `from`; the HTTP status ("000": nothing answered). */
async function step2(from: string, key = HTTPS_KEY, app = 'svc', to = from.includes(':') ? NET.vip6 : NET.vip4, token?: string): Promise<string> {
  const r = await execIn(
    client,
    'curl',
    [
      '-sS',
      '-k',
      '-m',
      '3',
      '--interface',
      from,
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-d',
      `app=${app}&access_key=${key}${token === undefined ? '' : `&token=${token}`}`,
      `https://${host(to)}${STEP2_PATH}`,
    ],
    6000,
  );
  return r.out.trim() || '000';
}

/** Both steps from `from` through whichever gateway the route picks. */
async function knock(from: string): Promise<string> {
  await step1(from);
  return step2(from);
}

/** What the service at `to`:`port` says to `from`: the gateway's name when open, undefined when not. */
async function banner(from: string, to: string, port = SVC_PORT): Promise<string | undefined> {
  const r = await tcpProbe(client, from, to, port, PROBE_MS);
  return r.kind === 'open' ? r.banner.trim() : undefined;
}

/** Open on gateway `gw` (its own address, whatever the route). */
async function openOn(gw: Gateway, from: string, port = SVC_PORT): Promise<boolean> {
  const to = from.includes(':') ? gw.ext6 : gw.ext4;
  return (await banner(from, to, port)) === gw.name;
}

function ctl(gw: Gateway, args: string[]): { ok: boolean; out: string; err: string } {
  return gw.ns.tryExec(process.execPath, [CLI, ...args, '--socket', join(gw.dir, 'control.sock')]);
}

function sessions(gw: Gateway): Array<Record<string, unknown>> {
  const r = ctl(gw, ['sessions', '--json']);
  if (!r.ok) throw new Error(`sessions on ${gw.name} failed: ${r.err}`);
  return JSON.parse(r.out) as Array<Record<string, unknown>>;
}

/** Waits (bounded) until `probe` holds; returns how long it took or -1. */
async function within(probe: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  const ok = await waitFor(probe, timeoutMs, 100);
  return ok ? Date.now() - started : -1;
}

/** Holds for the whole `ms` (sampled): a port that must stay closed. */
async function staysClosed(gw: Gateway, from: string, port: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  do {
    if (await openOn(gw, from, port)) return false;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < deadline);
  return true;
}

function health(gw: Gateway): HealthReport {
  return healthReportSchema.parse(JSON.parse(ctl(gw, ['health', '--json']).out));
}

/** A service grant made on A (through the route via A), open on both gateways. */
async function grantedOnBoth(from: string): Promise<void> {
  routeVia(A);
  expect(await knock(from)).toBe('200');
  expect(await openOn(A, from)).toBe(true);
  expect(await within(() => openOn(B, from), PROPAGATE_MS), 'the grant reaches B').toBeGreaterThanOrEqual(0);
}

/** Stops the store and waits (bounded) until B's health says it is unreachable. */
async function storeDown(): Promise<void> {
  await killRedis();
  expect(await within(async () => health(B).cluster?.connected === false, 10_000), 'B sees the store down').toBeGreaterThanOrEqual(0);
}

/** The revoke on B while the store is down: closed on B, its output warns, health says "not yet shared". */
function revokeOnBUnshared(from: string): void {
  // stdout and stderr both (the warning goes to stderr on success).
  const result = spawnSync('ip', ['netns', 'exec', B.ns.name, process.execPath, CLI, 'revoke', from, '--socket', join(B.dir, 'control.sock')], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  const revoked = { out: result.stdout, err: result.stderr };
  expect(result.status, revoked.err).toBe(0);
  // The service grant and the step-2 window, both shared from A.
  expect(revoked.out).toMatch(new RegExp(`^revoked ${from.replace(/\./g, '\\.')}: [12] grant\\(s\\) closed\n$`));
  expect(revoked.err).toMatch(/^warning: closed here, not yet shared/);
}

function expectUnsharedOnB(count: number): void {
  const report = health(B);
  expect(report.cluster?.unsharedRevokes, JSON.stringify(report)).toBe(count);
  expect(report.problems.some((p) => p.startsWith(REVOKES_NOT_SHARED))).toBe(count > 0);
  expect(report.healthy).toBe(false);
}

/** A silent partition: the gateway's packets to and from the store dropped (its own namespace only), no reset. */
function partition(gw: Gateway): void {
  gw.ns.exec(
    'nft',
    ['-f', '-'],
    `table inet kpt_partition {
  chain out { type filter hook output priority 0; ip daddr ${NET.store} drop; }
  chain in { type filter hook input priority 0; ip saddr ${NET.store} drop; }
}
`,
  );
}

function heal(gw: Gateway): void {
  gw.ns.tryExec('nft', ['delete', 'table', 'inet', 'kpt_partition']);
}

/** The value of one metric series on `gw` (its metrics endpoint, inside its namespace); 0 when absent. */
function metric(gw: Gateway, series: string): number {
  const text = gw.ns.exec('curl', ['-sS', '-m', '3', 'http://127.0.0.1:9464/metrics']);
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Ends the gateway's connections to the store: it reconnects, takes a snapshot and publishes its grants again. */
function dropStoreConnections(gw: Gateway): void {
  for (const role of ['cmd', 'sub']) redisCli('CLIENT', 'KILL', 'ID', ...clientIds(`knock-port:${gw.name}:${role}`));
}

function clientIds(name: string): string[] {
  return redisCli('CLIENT', 'LIST')
    .split('\n')
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /^id=(\d+) /.exec(line)?.[1] ?? '')
    .filter((id) => id !== '');
}

/** Debian's libfaketime (package faketime), for the architecture's library directory. */
function libfaketime(): string {
  const found = readdirSync('/usr/lib')
    .map((dir) => join('/usr/lib', dir, 'faketime', 'libfaketime.so.1'))
    .find((path) => existsSync(path));
  if (!found) throw new Error('libfaketime.so.1 not found under /usr/lib/*/faketime (apt-get install faketime)');
  return found;
}

/** The daemon's resident memory, in MiB. */
function rssMiB(gw: Gateway): number {
  const status = readFileSync(`/proc/${gw.daemon!.proc.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** No grant key for `from` is left in the store: the revoke deleted them. */
function grantKeysInStore(from: string): string[] {
  return redisCli('--scan', '--pattern', `${PREFIX}grant:*`)
    .split('\n')
    .filter((key) => key.includes(`:${from}:`));
}

describe.skipIf(skip)('cluster: revokes are never lost', () => {
  beforeAll(async () => {
    redisDir = mkdtempSync(join(tmpdir(), 'kp-cluster-rv-'));
    dirs.push(redisDir);
    sw = ns('rsw');
    for (const bridge of ['brext', 'brlan']) {
      sw.ip('link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0');
      sw.ip('link', 'set', bridge, 'up');
    }
    client = ns('rcl');
    store = ns('rst');
    plug(client, 'cli0', 'swcli', 'brext', NET.client4, NET.client6);
    for (let i = 0; i < 7; i++) client.ip('addr', 'add', `${clientAddr(i)}/24`, 'dev', 'cli0');
    plug(store, 'lan0', 'swst', 'brlan', NET.store);
    cert = createSelfSignedCert(redisDir, 'knock-port.cluster.test', [NET.vip4, NET.vip6, NET.a4, NET.b4]);
    A = makeGateway('gw-a', NET.a4, NET.a6, NET.lanA, 'swa', 'swla');
    B = makeGateway('gw-b', NET.b4, NET.b6, NET.lanB, 'swb', 'swlb');
    routeVia(A);
    await startRedis();
    await Promise.all([startServices(A.ns, { tcp: { [SVC_PORT]: 'gw-a\n' } }), startServices(B.ns, { tcp: { [SVC_PORT]: 'gw-b\n' } })]);
    await Promise.all([startGateway(A), startGateway(B)]);
  }, 90_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      for (const gw of [A, B]) {
        process.stderr.write(`\n--- ${gw?.name} (last log lines) ---\n${gw?.daemon?.output.slice(-25).join('\n') ?? ''}\n`);
      }
    }
  });

  afterAll(async () => {
    for (const gw of [A, B]) await gw?.daemon?.stop('SIGKILL').catch(() => undefined);
    await killRedis().catch(() => undefined);
    for (const made of namespaces) made.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('1. a revoke on B while the store is down is kept, shared once the store is back, and A closes the grant', async () => {
    const from = clientAddr(0);
    await grantedOnBoth(from);
    await storeDown();
    try {
      revokeOnBUnshared(from);
      expect(await openOn(B, from)).toBe(false);
      expectUnsharedOnB(1);
      // Nothing can carry it to A yet: A still has the grant (the limit this case documents).
      expect(await openOn(A, from)).toBe(true);
    } finally {
      await startRedis();
    }
    expect(await within(async () => !(await openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 2000), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);

  it('2. ... then B restarted before the store is back: B keeps it closed and still shares it, and A closes it', async () => {
    const from = clientAddr(1);
    await grantedOnBoth(from);
    await storeDown();
    try {
      revokeOnBUnshared(from);
      await B.daemon!.stop('SIGTERM');
      await startGateway(B);
      // The journal in B's state directory brought the revoke back.
      expect(await within(async () => health(B).cluster?.unsharedRevokes === 1, 5000), JSON.stringify(health(B))).toBeGreaterThanOrEqual(0);
      expectUnsharedOnB(1);
      expect(await openOn(B, from)).toBe(false);
    } finally {
      await startRedis();
    }
    expect(await within(async () => !(await openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    // A's republished grants (every resync) do not reopen it on B.
    expect(await Promise.all([staysClosed(B, from, SVC_PORT, 3000), staysClosed(A, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(sessions(B).filter((s) => s.ip === from && s.step === 'service')).toEqual([]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 120_000);

  it('3. the revoke keys deleted in the store, then a gateway restarted: the revoked grant stays closed', async () => {
    const from = clientAddr(2);
    await grantedOnBoth(from);
    const revoked = ctl(B, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await within(async () => !(await openOn(A, from)), PROPAGATE_MS), 'A closes the grant').toBeGreaterThanOrEqual(0);
    const revokeKeys = redisCli('--scan', '--pattern', `${PREFIX}revoke:*`)
      .split('\n')
      .filter((key) => key !== '');
    expect(revokeKeys.length).toBeGreaterThanOrEqual(1);
    redisCli('DEL', ...revokeKeys);
    for (const gw of [A, B]) {
      await gw.daemon!.stop('SIGTERM');
      await startGateway(gw);
    }
    expect(await within(async () => health(A).cluster?.synced === true && health(B).cluster?.synced === true, RECONNECT_MS)).toBeGreaterThanOrEqual(0);
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 3000), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 120_000);

  it('4. (the table’s row 3) a revoke delayed by a partition while the client knocks again: it still closes the earlier grant', async () => {
    const from = clientAddr(3);
    await grantedOnBoth(from);
    partition(B);
    try {
      expect(await within(async () => health(B).cluster?.connected === false, 5000), 'B sees the partition').toBeGreaterThanOrEqual(0);
      revokeOnBUnshared(from);
      // Meanwhile the client knocks step 1 again through A: a step-2 window signed after the revoke, stored before it.
      routeVia(A);
      await step1(from);
      expect(await openOn(A, from)).toBe(true);
    } finally {
      heal(B);
    }
    expect(await within(async () => !(await openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 2000), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(sessions(A).filter((s) => s.ip === from)).toEqual([]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);

  it('5. (row 7) a silent partition from the store is a health problem within a few seconds; the revoke missed meanwhile closes on return', async () => {
    const from = clientAddr(4);
    await grantedOnBoth(from);
    partition(A);
    try {
      const seen = await within(async () => health(A).cluster?.connected === false, 5000);
      expect(seen, 'A reports the silent partition within 5 s').toBeGreaterThanOrEqual(0);
      expect(health(A).problems.some((p) => p.startsWith(CLUSTER_DISCONNECTED))).toBe(true);
      const revoked = ctl(B, ['revoke', from]);
      expect([revoked.ok, revoked.err]).toEqual([true, '']);
      expect(await openOn(B, from)).toBe(false);
      // Nothing reaches A while it is cut off.
      expect(await openOn(A, from)).toBe(true);
    } finally {
      heal(A);
    }
    expect(await within(async () => !(await openOn(A, from)), RECONNECT_MS), 'A closes the grant from the snapshot').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(A).healthy, RECONNECT_MS), JSON.stringify(health(A).problems)).toBeGreaterThanOrEqual(0);
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 1000), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
  }, 90_000);

  it('6. (row 6) three huge values under the prefix: never fetched (memory stays flat), counted, and sharing goes on', async () => {
    const from = clientAddr(5);
    await grantedOnBoth(from);
    const HUGE_MIB = 32;
    const keys = ['grant', 'revoke', 'used-code'].map((kind) => `${PREFIX}${kind}:huge`);
    const before = rssMiB(A);
    const oversized = metric(A, 'knockport_cluster_oversized_total');
    try {
      for (const key of keys) redisCli('SETRANGE', key, String(HUGE_MIB * 1024 * 1024 - 1), 'x');
      dropStoreConnections(A);
      expect(
        await within(async () => metric(A, 'knockport_cluster_oversized_total') >= oversized + 3, RECONNECT_MS),
        'A skips the three',
      ).toBeGreaterThanOrEqual(0);
      expect(await within(async () => health(A).cluster?.synced === true, RECONNECT_MS), 'A in sync again').toBeGreaterThanOrEqual(0);
      // Reading one of them alone would take HUGE_MIB.
      expect(rssMiB(A) - before).toBeLessThan(HUGE_MIB / 2);
      const revoked = ctl(B, ['revoke', from]);
      expect(revoked.ok, revoked.err).toBe(true);
      expect(await within(async () => !(await openOn(A, from)), PROPAGATE_MS), 'A closes the grant').toBeGreaterThanOrEqual(0);
    } finally {
      redisCli('DEL', ...keys);
    }
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 500), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
  }, 90_000);

  it('7. (row 4) B’s clock 60 s ahead: health says so, A refuses its grants as from the future, A’s revoke closes B’s grant and B’s republish reopens nothing', async () => {
    const from = clientAddr(6);
    await B.daemon!.stop('SIGTERM');
    // libfaketime preloaded into B's process itself (the faketime wrapper would stand between the signal and the daemon).
    await startGateway(B, ['env', 'FAKETIME=+60s', 'FAKETIME_DONT_FAKE_MONOTONIC=1', `LD_PRELOAD=${libfaketime()}`]);
    // The last case: B stays under faketime until afterAll stops it.
    expect(await within(async () => health(B).problems.some((p) => p.startsWith(CLOCK_SKEW)), 5000), JSON.stringify(health(B))).toBeGreaterThanOrEqual(0);
    const refused = metric(A, 'knockport_cluster_rejected_total{reason="from-the-future"}');
    routeVia(B);
    expect(await knock(from)).toBe('200');
    expect(await openOn(B, from)).toBe(true);
    expect(await within(async () => metric(A, 'knockport_cluster_rejected_total{reason="from-the-future"}') > refused, PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    expect(await openOn(A, from)).toBe(false);
    // A's revoke is signed 60 s "before" B's grant by the clocks; the store ordered it after.
    const revoked = ctl(A, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await within(async () => !(await openOn(B, from)), PROPAGATE_MS), 'B closes its grant').toBeGreaterThanOrEqual(0);
    // B resyncs: publishes its live grants again; none of them is the revoked one.
    const snapshots = metric(B, 'knockport_cluster_snapshots_total');
    dropStoreConnections(B);
    expect(await within(async () => metric(B, 'knockport_cluster_snapshots_total') > snapshots, RECONNECT_MS), 'B resynced').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 2000), staysClosed(B, from, SVC_PORT, 2000)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);
});
