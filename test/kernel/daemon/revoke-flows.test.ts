/**
 * Revoke means closed: the real daemon in the gateway namespace, long-lived TCP and UDP
 * flows (data both ways, a line or datagram every 200 ms, echoed) to a local app and to
 * forwarded apps on the LAN host, IPv4 and IPv6. `knock-port revoke` and a reload that drops
 * an app or a user must stop the address's flows within seconds and keep new connections
 * out, while another address's flows go on. Conntrack runs only inside these namespaces.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, waitFor, type Netns } from '../../helpers/netns.js';
import { bracketed, curlFrom, execIn, runUntilReady, tcpProbe, udpEchoes } from '../../helpers/scenario.js';
import { spawnDaemon } from '../../../src/demo/daemon-process.js';
import { ADDR, CLI, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('daemon/revoke-flows', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'conntrack', 'ss']));

const STEP1_PATH = '/rf-knock-5d81c2';
/** The longest a step-1 knock may take to open the step-2 window. */
const KNOCK_SECONDS = 4;
const STEP2_PATH = '/rf-open-a04e97';
/** Long grants: nothing in this file may close by expiry. */
const DURATION = 600;
const WINDOW = 20;
/** A second address of each family on the client, whose flows a revoke must not touch. */
const OTHER6 = '2001:db8:1::3';

const PORT = { localTcp: 7001, localUdp: 7002, fwdTcp4: 7003, fwdTcp6: 7004, fwdUdp4: 7005, fwdUdp6: 7006, lanTcp: 7003, lanUdp: 7005, pushUdp: 7007 } as const;

const USERS = {
  alice: { http: 'alice-http-key-83d1f0a2', https: 'alice-https-key-5be0c947' },
  bob: { http: 'bob-http-key-2e97a6b1', https: 'bob-https-key-c41d08f3' },
} as const;
type UserName = keyof typeof USERS;

interface AppSpec {
  name: string;
  port: number;
  protocol: 'tcp' | 'udp';
  destination: string;
}

const APPS: AppSpec[] = [
  { name: 'localtcp', port: PORT.localTcp, protocol: 'tcp', destination: 'local' },
  { name: 'localudp', port: PORT.localUdp, protocol: 'udp', destination: 'local' },
  { name: 'fwdtcp4', port: PORT.fwdTcp4, protocol: 'tcp', destination: `${ADDR.lan4}:${PORT.lanTcp}` },
  { name: 'fwdtcp6', port: PORT.fwdTcp6, protocol: 'tcp', destination: `[${ADDR.lan6}]:${PORT.lanTcp}` },
  { name: 'fwdudp4', port: PORT.fwdUdp4, protocol: 'udp', destination: `${ADDR.lan4}:${PORT.lanUdp}` },
  { name: 'fwdudp6', port: PORT.fwdUdp6, protocol: 'udp', destination: `[${ADDR.lan6}]:${PORT.lanUdp}` },
  // A local UDP server that also sends on its own, as an OpenVPN server's keepalives do.
  { name: 'pushudp', port: PORT.pushUdp, protocol: 'udp', destination: 'local' },
];

function configYaml(sandbox: Sandbox, firewall: string, apps: Array<AppSpec & { users: UserName[] }>): string {
  const app = (a: AppSpec & { users: UserName[] }) =>
    `${a.name}:\n  port: ${a.port}\n  protocol: ${a.protocol}\n  destination: '${a.destination}'\n  duration: ${DURATION}\n  step2_https_duration: ${WINDOW}\n  users:\n` +
    a.users.map((u) => `    - name: ${u}\n      access_key_http: ${USERS[u].http}\n      access_key_https: ${USERS[u].https}\n`).join('');
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: firewall, capture: 'nflog' })}${apps.map(app).join('')}`;
}

const everyone = APPS.map((a) => ({ ...a, users: ['alice', 'bob'] as UserName[] }));

/** Echo servers (TCP and UDP, dual-stack) inside `ns`; resolves once they listen. */
async function startEchoServers(ns: Netns, tcp: number[], udp: number[]): Promise<void> {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    let pending = ${tcp.length + udp.length};
    const ready = () => { if (--pending === 0) console.log('ready'); };
    for (const port of ${JSON.stringify(tcp)}) {
      net.createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen({ port, host: '::', ipv6Only: false }, ready);
    }
    for (const port of ${JSON.stringify(udp)}) {
      const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
      u.on('error', () => {});
      u.on('message', (m, r) => u.send(m, r.port, r.address));
      u.bind(port, '::', ready);
    }`;
  await runUntilReady(ns, script, 'echo servers');
}

