/**
 * What happens to live flows when grants end and when the ruleset is installed again: the real
 * daemon in the gateway namespace, real TCP and UDP flows from the client namespace.
 *
 * - A first install keeps a connection established before it (the operator's SSH session),
 *   whether or not the host tracked connections before; new connections then need a grant.
 * - `end_flows_on_expiry`: a kept-alive UDP flow and TCP connections (local and forwarded) end
 *   within about a second of the grant's expiry; without it they go on; a renewed grant keeps them.
 * - A host firewall reload that removes knock-port's rules: a connection opened in the gap from a
 *   source without a grant is dead after the self-heal, a granted source's goes on.
 * Conntrack and every rule live only inside these namespaces.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { announceSkip, kernelSkipReason, waitFor, type Netns } from '../../helpers/netns.js';
import { bracketed, curlFrom, startServices, tcpProbe } from '../../helpers/scenario.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('daemon/flow-lifetimes', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'conntrack', 'ss']));

const STEP1_PATH = '/fl-knock-7c20e4';
const STEP2_PATH = '/fl-open-19b3d5';
const USER = { http: 'fl-http-key-6d02a9c4', https: 'fl-https-key-b81f37e0' };
/** Grants that end in this file end by expiry: long enough to knock for all of them at once and start the flows. */
const SHORT = 12;
/** A third client address, never granted anything. */
const STRANGER4 = '192.0.2.4';

const PORT = { ssh: 7101, vpnCut: 7102, vpnKeep: 7103, tcpCut: 7104, tcpKeep: 7105, fwdCut: 7106 } as const;

interface AppSpec {
  name: string;
  port: number;
  protocol: 'tcp' | 'udp';
  destination: string;
  duration: number;
  endFlows?: boolean;
}

const APPS: AppSpec[] = [
  { name: 'ssh', port: PORT.ssh, protocol: 'tcp', destination: 'local', duration: 600 },
  { name: 'vpncut', port: PORT.vpnCut, protocol: 'udp', destination: 'local', duration: SHORT, endFlows: true },
  { name: 'vpnkeep', port: PORT.vpnKeep, protocol: 'udp', destination: 'local', duration: SHORT },
  { name: 'tcpcut', port: PORT.tcpCut, protocol: 'tcp', destination: 'local', duration: SHORT, endFlows: true },
  { name: 'tcpkeep', port: PORT.tcpKeep, protocol: 'tcp', destination: 'local', duration: SHORT },
  { name: 'fwdcut', port: PORT.fwdCut, protocol: 'tcp', destination: `${ADDR.lan4}:${PORT.fwdCut}`, duration: SHORT, endFlows: true },
];

function configYaml(sandbox: Sandbox, firewall: string): string {
  const app = (a: AppSpec) =>
    `${a.name}:\n  port: ${a.port}\n  protocol: ${a.protocol}\n  destination: '${a.destination}'\n  duration: ${a.duration}\n  step2_https_duration: 30\n` +
    (a.endFlows ? '  end_flows_on_expiry: true\n' : '') +
    `  users:\n    - name: alice\n      access_key_http: ${USER.http}\n      access_key_https: ${USER.https}\n`;
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: firewall, capture: 'nflog' })}${APPS.map(app).join('')}`;
}

/**
 * One TCP connection from the client namespace, held open: `exchange` sends a token and waits
 * for its echo. The connection's events come back one per line.
 */
const CONNECTION = `
const [host, port, from] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port), localAddress: from });
s.setNoDelay(true);
s.on('connect', () => console.log('connected'));
s.on('data', (d) => console.log('data:' + String(d).replace(/\\n/g, ' ')));
s.on('error', (e) => console.log('closed:' + (e.code || e.message)));
s.on('close', () => console.log('closed:close'));
process.stdin.on('data', (d) => { if (s.readyState === 'open') s.write(d); });`;

class Connection {
  private readonly lines: string[] = [];
  private tokens = 0;

  private constructor(
    readonly label: string,
    private readonly child: ChildProcess,
  ) {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      this.lines.push(...lines.filter(Boolean));
    });
  }

  /** Connects from `from`; resolves once connected, or after 2 s either way. */
  static async open(client: Netns, label: string, from: string, host: string, port: number): Promise<Connection> {
    const child = client.spawn(process.execPath, ['-e', CONNECTION, host, String(port), from], { stdio: ['pipe', 'pipe', 'ignore'] });
    const connection = new Connection(label, child);
    await waitFor(() => connection.connected || connection.closed !== null, 2000, 20);
    return connection;
  }

  get connected(): boolean {
    return this.lines.includes('connected');
  }

  /** How the connection ended, null while open. */
  get closed(): string | null {
    return this.lines.find((l) => l.startsWith('closed:'))?.slice('closed:'.length) ?? null;
  }

  /** Sends a fresh token; true when its echo comes back within `ms`. */
  async exchange(ms = 2000): Promise<boolean> {
    const token = `${this.label}-${++this.tokens}`;
    this.child.stdin?.write(`${token}\n`);
    return waitFor(() => this.lines.some((l) => l.startsWith('data:') && l.includes(token)), ms, 20);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/**
 * Long-lived flows from one client address: a line (TCP) or a datagram (UDP) every 200 ms,
 * echoed; the state of every flow printed ten times a second.
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
    const sock = dgram.createSocket('udp4');
    sock.on('error', () => {});
    sock.on('message', got);
    sock.bind(0, f.from, () => setInterval(() => sock.send('ping', f.port, f.host), 200));
  }
}
setInterval(() => console.log(JSON.stringify(state)), 100);`;

