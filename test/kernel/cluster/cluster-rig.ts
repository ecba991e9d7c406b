/**
 * The cluster the kernel cluster tests share: two real daemons sharing their grants through a
 * real redis-server (`global.cluster`), and a client that checks what a user would: is the
 * service port open or closed?
 *
 * Topology (every address a documentation range, only inside these namespaces):
 *
 *   client ──┐                 ┌── gateway A (gw-a) ──┐
 *            ├─ switch: br-ext ┤                      ├─ switch: br-lan ── store (redis-server)
 *            │  198.51.100/24  └── gateway B (gw-b) ──┘   192.0.2/24
 *            │  2001:db8:e::/64
 *
 * Both gateways also carry a floating service address (VIP, on `lo`); the client's route to
 * the VIP picks the gateway (`routeVia`: A after `build`). Each gateway runs a local TCP service
 * on every app's port that answers with its own name, so the banner says which gateway let the
 * client in.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { Netns, run, waitFor } from '../../helpers/netns.js';
import { bracketed, execIn, startServices, tcpProbe } from '../../helpers/scenario.js';
import { CLI } from '../../helpers/sandbox.js';
import { createSelfSignedCert } from '../../../src/demo/topology.js';
import { spawnDaemon, type DaemonProcess } from '../../../src/demo/daemon-process.js';
import { healthReportSchema, type HealthReport } from '../../../src/control/protocol.js';

const STEP1_PATH = '/knock-cluster-5d1e7a';
const STEP2_PATH = '/step2-cluster-93b0c4';
/** The app every gateway serves (`svc`), with the keys of its two steps. */
export const SVC_PORT = 2222;
const HTTP_KEY = 'cluster-http-key-0123456789';
const HTTPS_KEY = 'cluster-https-key-0123456789';
const SVC: AppKeys = { app: 'svc', http: HTTP_KEY, https: HTTPS_KEY };

/** How long a grant, revoke or step-2 window made on one gateway may take to show on the other. */
export const PROPAGATE_MS = 2000;
/** The longest a step-1 knock may take to open the step-2 window. */
const KNOCK_SECONDS = 4;
/** Reconnect backoff is capped at 10 s (store-parts.ts), plus a snapshot. */
export const RECONNECT_MS = 15_000;
export const PROBE_MS = 500;