/** A UDP echo server on the gateway that also sends `keepalive` to every peer it has seen, every 200 ms. */
function startPushingServer(ns: Netns, port: number): void {
  const script = `
    const u = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: false });
    const peers = new Map();
    u.on('error', () => {});
    u.on('message', (m, r) => { peers.set(r.address + ' ' + r.port, r); u.send(m, r.port, r.address); });
    setInterval(() => { for (const r of peers.values()) u.send('keepalive', r.port, r.address); }, 200);
    u.bind(${port}, '::');`;
  ns.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

interface FlowSpec {
  id: string;
  proto: 'tcp' | 'udp';
  from: string;
  host: string;
  port: number;
}

interface FlowState {
  /** Echoes received. */
  rx: number;
  /** When the last echo arrived (ms since the epoch; this host's clock, shared by the namespaces). */
  last: number;
  /** Why a TCP connection ended (ECONNRESET, ...), null while open. */
  closed: string | null;
}

/**
 * Long-lived flows from one client address: each sends a line (TCP) or a datagram (UDP) every
 * 200 ms and counts the echoes; the state of every flow is printed ten times a second.
 */
const FLOW_RUNNER = `
const net = require('node:net'), dgram = require('node:dgram');
const state = {};
for (const f of JSON.parse(process.argv[1])) {
  const s = (state[f.id] = { rx: 0, last: 0, closed: null });
  const got = () => { s.rx++; s.last = Date.now(); };
  if (f.proto === 'tcp') {
    const sock = net.connect({ host: f.host, port: f.port, localAddress: f.from });
    sock.setNoDelay(true);
    let n = 0;
    const timer = setInterval(() => sock.readyState === 'open' && sock.write(n++ + '\\n'), 200);
    sock.on('data', got);
    sock.on('error', (e) => { s.closed = e.code || e.message; });
    sock.on('close', () => { s.closed = s.closed || 'closed'; clearInterval(timer); });
  } else {
    const sock = dgram.createSocket(f.host.includes(':') ? 'udp6' : 'udp4');
    sock.on('error', () => {});
    sock.on('message', (m) => String(m) === 'ping' && got()); // echoes only, not a server's own datagrams
    sock.bind(0, f.from, () => setInterval(() => sock.send('ping', f.port, f.host), 200));
  }
}
setInterval(() => console.log(JSON.stringify(state)), 100);`;

class Flows {
  private latest: Record<string, FlowState> = {};
  private constructor(
    readonly specs: FlowSpec[],
    private readonly child: ChildProcess,
  ) {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      const last = lines.filter(Boolean).pop();
      if (last) this.latest = JSON.parse(last) as Record<string, FlowState>;
    });
  }

  static start(client: Netns, specs: FlowSpec[]): Flows {
    return new Flows(specs, client.spawn(process.execPath, ['-e', FLOW_RUNNER, JSON.stringify(specs)], { stdio: ['ignore', 'pipe', 'ignore'] }));
  }

  state(id: string): FlowState {
    return this.latest[id] ?? { rx: 0, last: 0, closed: null };
  }

  /** True when every flow got an echo within the last `ms`. */
  allFlowing(ms = 1000, ids = this.specs.map((s) => s.id)): boolean {
    const now = Date.now();
    return ids.every((id) => this.state(id).rx > 0 && now - this.state(id).last < ms && this.state(id).closed === null);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** The flows of one client address: TCP and UDP to the local apps and to its family's forwarded apps. */
function flowsOf(from: string, apps = ['localtcp', 'localudp', 'fwdtcp', 'fwdudp']): FlowSpec[] {
  const v6 = from.includes(':');
  const gw = v6 ? ADDR.gwWan6 : ADDR.gwWan4;
  const all: FlowSpec[] = [
    { id: `${from} localtcp`, proto: 'tcp', from, host: gw, port: PORT.localTcp },
    { id: `${from} localudp`, proto: 'udp', from, host: gw, port: PORT.localUdp },
    { id: `${from} fwdtcp`, proto: 'tcp', from, host: gw, port: v6 ? PORT.fwdTcp6 : PORT.fwdTcp4 },
    { id: `${from} fwdudp`, proto: 'udp', from, host: gw, port: v6 ? PORT.fwdUdp6 : PORT.fwdUdp4 },
    { id: `${from} pushudp`, proto: 'udp', from, host: gw, port: PORT.pushUdp },
  ];
  return all.filter((f) => apps.includes(f.id.split(' ')[1]!));
}

function appName(flow: FlowSpec): string {
  const kind = flow.id.split(' ')[1]!;
  return kind.startsWith('fwd') ? `${kind}${flow.from.includes(':') ? 6 : 4}` : kind;
}

const BACKENDS = [
  { name: 'nftables', firewall: 'nftables', args: [] as string[] },
  { name: 'iptables-nft', firewall: 'iptables', args: ['--iptables-variant', 'nft'] },
];

describe.skipIf(skip).each(BACKENDS)('revoke ends established flows: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;
  const running: Flows[] = [];
  /** What each test saw, printed after it: when the last echo came, and how the flow ended. */
  const measured: string[] = [];
  const controlSocket = () => join(sandbox.dir, 'control.sock');
  const runArgs = () => ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args];

  /**
   * Both steps from `from` for `app` as `user`; step 1 ends when the daemon opens the step-2
   * window (a busy machine may take seconds: the limit costs nothing when it is quick), step 2 says OK.
   */
  async function knock(from: string, app: string, user: UserName): Promise<void> {
    const gw = from.includes(':') ? ADDR.gwWan6 : ADDR.gwWan4;
    const base = (scheme: string, path: string) => `${scheme}://${bracketed(gw)}${path}`;
    const body = `app=${app}&access_key=${USERS[user].http}`;
    if (!(await knockStep1({ client: sandbox.client, daemon, url: base('http', STEP1_PATH), body, from, timeoutSeconds: KNOCK_SECONDS }))) {
      throw new Error(`step 1 for ${app} from ${from} as ${user} opened no step-2 window:\n${daemon.output.slice(-10).join('\n')}`);
    }
    const step2 = await curlFrom(sandbox.client, from, ['-k', '-d', `app=${app}&access_key=${USERS[user].https}`, base('https', STEP2_PATH)], 3);
    if (step2.status !== '200') throw new Error(`step 2 for ${app} from ${from} as ${user} answered ${step2.status}:\n${daemon.output.slice(-10).join('\n')}`);
  }

  async function startFlows(from: string, user: UserName, apps?: string[]): Promise<Flows> {
    const specs = flowsOf(from, apps);
    for (const flow of specs) await knock(from, appName(flow), user);
    const flows = Flows.start(sandbox.client, specs);
    running.push(flows);
    if (!(await waitFor(() => flows.allFlowing(), 10_000, 100))) {
      throw new Error(`flows from ${from} did not start: ${JSON.stringify(specs.map((s) => [s.id, flows.state(s.id)]))}`);
    }
    return flows;
  }

  async function cli(args: string[]): Promise<string> {
    const r = await execIn(sandbox.gw, process.execPath, [CLI, ...args, '--socket', controlSocket()]);
    if (!r.ok) throw new Error(`knock-port ${args.join(' ')} failed: ${r.err}`);
    return r.out;
  }

  /**
   * After `doneAt` (the revoke or reload has returned), the flows get no echo more than one
   * 200 ms interval later: they stopped within the interval, and stay stopped for `watchMs`.
   */
  async function expectStopped(flows: Flows, ids: string[], doneAt: number, watchMs = 3000): Promise<void> {
    await new Promise((r) => setTimeout(r, watchMs));
    for (const id of ids) {
      const s = flows.state(id);
      measured.push(`${id}: last echo ${s.last - doneAt} ms after the command returned, ${s.closed ?? 'not closed (stalled)'}`);
      expect(s.last - doneAt, `${id} still got an echo ${s.last - doneAt} ms after the command returned`).toBeLessThan(250);
      // Local TCP: its socket on the gateway is destroyed, so the client's connection ends
      // (a RST: ECONNRESET, or EOF when a write consumed the reset first) instead of stalling.
      if (id.endsWith('localtcp')) expect(s.closed, `${id} did not end: it stalled`).not.toBeNull();
    }
  }

  /** A new connection (TCP) or a new datagram (UDP) from `from` gets nothing back. */
  async function expectNoNewFlow(flow: FlowSpec): Promise<void> {
    if (flow.proto === 'tcp') expect((await tcpProbe(sandbox.client, flow.from, flow.host, flow.port, 800)).kind, flow.id).not.toBe('open');
    else expect(await udpEchoes(sandbox.client, flow.from, flow.host, flow.port, 800), flow.id).toBe(false);
  }

  beforeAll(async () => {
    sandbox = createSandbox(`rf${backend.firewall.slice(0, 1)}`);
    sandbox.client.ip('addr', 'add', `${OTHER6}/64`, 'dev', IF.clientWan, 'nodad');
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, everyone));
    await startEchoServers(sandbox.gw, [PORT.localTcp], [PORT.localUdp]);
    startPushingServer(sandbox.gw, PORT.pushUdp);
    await startEchoServers(sandbox.lan, [PORT.lanTcp], [PORT.lanUdp]);
    daemon = startDaemon(sandbox, runArgs());
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    for (const flows of running.splice(0)) flows.stop();
    if (measured.length > 0) process.stdout.write(`[${backend.name}] ${ctx.task.name}\n  ${measured.splice(0).join('\n  ')}\n`);
    if (ctx.task.result?.state === 'fail') {
      console.log(daemon.output.slice(-20).join('\n'), sandbox.gw.tryExec('conntrack', ['-L']).out);
    }
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it("knock-port revoke ends the address's local and forwarded TCP and UDP flows, IPv4 and IPv6; others flow on", async () => {
    const [revoked4, revoked6, other4, other6] = await Promise.all([
      startFlows(ADDR.client4, 'alice'),
      startFlows(ADDR.client6, 'alice'),
      startFlows(ADDR.client4b, 'bob'),
      startFlows(OTHER6, 'bob'),
    ]);

    expect([revoked4, revoked6, other4, other6].every((f) => f.allFlowing())).toBe(true);
    // Each revoke's flows are timed from that revoke's own return.
    expect(await cli(['revoke', ADDR.client4])).toMatch(/revoked 192\.0\.2\.2: \d+ grant\(s\) closed/);
    const revoked4At = Date.now();
    await cli(['revoke', ADDR.client6]);
    const revoked6At = Date.now();

    await expectStopped(
      revoked4,
      revoked4.specs.map((s) => s.id),
      revoked4At,
    );
    await expectStopped(
      revoked6,
      revoked6.specs.map((s) => s.id),
      revoked6At,
      0,
    );
    expect(other4.allFlowing()).toBe(true);
    expect(other6.allFlowing()).toBe(true);
    await Promise.all([...revoked4.specs, ...revoked6.specs].map(expectNoNewFlow));
    expect(daemon.output.filter((l) => l.includes('"msg":"revoked"') && l.includes('"flowsClosed"'))).toHaveLength(2);
    expect((await cli(['health'])).trim()).toBe('healthy');
  });

  it('a local server that keeps sending cannot keep a revoked flow alive', async () => {
    // Once the entry is deleted, the server's next datagram creates a new one from the output
    // path with the client on the reply side: the gate accepts established packets only in the
    // direction the client opened, so the client's answers are not let back in.
    const flows = await startFlows(ADDR.client4, 'alice', ['pushudp']);
    await cli(['revoke', ADDR.client4, '--app', 'pushudp']);
    await expectStopped(flows, [`${ADDR.client4} pushudp`], Date.now());
  });

  it("knock-port revoke --app ends only that app's flows", async () => {
    const flows = await startFlows(ADDR.client4, 'alice', ['localtcp', 'fwdudp']);
    expect(flows.allFlowing()).toBe(true);
    await cli(['revoke', ADDR.client4, '--app', 'fwdudp4']);
    const doneAt = Date.now();
    await expectStopped(flows, [`${ADDR.client4} fwdudp`], doneAt);
    expect(flows.allFlowing(1000, [`${ADDR.client4} localtcp`])).toBe(true);
  });

  it("a reload that drops a user or an app ends their flows and nobody else's", async () => {
    // alice: localtcp (her user goes), localudp (stays), fwdtcp (the app goes).
    const [alice4, alice6, bob4, bob6] = await Promise.all([
      startFlows(ADDR.client4, 'alice', ['localtcp', 'localudp', 'fwdtcp']),
      startFlows(ADDR.client6, 'alice', ['localtcp', 'fwdtcp']),
      startFlows(ADDR.client4b, 'bob'),
      startFlows(OTHER6, 'bob'),
    ]);

    const next = everyone
      .filter((a) => a.name !== 'fwdtcp4' && a.name !== 'fwdtcp6')
      .map((a) => (a.name === 'localtcp' ? { ...a, users: ['bob'] as UserName[] } : a));
    expect([alice4, alice6, bob4, bob6].every((f) => f.allFlowing())).toBe(true);
    writeFileSync(configPath, configYaml(sandbox, backend.firewall, next));
    const reloaded = daemon.output.length;
    daemon.proc.kill('SIGHUP');
    expect(await waitFor(() => daemon.output.slice(reloaded).some((l) => l.includes('config reloaded')), 10_000, 50)).toBe(true);
    const doneAt = Date.now();

    await expectStopped(alice4, [`${ADDR.client4} localtcp`, `${ADDR.client4} fwdtcp`], doneAt);
    await expectStopped(alice6, [`${ADDR.client6} localtcp`, `${ADDR.client6} fwdtcp`], doneAt, 0);
    await expectStopped(bob4, [`${ADDR.client4b} fwdtcp`], doneAt, 0);
    await expectStopped(bob6, [`${OTHER6} fwdtcp`], doneAt, 0);
    expect(alice4.allFlowing(1000, [`${ADDR.client4} localudp`])).toBe(true);
    expect(
      bob4.allFlowing(
        1000,
        ['localtcp', 'localudp', 'fwdudp'].map((k) => `${ADDR.client4b} ${k}`),
      ),
    ).toBe(true);
    expect(
      bob6.allFlowing(
        1000,
        ['localtcp', 'localudp', 'fwdudp'].map((k) => `${OTHER6} ${k}`),
      ),
    ).toBe(true);
    await Promise.all([expectNoNewFlow(alice4.specs[0]!), expectNoNewFlow(alice6.specs[0]!)]);
    expect(daemon.output.slice(reloaded).filter((l) => l.includes('config reload voids a grant'))).toHaveLength(6);
  });

  it('when conntrack fails, the grant is still revoked, and the log and health say so', async () => {
    // A conntrack that always fails, first on the daemon's PATH (this daemon only).
    const bin = join(sandbox.dir, 'failing-bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'conntrack'), '#!/bin/sh\necho "conntrack v1.4.7 (conntrack-tools): Operation failed: simulated failure" >&2\nexit 1\n');
    chmodSync(join(bin, 'conntrack'), 0o755);
    await daemon.stop('SIGTERM');
    daemon = spawnDaemon(sandbox.gw, runArgs(), ['env', `PATH=${bin}:${process.env.PATH ?? ''}`]);
    expect(await daemon.waitForLog(/knock-port ready/)).toBe(true);

    const flows = await startFlows(ADDR.client4, 'alice', ['localudp']);
    expect((await execIn(sandbox.gw, process.execPath, [CLI, 'health', '--socket', controlSocket()])).ok).toBe(true);
    await cli(['revoke', ADDR.client4, '--app', 'localudp']);
    expect(daemon.output.some((l) => l.includes('grant revoked, but established flows could not be closed') && l.includes('simulated failure'))).toBe(true);
    const health = await execIn(sandbox.gw, process.execPath, [CLI, 'health', '--socket', controlSocket()]);
    expect(health.ok).toBe(false);
    expect(health.err).toMatch(/a revoke could not close established flows/);
    // The grant is gone (a new source port is a new flow, and it is dropped) ...
    expect(await udpEchoes(sandbox.client, ADDR.client4, ADDR.gwWan4, PORT.localUdp, 800)).toBe(false);
    // ... while the flow conntrack could not end goes on: exactly what health warns about.
    expect(flows.allFlowing()).toBe(true);
  });
});
