/**
 * Two real daemons sharing their grants through a real redis-server (`global.cluster`), seen
 * from a client the way a user would check it: is the service port open or closed?
 *
 * Topology (every address a documentation range, only inside these namespaces):
 *
 *   client ──┐                 ┌── gateway A (gw-a) ──┐
 *            ├─ switch: br-ext ┤                      ├─ switch: br-lan ── store (redis-server)
 *            │  198.51.100/24  └── gateway B (gw-b) ──┘   192.0.2/24
 *            │  2001:db8:e::/64
 *
 * Both gateways also carry a floating service address (VIP, on `lo`); the client's route to
 * the VIP picks the gateway (via A by default; moving it to B is the failover case). Each
 * gateway runs a local TCP service that answers with its own name, so the banner says which
 * gateway let the client in. Every case uses a client address of its own, so no case sees
 * another's grant.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, Netns, run, waitFor } from '../../helpers/netns.js';
import { execIn, startServices, tcpProbe } from '../../helpers/scenario.js';
import { CLI } from '../../helpers/sandbox.js';
import { createSelfSignedCert } from '../../../src/demo/topology.js';
import { spawnDaemon, type DaemonProcess } from '../../../src/demo/daemon-process.js';
import { totpAt } from '../../../src/auth/totp.js';
import { base32Encode } from '../../../src/shared/otp-format.js';
import { healthReportSchema, type HealthReport } from '../../../src/control/protocol.js';
import { CLUSTER_DISCONNECTED } from '../../../src/cluster/sync.js';

const FILE = 'cluster/gateways';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'redis-server', 'redis-cli', 'curl', 'openssl']));

const STEP1_PATH = '/knock-cluster-5d1e7a';
const STEP2_PATH = '/step2-cluster-93b0c4';
const HTTP_KEY = 'cluster-http-key-0123456789';
const HTTPS_KEY = 'cluster-https-key-0123456789';
const SHORT_HTTP_KEY = 'short-http-key-0123456789';
const SHORT_HTTPS_KEY = 'short-https-key-0123456789';
const CLUSTER_KEY = randomBytes(32).toString('hex');
const PREFIX = `kpt-${randomBytes(3).toString('hex')}:`;
const SVC_PORT = 2222;
const SHORT_PORT = 2223;
const SHORT_DURATION = 3;
const OTP_PORT = 2224;
const OTP_HTTP_KEY = 'otp-http-key-0123456789';
const OTP_HTTPS_KEY = 'otp-https-key-0123456789';
/** carol's TOTP secret (step 2 `token`), fresh per run. */
const OTP_SECRET = base32Encode(randomBytes(20));

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
const clientAddr6 = (i: number) => `2001:db8:e::${(0x20 + i).toString(16)}`;

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
brief:
  port: ${SHORT_PORT}
  access_key_http: [${SHORT_HTTP_KEY}]
  access_key_https: [${SHORT_HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: ${SHORT_DURATION}
  step2_https_duration: 20
otp:
  port: ${OTP_PORT}
  protocol: tcp
  destination: local
  duration: 60
  step2_https_duration: 20
  users:
    - name: carol
      access_key_http: ${OTP_HTTP_KEY}
      access_key_https: ${OTP_HTTPS_KEY}
      totp_secret: ${OTP_SECRET}
`;
}

function makeGateway(name: 'gw-a' | 'gw-b', ext4: string, ext6: string, lan4: string, swExt: string, swLan: string): Gateway {
  const gwNs = ns(name === 'gw-a' ? 'cga' : 'cgb');
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

async function startGateway(gw: Gateway): Promise<void> {
  gw.daemon = spawnDaemon(gw.ns, ['-c', gw.config, '--cert', cert.cert, '--key', cert.key, '--log-level', 'debug']);
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
async function knock(from: string, app: 'svc' | 'brief' = 'svc'): Promise<string> {
  const [k1, k2] = app === 'svc' ? [HTTP_KEY, HTTPS_KEY] : [SHORT_HTTP_KEY, SHORT_HTTPS_KEY];
  await step1(from, k1, app);
  return step2(from, k2, app);
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

function metrics(gw: Gateway): string {
  return gw.ns.tryExec('curl', ['-sS', '-m', '2', 'http://127.0.0.1:9464/metrics']).out;
}

/** Sum of every series of a counter (all label sets). */
function counterSum(text: string, name: string): number {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm');
  return [...text.matchAll(re)].reduce((sum, m) => sum + Number(m[1]), 0);
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

describe.skipIf(skip)('cluster: two gateways, one store', () => {
  beforeAll(async () => {
    redisDir = mkdtempSync(join(tmpdir(), 'kp-cluster-gw-'));
    dirs.push(redisDir);
    sw = ns('csw');
    for (const bridge of ['brext', 'brlan']) {
      sw.ip('link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0');
      sw.ip('link', 'set', bridge, 'up');
    }
    client = ns('ccl');
    store = ns('cst');
    plug(client, 'cli0', 'swcli', 'brext', NET.client4, NET.client6);
    for (let i = 0; i < 8; i++) {
      client.ip('addr', 'add', `${clientAddr(i)}/24`, 'dev', 'cli0');
      client.ip('addr', 'add', `${clientAddr6(i)}/64`, 'dev', 'cli0', 'nodad');
    }
    plug(store, 'lan0', 'swst', 'brlan', NET.store);
    cert = createSelfSignedCert(redisDir, 'knock-port.cluster.test', [NET.vip4, NET.vip6, NET.a4, NET.b4]);
    A = makeGateway('gw-a', NET.a4, NET.a6, NET.lanA, 'swa', 'swla');
    B = makeGateway('gw-b', NET.b4, NET.b6, NET.lanB, 'swb', 'swlb');
    routeVia(A);
    await startRedis();
    await Promise.all([
      startServices(A.ns, { tcp: { [SVC_PORT]: 'gw-a\n', [SHORT_PORT]: 'gw-a\n', [OTP_PORT]: 'gw-a\n' } }),
      startServices(B.ns, { tcp: { [SVC_PORT]: 'gw-b\n', [SHORT_PORT]: 'gw-b\n', [OTP_PORT]: 'gw-b\n' } }),
    ]);
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

  it('the service is closed on both gateways before any knock', async () => {
    expect(await Promise.all([openOn(A, NET.client4), openOn(B, NET.client4)])).toEqual([false, false]);
  });

  it('1. a grant made on A lets the client in through B (route moved) without a new knock', async () => {
    for (const [from, vip] of [
      [clientAddr(0), NET.vip4],
      [clientAddr6(0), NET.vip6],
    ] as const) {
      routeVia(A);
      expect(await banner(from, vip)).toBeUndefined();
      expect(await knock(from)).toBe('200');
      expect(await banner(from, vip)).toBe('gw-a');
      routeVia(B);
      // The failover: the same client, now routed through B, gets in without knocking again.
      expect(await within(async () => (await banner(from, vip)) === 'gw-b', PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    }
    const listed = sessions(B).filter((s) => s.ip === clientAddr(0) && s.app === 'svc' && s.step === 'service');
    expect(listed, JSON.stringify(sessions(B))).toHaveLength(1);
    expect(listed[0]!.gateway).toBe('gw-a');
    // The table an operator reads says which gateway made the grant.
    const table = ctl(B, ['sessions']).out.split('\n');
    expect(table[0]).toMatch(/GATEWAY$/);
    expect(table.find((line) => line.startsWith(`${clientAddr(0)} `) && / service /.test(line))).toMatch(/ gw-a$/);
    routeVia(A);
  }, 30_000);

  it('2. step 1 on A, step 2 on B: B accepts (the step-2 window is shared) and the service opens on both', async () => {
    const from = clientAddr(1);
    routeVia(A);
    await step1(from);
    routeVia(B);
    // The step-2 window opened on A reaches B: B's HTTPS port answers this client...
    const httpsOpen = async () => (await tcpProbe(client, from, NET.vip4, 443, PROBE_MS)).kind === 'open';
    expect(await within(httpsOpen, PROPAGATE_MS), "B's HTTPS port opens for the client").toBeGreaterThanOrEqual(0);
    // ...and B accepts step 2.
    expect(await step2(from)).toBe('200');
    expect(await openOn(B, from)).toBe(true);
    expect(await within(() => openOn(A, from), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    routeVia(A);
  }, 30_000);

  it('3. a revoke on B closes A too', async () => {
    const from = clientAddr(2);
    routeVia(A);
    expect(await knock(from)).toBe('200');
    expect(await openOn(A, from)).toBe(true);
    expect(await within(() => openOn(B, from), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    const revoked = ctl(B, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await openOn(B, from)).toBe(false);
    expect(await within(async () => !(await openOn(A, from)), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it('4. store down: each gateway works alone, A reports the cluster degraded; store back: the grant made meanwhile reaches B', async () => {
    const from = clientAddr(3);
    const fromB = clientAddr(4);
    await killRedis();
    try {
      routeVia(A);
      expect(await knock(from)).toBe('200');
      expect(await openOn(A, from)).toBe(true);
      // B alone still works too.
      routeVia(B);
      expect(await knock(fromB)).toBe('200');
      expect(await openOn(B, fromB)).toBe(true);
      routeVia(A);

      // Degraded, as `knock-port health --json` reports it: the store link down, the problem named.
      let health: HealthReport | undefined;
      const degraded = await within(async () => {
        health = healthReportSchema.parse(JSON.parse(ctl(A, ['health', '--json']).out));
        return health.cluster?.connected === false;
      }, 10_000);
      expect(degraded, `health on A: ${JSON.stringify(health)}`).toBeGreaterThanOrEqual(0);
      expect(health!.cluster).toMatchObject({ gateway: 'gw-a', connected: false, synced: false });
      expect(health!.healthy).toBe(false);
      expect(health!.problems.filter((problem) => problem.startsWith(CLUSTER_DISCONNECTED))).toHaveLength(1);
      // The grant made during the outage is not on B yet (nothing could carry it).
      expect(await openOn(B, from)).toBe(false);
    } finally {
      await startRedis();
    }
    expect(await within(() => openOn(B, from), RECONNECT_MS), 'the grant made on A during the outage reaches B').toBeGreaterThanOrEqual(0);
    expect(await within(() => openOn(A, fromB), RECONNECT_MS), 'and the one made on B reaches A').toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('5. a forged grant written straight into the store opens nothing and is counted', async () => {
    const from = clientAddr(5);
    // Make sure both are connected again (case 4 may have left a reconnect pending).
    expect(await within(async () => redisCli('PING').trim() === 'PONG', 5000)).toBeGreaterThanOrEqual(0);
    const before = { a: counterSum(metrics(A), 'knockport_cluster_rejected_total'), b: counterSum(metrics(B), 'knockport_cluster_rejected_total') };
    const now = Date.now();
    const body = { kind: 'service', ip: from, app: 'svc', user: 'default', expiresAt: now + 60_000, gateway: 'gw-a', issuedAt: now };
    const forgeries = [
      { id: `forged-unsigned-${now}`, text: JSON.stringify({ v: 1, type: 'grant', body }) },
      { id: `forged-badsig-${now}`, text: JSON.stringify({ v: 1, type: 'grant', body, sig: randomBytes(32).toString('hex') }) },
    ];
    for (const { id, text } of forgeries) {
      redisCli('SET', `${PREFIX}grant:${id}`, text, 'PX', '60000');
      const announcement = JSON.stringify({ v: 1, g: 'gw-x', k: 'grant', i: id, t: text, p: Date.now() });
      redisCli('PUBLISH', `${PREFIX}announce`, announcement);
    }
    expect(await Promise.all([staysClosed(A, from, SVC_PORT, 1500), staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    const after = { a: counterSum(metrics(A), 'knockport_cluster_rejected_total'), b: counterSum(metrics(B), 'knockport_cluster_rejected_total') };
    const exposed = /knockport_cluster_rejected_total/.test(metrics(A) + metrics(B));
    expect(exposed, 'knockport_cluster_rejected_total is exposed').toBe(true);
    expect(after.a - before.a, 'rejections counted on A').toBeGreaterThanOrEqual(2);
    expect(after.b - before.b, 'rejections counted on B').toBeGreaterThanOrEqual(2);
    // Back in the cluster, health says so in a line of its own.
    const healthy = await within(async () => /^cluster: gateway gw-a, store connected, in sync/m.test(ctl(A, ['health']).out), RECONNECT_MS);
    expect(healthy, ctl(A, ['health']).out).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it('6. an expired grant never comes back after a restart', async () => {
    const from = clientAddr(6);
    routeVia(A);
    expect(await knock(from, 'brief')).toBe('200');
    expect(await openOn(A, from, SHORT_PORT)).toBe(true);
    expect(await within(() => openOn(B, from, SHORT_PORT), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    // Closed on both once `duration` is over.
    expect(
      await within(async () => !(await openOn(A, from, SHORT_PORT)) && !(await openOn(B, from, SHORT_PORT)), (SHORT_DURATION + 3) * 1000),
    ).toBeGreaterThanOrEqual(0);

    await B.daemon!.stop('SIGTERM');
    await startGateway(B);
    // After its start (state file, snapshot of the store), B keeps it closed.
    expect(await staysClosed(B, from, SHORT_PORT, 3000)).toBe(true);
    // Only the step-2 window (20 s) may still be listed; the service grant is gone.
    const service = sessions(B).filter((s) => s.ip === from && s.step === 'service');
    expect(service, JSON.stringify(service)).toHaveLength(0);
    expect(await openOn(A, from, SHORT_PORT)).toBe(false);
  }, 60_000);

  it('7. a one-time code used in step 2 on A is refused on B: a sniffed or replayed token opens nothing', async () => {
    const user = clientAddr(7);
    const replayer = clientAddr6(7);
    routeVia(A);
    await step1(user, OTP_HTTP_KEY, 'otp');
    const token = totpAt(OTP_SECRET, Date.now() / 1000);
    expect(await step2(user, OTP_HTTPS_KEY, 'otp', NET.vip4, token)).toBe('200');
    expect(await openOn(A, user, OTP_PORT)).toBe(true);
    // Another client holding both keys and the same token, through B: step 1 opens B's HTTPS
    // port, step 2 is refused, and the service stays closed to it on both gateways.
    routeVia(B);
    await new Promise((r) => setTimeout(r, 300)); // the code's claim reaches B (p99 of a grant is ms)
    await step1(replayer, OTP_HTTP_KEY, 'otp');
    expect(await within(async () => (await tcpProbe(client, replayer, NET.vip6, 443, PROBE_MS)).kind === 'open', PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    expect(await step2(replayer, OTP_HTTPS_KEY, 'otp', NET.vip6, token)).toBe('403');
    expect(await Promise.all([staysClosed(B, replayer, OTP_PORT, 1000), openOn(A, replayer, OTP_PORT)])).toEqual([true, false]);
    routeVia(A);
  }, 30_000);
});