export const NET = {
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
export const clientAddr = (i: number) => `198.51.100.${20 + i}`;
export const clientAddr6 = (i: number) => `2001:db8:e::${(0x20 + i).toString(16)}`;

/** A gateway: its name and addresses from the start (a file can hold it at load time), its namespace and directory from `build`. */
export class Gateway {
  ns!: Netns;
  dir!: string;
  daemon?: DaemonProcess;

  constructor(
    readonly name: 'gw-a' | 'gw-b',
    readonly ext4: string,
    readonly ext6: string,
    readonly lan4: string,
  ) {}

  get config(): string {
    return join(this.dir, 'config.yaml');
  }
}

/** An app's name and the access keys of its step 1 (HTTP) and step 2 (HTTPS). */
export interface AppKeys {
  app: string;
  http: string;
  https: string;
}

export interface ClusterRigOptions {
  /** A letter naming this file's namespaces and directory apart from another file's running beside it. */
  tag: string;
  /** Client addresses clientAddr(0..count-1) on the client (a case each), and clientAddr6 too with `ipv6`. */
  clientAddresses: { count: number; ipv6: boolean };
  /** YAML of the apps both gateways serve besides `svc`, and their ports (each gateway's service answers there too). */
  moreApps?: { yaml: string; ports: number[] };
}

/** `knock-port <args> --socket <gw's>` inside the gateway's namespace. */
export function ctl(gw: Gateway, args: string[]): { ok: boolean; out: string; err: string } {
  return gw.ns.tryExec(process.execPath, [CLI, ...args, '--socket', join(gw.dir, 'control.sock')]);
}

export function sessions(gw: Gateway): Array<Record<string, unknown>> {
  const r = ctl(gw, ['sessions', '--json']);
  if (!r.ok) throw new Error(`sessions on ${gw.name} failed: ${r.err}`);
  return JSON.parse(r.out) as Array<Record<string, unknown>>;
}

export function health(gw: Gateway): HealthReport {
  return healthReportSchema.parse(JSON.parse(ctl(gw, ['health', '--json']).out));
}

/** Waits (bounded) until `probe` holds; returns how long it took or -1. */
export async function within(probe: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  const ok = await waitFor(probe, timeoutMs, 100);
  return ok ? Date.now() - started : -1;
}

/**
 * Made at a test file's load (making nothing yet, so a skipped file touches nothing), built and
 * torn down by the hooks `useInSuite` adds to the file's `describe`.
 */
export class ClusterRig {
  readonly clusterKey = randomBytes(32).toString('hex');
  /** The store's key prefix, fresh per run. */
  readonly prefix = `kpt-${randomBytes(3).toString('hex')}:`;
  readonly A = new Gateway('gw-a', NET.a4, NET.a6, NET.lanA);
  readonly B = new Gateway('gw-b', NET.b4, NET.b6, NET.lanB);
  client!: Netns;
  store!: Netns;
  private sw!: Netns;
  private dir: string | undefined;
  private cert!: { cert: string; key: string };
  private readonly namespaces: Netns[] = [];
  private redis: ChildProcess | undefined;
  /** The gateway the client's route to the VIP goes through: the one whose daemon step 1 watches. */
  private routed: Gateway | undefined;

  constructor(private readonly options: ClusterRigOptions) {}

  /**
   * The rig's part in the enclosing `describe`: built before its cases, both daemons' last log
   * lines printed after a case that failed, everything torn down after them (also what a failed
   * build left).
   */
  useInSuite(): void {
    beforeAll(() => this.build(), 90_000);
    afterEach((ctx) => {
      if (ctx.task.result?.state === 'fail') process.stderr.write(this.logTails());
    });
    afterAll(() => this.destroy(), 30_000);
  }

  /** The namespaces, the store and both gateways, started, with the route to the VIP via A. */
  private async build(): Promise<void> {
    const { tag, clientAddresses, moreApps } = this.options;
    this.dir = mkdtempSync(join(tmpdir(), `kp-cluster-${tag}-`));
    this.sw = this.ns(`${tag}sw`);
    for (const bridge of ['brext', 'brlan']) {
      this.sw.ip('link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0');
      this.sw.ip('link', 'set', bridge, 'up');
    }
    this.client = this.ns(`${tag}cl`);
    this.store = this.ns(`${tag}st`);
    this.plug(this.client, 'cli0', 'swcli', 'brext', NET.client4, NET.client6);
    for (let i = 0; i < clientAddresses.count; i++) {
      this.client.ip('addr', 'add', `${clientAddr(i)}/24`, 'dev', 'cli0');
      if (clientAddresses.ipv6) this.client.ip('addr', 'add', `${clientAddr6(i)}/64`, 'dev', 'cli0', 'nodad');
    }
    this.plug(this.store, 'lan0', 'swst', 'brlan', NET.store);
    this.cert = createSelfSignedCert(this.dir, 'knock-port.cluster.test', [NET.vip4, NET.vip6, NET.a4, NET.b4]);
    this.setUpGateway(this.A, 'swa', 'swla');
    this.setUpGateway(this.B, 'swb', 'swlb');
    this.routeVia(this.A);
    await this.startRedis();
    const ports = [SVC_PORT, ...(moreApps?.ports ?? [])];
    await Promise.all([this.A, this.B].map((gw) => startServices(gw.ns, { tcp: Object.fromEntries(ports.map((port) => [port, `${gw.name}\n`])) })));
    await Promise.all([this.startGateway(this.A), this.startGateway(this.B)]);
  }

  /** Everything `build` made, whatever it got to. */
  private async destroy(): Promise<void> {
    for (const gw of [this.A, this.B]) await gw.daemon?.stop('SIGKILL').catch(() => undefined);
    await this.killRedis().catch(() => undefined);
    for (const made of this.namespaces) made.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Both daemons' last log lines: what a failed case prints. */
  private logTails(): string {
    return [this.A, this.B].map((gw) => `\n--- ${gw.name} (last log lines) ---\n${gw.daemon?.output.slice(-25).join('\n') ?? ''}\n`).join('');
  }

  /** `launcher`: what the daemon runs under (e.g. libfaketime, for a clock ahead of the others'). */
  async startGateway(gw: Gateway, launcher: readonly string[] = []): Promise<void> {
    gw.daemon = spawnDaemon(gw.ns, ['-c', gw.config, '--cert', this.cert.cert, '--key', this.cert.key, '--log-level', 'debug'], launcher);
    const ready = await gw.daemon.waitForLog(/knock-port ready/, 20_000);
    if (!ready) throw new Error(`${gw.name} did not start:\n${gw.daemon.output.slice(-30).join('\n')}`);
  }

  /** Starts the store unless it runs; empty each time (no persistence). */
  async startRedis(): Promise<void> {
    if (this.redis && this.redis.exitCode === null && this.redis.signalCode === null) return;
    const args = ['--port', '6379', '--bind', NET.store, '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', this.dir!];
    const child = spawn('ip', ['netns', 'exec', this.store.name, 'redis-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.redis = child;
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const ok = await waitFor(() => output.includes('Ready to accept connections') || child.exitCode !== null, 10_000);
    if (!ok || child.exitCode !== null) throw new Error(`redis-server did not start: ${output}`);
  }

  /** The store gone at once (SIGKILL): the outage the gateways must ride out. */
  async killRedis(): Promise<void> {
    const child = this.redis;
    this.redis = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  }

  redisCli(...args: string[]): string {
    return this.store.exec('redis-cli', ['-h', NET.store, '-p', '6379', ...args]);
  }

  /** The client's route to the floating service address: through A or through B. */
  routeVia(gw: Gateway): void {
    this.routed = gw;
    this.client.ip('route', 'replace', `${NET.vip4}/32`, 'via', gw.ext4);
    this.client.ip('-6', 'route', 'replace', `${NET.vip6}/128`, 'via', gw.ext6);
  }

  /**
   * Step 1 from `from` to the VIP: never answered by design, so it ends when the gateway the route
   * goes through opens the step-2 window (or after KNOCK_SECONDS, which a busy machine may need);
   * step 2 then shows what it did.
   */
  async step1(from: string, key = SVC.http, app = SVC.app): Promise<void> {
    const to = from.includes(':') ? NET.vip6 : NET.vip4;
    const daemon = this.routed?.daemon;
    if (!daemon) throw new Error('step 1 before routeVia: no gateway to watch');
    await knockStep1({
      client: this.client,
      daemon,
      url: `http://${bracketed(to)}${STEP1_PATH}`,
      body: `app=${app}&access_key=${key}`,
      from,
      timeoutSeconds: KNOCK_SECONDS,
    });
  }

  /** Step 2 from `from`; the HTTP status ("000": nothing answered). */
  async step2(from: string, key = SVC.https, app = SVC.app, to = from.includes(':') ? NET.vip6 : NET.vip4, token?: string): Promise<string> {
    const body = `app=${app}&access_key=${key}${token === undefined ? '' : `&token=${token}`}`;
    const args = ['-sS', '-k', '-m', '3', '--interface', from, '-o', '/dev/null', '-w', '%{http_code}', '-d', body, `https://${bracketed(to)}${STEP2_PATH}`];
    const r = await execIn(this.client, 'curl', args, 6000);
    return r.out.trim() || '000';
  }

  /** Both steps from `from` through whichever gateway the route picks. */
  async knock(from: string, keys: AppKeys = SVC): Promise<string> {
    await this.step1(from, keys.http, keys.app);
    return this.step2(from, keys.https, keys.app);
  }

  /** What the service at `to`:`port` says to `from`: the gateway's name when open, undefined when not. */
  async banner(from: string, to: string, port = SVC_PORT): Promise<string | undefined> {
    const r = await tcpProbe(this.client, from, to, port, PROBE_MS);
    return r.kind === 'open' ? r.banner.trim() : undefined;
  }

  /** Open on gateway `gw` (its own address, whatever the route). */
  async openOn(gw: Gateway, from: string, port = SVC_PORT): Promise<boolean> {
    const to = from.includes(':') ? gw.ext6 : gw.ext4;
    return (await this.banner(from, to, port)) === gw.name;
  }

  /** Holds for the whole `ms` (sampled): a port that must stay closed. */
  async staysClosed(gw: Gateway, from: string, port: number, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    do {
      if (await this.openOn(gw, from, port)) return false;
      await new Promise((r) => setTimeout(r, 200));
    } while (Date.now() < deadline);
    return true;
  }

  private ns(label: string): Netns {
    const made = Netns.create(label);
    this.namespaces.push(made);
    return made;
  }

  /** A veth from `host` (ifname `hostIf`) to the switch, enslaved to `bridge` there. */
  private plug(host: Netns, hostIf: string, swIf: string, bridge: string, v4: string, v6?: string): void {
    run('ip', ['link', 'add', hostIf, 'netns', host.name, 'type', 'veth', 'peer', 'name', swIf, 'netns', this.sw.name]);
    this.sw.ip('link', 'set', swIf, 'master', bridge, 'up');
    host.sysctl(`net.ipv6.conf.${hostIf}.accept_dad`, '0');
    host.ip('addr', 'add', `${v4}/24`, 'dev', hostIf);
    if (v6) host.ip('addr', 'add', `${v6}/64`, 'dev', hostIf, 'nodad');
    host.ip('link', 'set', hostIf, 'up');
  }

  /** `gw`'s namespace on both switches, the VIP on its `lo`, its directory and config. */
  private setUpGateway(gw: Gateway, swExt: string, swLan: string): void {
    gw.ns = this.ns(`${this.options.tag}g${gw.name.slice(-1)}`);
    gw.dir = join(this.dir!, gw.name);
    mkdirSync(gw.dir, { recursive: true, mode: 0o700 });
    this.plug(gw.ns, 'ext0', swExt, 'brext', gw.ext4, gw.ext6);
    this.plug(gw.ns, 'lan0', swLan, 'brlan', gw.lan4);
    gw.ns.ip('addr', 'add', `${NET.vip4}/32`, 'dev', 'lo');
    gw.ns.ip('addr', 'add', `${NET.vip6}/128`, 'dev', 'lo');
    writeFileSync(gw.config, this.configYaml(gw), { mode: 0o600 });
  }

  private configYaml(gw: Gateway): string {
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
    key: "${this.clusterKey}"
    redis:
      url: redis://${NET.store}:6379
    prefix: "${this.prefix}"
svc:
  port: ${SVC_PORT}
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: 60
  step2_https_duration: 20
${this.options.moreApps?.yaml ?? ''}`;
  }
}