interface FlowState {
  rx: number;
  /** When the last echo arrived (ms since the epoch; the namespaces share this host's clock). */
  last: number;
  closed: string | null;
}

class Flows {
  private latest: Record<string, FlowState> = {};
  private constructor(private readonly child: ChildProcess) {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      const last = lines.filter(Boolean).pop();
      if (last) this.latest = JSON.parse(last) as Record<string, FlowState>;
    });
  }

  /** One flow per app, from `from` to the gateway's IPv4 address. */
  static start(client: Netns, from: string, apps: readonly AppSpec[]): Flows {
    const specs = apps.map((a) => ({ id: a.name, proto: a.protocol, from, host: ADDR.gwWan4, port: a.port }));
    return new Flows(client.spawn(process.execPath, ['-e', FLOW_RUNNER, JSON.stringify(specs)], { stdio: ['ignore', 'pipe', 'ignore'] }));
  }

  state(id: string): FlowState {
    return this.latest[id] ?? { rx: 0, last: 0, closed: null };
  }

  /** Every flow got an echo within the last `ms` and none ended. */
  flowing(ids: readonly string[], ms = 1000): boolean {
    const now = Date.now();
    return ids.every((id) => this.state(id).rx > 0 && now - this.state(id).last < ms && this.state(id).closed === null);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

const BACKENDS = [
  {
    name: 'nftables',
    firewall: 'nftables',
    args: [] as string[],
    // This host tracked nothing before knock-port: the first install creates the entries.
    trackBefore: (_gw: Netns): void => {},
    /** A host firewall reload: the whole ruleset flushed (an owned table survives it, see nft-backend.ts). */
    hostReload: (gw: Netns): void => void gw.exec('nft', ['flush', 'ruleset']),
  },
  {
    name: 'iptables-nft',
    firewall: 'iptables',
    args: ['--iptables-variant', 'nft'],
    // A host firewall of its own that tracks connections: the first install marks the entries it has.
    trackBefore: (gw: Netns): void => void gw.exec('iptables-nft', ['-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']),
    /**
     * A host firewall reload: its own ruleset restored in every table, without knock-port's jumps.
     * It accepts established connections, so it tracks them: a connection made in the gap has an
     * entry (without the grant mark) that the self-heal must end.
     */
    hostReload: (gw: Netns): void => {
      const tables: Record<string, string[]> = {
        raw: ['PREROUTING', 'OUTPUT'],
        mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
        filter: ['INPUT', 'FORWARD', 'OUTPUT'],
        nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
      };
      const ruleset = Object.entries(tables)
        .map(([table, chains]) => {
          const rules = table === 'filter' ? ['-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT'] : [];
          return `*${table}\n${[...chains.map((c) => `:${c} ACCEPT [0:0]`), ...rules].join('\n')}\nCOMMIT\n`;
        })
        .join('');
      gw.exec('iptables-nft-restore', [], ruleset);
      gw.exec('ip6tables-nft-restore', [], ruleset);
    },
  },
];

describe.skipIf(skip).each(BACKENDS)('flow lifetimes: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;
  const running: Array<{ stop(): void }> = [];
  /** The connection made before the first install (test 1), which later tests also look at. */
  let adopted: Connection;
  const measured: string[] = [];
  const runArgs = () => ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args];
  const app = (name: string) => APPS.find((a) => a.name === name)!;

  /** Both steps from `from` for `name`; resolves when step 2 said OK (the grant is in from then). */
  async function knock(from: string, name: string): Promise<number> {
    await curlFrom(sandbox.client, from, ['-d', `app=${name}&access_key=${USER.http}`, `http://${bracketed(ADDR.gwWan4)}${STEP1_PATH}`], 1);
    const step2 = await curlFrom(sandbox.client, from, ['-k', '-d', `app=${name}&access_key=${USER.https}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 3);
    if (step2.status !== '200') throw new Error(`step 2 for ${name} from ${from} answered ${step2.status}:\n${daemon.output.slice(-10).join('\n')}`);
    return Date.now();
  }

  async function connect(label: string, from: string, port: number): Promise<Connection> {
    const connection = await Connection.open(sandbox.client, label, from, ADDR.gwWan4, port);
    running.push(connection);
    return connection;
  }

  /** Log lines after `from` that match. */
  const loggedSince = (from: number, pattern: RegExp) => daemon.output.slice(from).filter((l) => pattern.test(l));

  beforeAll(async () => {
    sandbox = createSandbox(`fl${backend.firewall.slice(0, 1)}`);
    sandbox.client.ip('addr', 'add', `${STRANGER4}/24`, 'dev', IF.clientWan);
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall));
    await startServices(sandbox.gw, { tcpEcho: [PORT.ssh, PORT.tcpCut, PORT.tcpKeep], udp: [PORT.vpnCut, PORT.vpnKeep] });
    await startServices(sandbox.lan, { tcpEcho: [PORT.fwdCut] });
  });

  afterEach((ctx) => {
    for (const r of running.splice(0)) if (r !== adopted) r.stop();
    if (measured.length > 0) process.stdout.write(`[${backend.name}] ${ctx.task.name}\n  ${measured.splice(0).join('\n  ')}\n`);
    if (ctx.task.result?.state === 'fail' && daemon) {
      console.log(daemon.output.slice(-25).join('\n'), sandbox.gw.tryExec('conntrack', ['-L']).out);
    }
  });

  afterAll(async () => {
    adopted?.stop();
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('a first install keeps a connection established before it; new connections need a grant; a restart adopts nothing', async () => {
    backend.trackBefore(sandbox.gw);
    adopted = await connect('adopted', ADDR.client4b, PORT.ssh);
    expect(await adopted.exchange()).toBe(true);

    daemon = startDaemon(sandbox, runArgs());
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    const kept = daemon.output.find((l) => l.includes('first install: established flows to protected ports kept'));
    expect(kept, daemon.output.join('\n')).toBeDefined();
    measured.push(kept!);
    expect((JSON.parse(kept!) as { kept: number }).kept).toBeGreaterThanOrEqual(1);

    // The gate is in place: established packets pass only with the grant mark, which this one now has.
    expect(await adopted.exchange()).toBe(true);
    expect((await tcpProbe(sandbox.client, ADDR.client4b, ADDR.gwWan4, PORT.ssh, 800)).kind).not.toBe('open');
    expect((await tcpProbe(sandbox.client, STRANGER4, ADDR.gwWan4, PORT.ssh, 800)).kind).not.toBe('open');
    await knock(ADDR.client4, 'ssh');
    expect((await tcpProbe(sandbox.client, ADDR.client4, ADDR.gwWan4, PORT.ssh, 800)).kind).toBe('open');

    // A restart finds its rules in place: not a first install.
    await daemon.stop('SIGTERM');
    daemon = startDaemon(sandbox, runArgs());
    expect(await daemon.waitForLog(/knock-port ready/)).toBe(true);
    expect(daemon.output.some((l) => l.includes('first install'))).toBe(false);
    expect(await adopted.exchange()).toBe(true);
  });

  it('end_flows_on_expiry: UDP and TCP flows (local and forwarded) end at expiry; without it they go on', async () => {
    const names = ['vpncut', 'vpnkeep', 'tcpcut', 'tcpkeep', 'fwdcut'];
    const grantedAt = await Promise.all(names.map((n) => knock(ADDR.client4, n)));
    const expiry = Object.fromEntries(names.map((n, i) => [n, grantedAt[i]! + SHORT * 1000]));
    const flows = Flows.start(sandbox.client, ADDR.client4, names.map(app));
    running.push(flows);
    expect(await waitFor(() => flows.flowing(names), 5000, 100), JSON.stringify(names.map((n) => [n, flows.state(n)]))).toBe(true);
    const since = daemon.output.length;

    const lastExpiry = Math.max(...Object.values(expiry));
    await new Promise((r) => setTimeout(r, lastExpiry + 3000 - Date.now()));
    for (const name of ['vpncut', 'tcpcut', 'fwdcut']) {
      const s = flows.state(name);
      const after = s.last - expiry[name]!;
      measured.push(`${name}: last echo ${after} ms after the grant expired, ${s.closed ?? 'not closed (stalled)'}`);
      // It flowed until about the expiry, then stopped within about a second.
      expect(after, `${name} stopped ${-after} ms before its expiry`).toBeGreaterThan(-1000);
      expect(after, `${name} still got an echo ${after} ms after its expiry`).toBeLessThan(1500);
    }
    // A local TCP server's socket is destroyed: the client sees the end instead of a stall.
    expect(flows.state('tcpcut').closed).not.toBeNull();
    expect(flows.flowing(['vpnkeep', 'tcpkeep'])).toBe(true);
    expect(loggedSince(since, /service grant expired: its flows ended/)).toHaveLength(3);
  });

  it('a re-knock before expiry keeps the flows until the renewed grant expires', async () => {
    const names = ['vpncut', 'tcpcut'];
    const firstExpiry = Math.max(...(await Promise.all(names.map((n) => knock(ADDR.client4, n))))) + SHORT * 1000;
    const flows = Flows.start(sandbox.client, ADDR.client4, names.map(app));
    running.push(flows);
    expect(await waitFor(() => flows.flowing(names), 5000, 100)).toBe(true);

    await new Promise((r) => setTimeout(r, (SHORT / 2) * 1000));
    const renewedExpiry = Math.max(...(await Promise.all(names.map((n) => knock(ADDR.client4, n))))) + SHORT * 1000;
    // Past the first grants' expiry (and a second of grace): still flowing.
    await new Promise((r) => setTimeout(r, firstExpiry + 2500 - Date.now()));
    expect(flows.flowing(names), JSON.stringify(names.map((n) => [n, flows.state(n)]))).toBe(true);
    // Then the renewed grants expire, and the flows end.
    await new Promise((r) => setTimeout(r, renewedExpiry + 2500 - Date.now()));
    for (const name of names) measured.push(`${name}: last echo ${flows.state(name).last - renewedExpiry} ms after the renewed grant expired`);
    expect(flows.flowing(['vpncut'], 1500)).toBe(false);
    expect(flows.state('tcpcut').closed).not.toBeNull();
  });

  it("a connection opened while a host reload removed knock-port's rules is dead after the self-heal unless its source holds a grant", async () => {
    await knock(ADDR.client4, 'ssh'); // granted for 600 s (again)
    const reinstalled = /firewall ruleset was missing and has been re-installed/;
    const purged = /flows opened without a grant while the firewall ruleset was missing: ended/;

    backend.hostReload(sandbox.gw);
    if (backend.firewall === 'nftables' && sandbox.gw.tryExec('nft', ['list', 'table', 'inet', 'knockport']).ok) {
      // The daemon owns its table (Linux 6.9+): the flush left the gate in place, there is no gap.
      measured.push('table inet knockport is owned by the daemon: the flush left it in place, no gap to purge');
      expect(daemon.output.join('\n')).toMatch(/owned by this daemon/);
      expect((await tcpProbe(sandbox.client, STRANGER4, ADDR.gwWan4, PORT.ssh, 800)).kind).not.toBe('open');
      expect((await tcpProbe(sandbox.client, ADDR.client4, ADDR.gwWan4, PORT.ssh, 800)).kind).toBe('open');
      return;
    }
    // The stranger can connect only while the rules are gone. Should the self-heal (every 5 s) come
    // first, the reload is repeated right after it has finished: the next one is a tick away.
    let stranger: Connection | undefined;
    let granted: Connection | undefined;
    let since = 0;
    for (let round = 0; round < 3; round++) {
      since = daemon.output.length;
      [stranger, granted] = await Promise.all([connect(`stranger${round}`, STRANGER4, PORT.ssh), connect(`granted${round}`, ADDR.client4, PORT.ssh)]);
      if (stranger.connected) break;
      expect(await waitFor(() => loggedSince(since, purged).length > 0, 12_000, 50)).toBe(true);
      backend.hostReload(sandbox.gw);
    }
    // The gate refuses a stranger's connection: this one was made while the rules were gone.
    expect(stranger?.connected, 'no connection could be made while the rules were gone').toBe(true);
    expect(granted?.connected).toBe(true);

    expect(await waitFor(() => loggedSince(since, purged).length > 0, 12_000, 50), daemon.output.slice(since).join('\n')).toBe(true);
    const line = loggedSince(since, purged)[0]!;
    measured.push(line);
    expect((JSON.parse(line) as { ended: number }).ended).toBeGreaterThanOrEqual(1);

    expect(await stranger!.exchange(), 'the stranger still talks after the self-heal').toBe(false);
    // Ended, not left to stall: the server's socket was destroyed and the client was reset.
    expect(stranger!.closed).not.toBeNull();
    expect(await granted!.exchange()).toBe(true);
    // The connection kept at the first install carries the grant mark: it is no gap flow.
    expect(await adopted.exchange()).toBe(true);
    expect((await tcpProbe(sandbox.client, STRANGER4, ADDR.gwWan4, PORT.ssh, 800)).kind).not.toBe('open');
    expect(loggedSince(since, reinstalled).length).toBeGreaterThanOrEqual(1);
  });
});
