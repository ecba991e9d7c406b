/**
 * Three namespaces: a client on the "internet" side, the gateway running the firewall
 * backend, and a LAN host behind it. Listeners are tiny Node servers inside the namespaces.
 */
import type { ChildProcess } from 'node:child_process';
import { Netns, destroyAll, waitFor, wire } from '../../helpers/netns.js';
import { execIn } from '../../helpers/scenario.js';
import { fixtureConfig } from '../../unit/firewall/fixture.js';
import type { Config } from '../../../src/config/types.js';

export const ADDR = {
  client4: '10.77.0.2',
  client6: 'fd77::2',
  gw4: '10.77.0.1',
  gw6: 'fd77::1',
  gwLan4: '192.168.77.1',
  gwLan6: 'fd00:77::1',
  lan4: '192.168.77.10',
  lan6: 'fd00:77::10',
};

const TCP_SERVER = `require('net').createServer((s) => { s.on('error', () => {}); s.end('hi\\n'); }).listen({ port: Number(process.argv[1]), host: '::' }, () => console.log('ready'));`;
const UDP_ECHO = `const s = require('dgram').createSocket({ type: 'udp6' }); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(Number(process.argv[1]), '::', () => console.log('ready'));`;
const UDP_PROBE = `const [host, port] = process.argv.slice(1); const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.on('message', () => { console.log('reply'); process.exit(0); }); s.send('ping', Number(port), host); setTimeout(() => { console.log('silent'); process.exit(0); }, 800);`;

export class Topology {
  readonly processes: ChildProcess[] = [];
  readonly config: Config;

  private constructor(
    readonly client: Netns,
    readonly gw: Netns,
    readonly lan: Netns,
  ) {
    this.config = fixtureConfig({ interfaceExt: 'ext0', interfaceInt: 'int0', lanHost4: ADDR.lan4, lanHost6: ADDR.lan6 });
  }

  static create(tag: string): Topology {
    const client = Netns.create(`${tag}c`);
    const gw = Netns.create(`${tag}g`);
    const lan = Netns.create(`${tag}l`);
    wire(client, gw, { ifA: 'cli0', ifB: 'ext0', a4: ADDR.client4, b4: ADDR.gw4, a6: ADDR.client6, b6: ADDR.gw6 });
    wire(gw, lan, { ifA: 'int0', ifB: 'lan0', a4: ADDR.gwLan4, b4: ADDR.lan4, a6: ADDR.gwLan6, b6: ADDR.lan6 });
    gw.sysctl('net.ipv4.ip_forward', '1');
    gw.sysctl('net.ipv6.conf.all.forwarding', '1');
    // The LAN host answers through the gateway (apps without masquerade keep the client's address).
    lan.ip('route', 'add', 'default', 'via', ADDR.gwLan4);
    lan.ip('-6', 'route', 'add', 'default', 'via', ADDR.gwLan6);
    return new Topology(client, gw, lan);
  }

  private async start(ns: Netns, script: string, port: number): Promise<void> {
    const child = ns.spawn(process.execPath, ['-e', script, String(port)]);
    this.processes.push(child);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    if (!(await waitFor(() => out.includes('ready'), 5000))) throw new Error(`listener on ${port} did not start`);
  }

  /** A TCP listener answering `hi` on `port` in the gateway namespace (a service knock-port does not protect). */
  listenTcp(port: number): Promise<void> {
    return this.start(this.gw, TCP_SERVER, port);
  }

  /** From `ns` (default: the client): 'open', 'refused' or 'silent', as tcp(). */
  tcpFrom(ns: Netns, addr: string, port: number, timeoutMs = 1000): 'open' | 'refused' | 'silent' {
    const r = ns.tryExec('timeout', [String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${addr}/${port}`]);
    if (r.ok) return 'open';
    return /refused|reset/i.test(r.err) ? 'refused' : 'silent';
  }

  /**
   * From the client, all at once: the ports (by address) a TCP connection opened to, as
   * `address:port`. Checks that ports stay closed wait out one timeout together, not one each.
   */
  async openAmong(targets: Record<string, number[]>, timeoutMs = 1000): Promise<string[]> {
    const pairs = Object.entries(targets).flatMap(([addr, ports]) => ports.map((port) => `${addr}/${port}`));
    const outcomes = await Promise.all(
      pairs.map((pair) => execIn(this.client, 'timeout', [String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${pair}`], timeoutMs + 5000)),
    );
    return pairs.filter((_, i) => outcomes[i]!.ok).map((pair) => pair.replace('/', ':'));
  }

  /** TCP listeners for the local app (gw:2222), the forwarded apps (lan:3390, lan:8080), HTTPS (gw:443); UDP echo gw:1194. */
  async startListeners(): Promise<void> {
    await this.start(this.gw, TCP_SERVER, 2222);
    await this.start(this.gw, TCP_SERVER, 443);
    await this.start(this.gw, UDP_ECHO, 1194);
    await this.start(this.lan, TCP_SERVER, 3390);
    await this.start(this.lan, TCP_SERVER, 8080);
  }

  /** From the client: 'open', 'refused' (an RST came back) or 'silent' (dropped: nothing came back). */
  tcp(addr: string, port: number, timeoutMs = 1000): 'open' | 'refused' | 'silent' {
    return this.tcpFrom(this.client, addr, port, timeoutMs);
  }

  /** From the client: does the UDP echo answer? */
  udp(addr: string, port: number): 'reply' | 'silent' {
    return this.client.exec(process.execPath, ['-e', UDP_PROBE, addr, String(port)]).trim() as 'reply' | 'silent';
  }

  destroy(): void {
    for (const p of this.processes) p.kill('SIGKILL');
    destroyAll([this.client, this.gw, this.lan]);
  }
}
