/**
 * Asynchronous client-side probes for scenario tests, so many scenarios can wait on their
 * own timeouts and windows at the same time against one daemon. Each probe binds to a
 * chosen client source address, so concurrent scenarios never share a grant or a rate limit.
 */
import { execFile } from 'node:child_process';
import type { Netns } from './netns.js';
import { scaled } from './vm.js';

export interface ExecResult {
  ok: boolean;
  /** The exit code; null when the command was killed (its timeout) or could not start. */
  code: number | null;
  out: string;
  err: string;
}

/**
 * Runs a command inside the namespace without blocking the test process; never rejects (`ok`
 * and `code` say how it went). The timeout follows the time scale: an emulated kernel is slower.
 */
export function execIn(ns: Netns, cmd: string, args: string[], timeoutMs = scaled(30_000)): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', ns.name, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, out, err) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ ok: error === null, code, out, err });
    });
  });
}

export type Family = 4 | 6;

export function bracketed(addr: string): string {
  return addr.includes(':') ? `[${addr}]` : addr;
}

/**
 * Extra client addresses, one or more per concurrent scenario: IPv4 `192.0.2.100+i`,
 * IPv6 `2001:db8:1::100+i` (hex), added to the client's interface.
 */
export class SourcePool {
  private next = 0;

  constructor(readonly size: number) {}

  static address(family: Family, index: number): string {
    return family === 4 ? `192.0.2.${100 + index}` : `2001:db8:1::${(0x100 + index).toString(16)}`;
  }

  install(client: Netns, ifname: string): void {
    for (let i = 0; i < this.size; i++) {
      client.ip('addr', 'add', `${SourcePool.address(4, i)}/24`, 'dev', ifname);
      client.ip('addr', 'add', `${SourcePool.address(6, i)}/64`, 'dev', ifname, 'nodad');
    }
  }

  /** A fresh address of the family, never handed out before in this sandbox. */
  take(family: Family): string {
    if (this.next >= this.size) throw new Error(`source address pool exhausted (${this.size}); raise its size`);
    return SourcePool.address(family, this.next++);
  }
}

/** curl from `from`; the HTTP status ("000" when nothing answered) and body. */
export async function curlFrom(ns: Netns, from: string, args: string[], timeoutSeconds: number): Promise<{ status: string; body: string }> {
  const r = await execIn(ns, 'curl', ['-sS', '-m', String(timeoutSeconds), '--interface', from, '-o', '-', '-w', '\n%{http_code}', ...args]);
  const cut = r.out.lastIndexOf('\n');
  return { status: r.out.slice(cut + 1).trim() || '000', body: r.out.slice(0, Math.max(cut, 0)) };
}

/** What a TCP client sees: a connection (with the first bytes the server sent), a reset, or nothing. */
export type TcpOutcome = { kind: 'open'; banner: string } | { kind: 'refused' } | { kind: 'timeout' };

const TCP_PROBE = `
const [host, port, from, ms] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port), localAddress: from });
let data = '', connected = false;
const done = (line) => { console.log(line); process.exit(0); };
s.setTimeout(Number(ms), () => done(connected ? 'open:' + data : 'timeout'));
s.on('connect', () => { connected = true; });
s.on('data', (d) => { data += d; });
s.on('end', () => done('open:' + data));
s.on('error', (e) => done(connected ? 'open:' + data : e.code === 'ECONNREFUSED' ? 'refused' : 'timeout'));`;

export async function tcpProbe(ns: Netns, from: string, host: string, port: number, timeoutMs = 800): Promise<TcpOutcome> {
  const r = await execIn(ns, process.execPath, ['-e', TCP_PROBE, host, String(port), from, String(timeoutMs)]);
  const line = r.out.trim();
  if (line.startsWith('open:')) return { kind: 'open', banner: line.slice('open:'.length) };
  return line === 'refused' ? { kind: 'refused' } : { kind: 'timeout' };
}

const UDP_PROBE = `
const [host, port, from, ms] = process.argv.slice(1);
const s = require('node:dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.on('error', () => { console.log('error'); process.exit(0); });
s.on('message', () => { console.log('echo'); process.exit(0); });
s.bind(0, from, () => s.send('ping', Number(port), host));
setTimeout(() => { console.log('silent'); process.exit(0); }, Number(ms));`;

/** True when a datagram sent from `from` is echoed back within the timeout. */
export async function udpEchoes(ns: Netns, from: string, host: string, port: number, timeoutMs = 800): Promise<boolean> {
  const r = await execIn(ns, process.execPath, ['-e', UDP_PROBE, host, String(port), from, String(timeoutMs)]);
  return r.out.trim() === 'echo';
}

/**
 * Dual-stack TCP servers that send `banner` and close, TCP echo servers that keep the connection
 * (`tcpEcho`), and UDP echo servers, started in `ns`; resolves once all listen. Errors on client
 * sockets are ignored so a reset never kills them.
 */
export async function startServices(ns: Netns, services: { tcp?: Record<number, string>; tcpEcho?: number[]; udp?: number[] }): Promise<void> {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    const tcp = ${JSON.stringify(services.tcp ?? {})}, udp = ${JSON.stringify(services.udp ?? [])};
    const tcpEcho = ${JSON.stringify(services.tcpEcho ?? [])};
    let pending = Object.keys(tcp).length + tcpEcho.length + udp.length;
    const ready = () => { if (--pending === 0) console.log('ready'); };
    for (const [port, banner] of Object.entries(tcp)) {
      const server = net.createServer((s) => { s.on('error', () => {}); s.end(banner); });
      server.on('error', (e) => { console.error(e.message); process.exit(1); });
      server.listen({ port: Number(port), host: '::', ipv6Only: false }, ready);
    }
    for (const port of tcpEcho) {
      const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
      server.on('error', (e) => { console.error(e.message); process.exit(1); });
      server.listen({ port, host: '::', ipv6Only: false }, ready);
    }
    for (const port of udp) {
      const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
      u.on('error', () => {});
      u.on('message', (m, r) => u.send(m, r.port, r.address));
      u.bind(port, '::', ready);
    }`;
  await runUntilReady(ns, script, 'services');
}

/**
 * Runs a node `script` in the background inside `ns` and resolves once it prints `ready`
 * (within 30 s: node starts slowly on a busy machine); throws with what it wrote to stderr otherwise. The process outlives the call.
 */
export async function runUntilReady(ns: Netns, script: string, what: string): Promise<void> {
  const child = ns.spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.unref();
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    child.once('exit', () => resolve(false));
  });
  child.stdout?.destroy();
  child.stderr?.destroy();
  if (!ready) throw new Error(`${what} did not start in namespace ${ns.name}: ${stderr.trim()}`);
}

function macOf(ns: Netns, ifname: string): string {
  const [link] = JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as Array<{ address: string }>;
  if (!link) throw new Error(`no interface ${ifname} in ${ns.name}`);
  return link.address;
}

export interface SynFloodResult {
  sent: number;
  /** SYN-ACKs the client received. */
  answered: number;
  /** From the first SYN sent to the last. */
  seconds: number;
}

/**
 * A bounded SYN flood with nping from `from` (a client address, so answers come back to it):
 * `count` SYNs at `perSecond` to host:port over the wire from `ifname` to `peer`'s `peerIf`.
 * nping counts the SYN-ACKs it receives.
 */
export async function synFlood(
  client: Netns,
  wire: { ifname: string; peer: Netns; peerIf: string },
  from: string,
  host: string,
  port: number,
  count: number,
  perSecond: number,
): Promise<SynFloodResult> {
  const r = await execIn(
    client,
    'nping',
    [
      ...(host.includes(':') ? ['-6'] : []),
      '--tcp',
      '--flags',
      'syn',
      '-p',
      String(port),
      '--rate',
      String(perSecond),
      '-c',
      String(count),
      '-S',
      from,
      '-e',
      wire.ifname,
      '--source-mac',
      macOf(client, wire.ifname),
      '--dest-mac',
      macOf(wire.peer, wire.peerIf),
      host,
    ],
    60_000,
  );
  const totals = /Raw packets sent: (\d+) .*Rcvd: (\d+)/.exec(r.out);
  const sentAt = [...r.out.matchAll(/^SENT \(([\d.]+)s\)/gm)].map((m) => Number(m[1]));
  if (!totals || sentAt.length === 0) throw new Error(`nping gave no totals: ${r.out.slice(-300)} ${r.err.slice(-300)}`);
  return { sent: Number(totals[1]), answered: Number(totals[2]), seconds: sentAt[sentAt.length - 1]! - sentAt[0]! };
}
