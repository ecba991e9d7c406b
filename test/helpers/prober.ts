/**
 * One long-lived Node process in the client namespace that sends many probes at once: a new TCP
 * connection or UDP datagram (does it complete / come back?), a TCP connection with the first
 * bytes the server sends (its banner), and flows kept open across events (opened, then pinged
 * later through an echo server). One process instead of one per probe keeps hundreds of
 * concurrent probes cheap on a small machine, and saves a Node start per probe (seconds in the
 * stock-kernel VM). JSON lines on stdin and stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Netns } from './netns.js';
import type { TcpOutcome } from './scenario.js';
import { scaled } from './vm.js';

export type Protocol = 'tcp' | 'udp';

export interface Target {
  protocol: Protocol;
  /** The client address the probe is sent from. */
  from: string;
  host: string;
  port: number;
}

/** `open`: the handshake completed or the datagram came back; anything else did not get through. */
export type Outcome = 'open' | 'refused' | 'timeout' | 'error';

const SCRIPT = `
const net = require('node:net'), dgram = require('node:dgram'), readline = require('node:readline');
const flows = new Map();
const reply = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
function tcpConnect(t, ms) {
  return new Promise((resolve) => {
    const s = net.connect({ host: t.host, port: t.port, localAddress: t.from });
    s.on('error', () => {});
    const timer = setTimeout(() => { s.destroy(); resolve({ outcome: 'timeout' }); }, ms);
    s.once('connect', () => { clearTimeout(timer); resolve({ outcome: 'open', socket: s }); });
    s.once('error', (e) => { clearTimeout(timer); resolve({ outcome: e.code === 'ECONNREFUSED' ? 'refused' : 'error' }); });
  });
}
function udpSocket(t) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(t.host.includes(':') ? 'udp6' : 'udp4');
    s.on('error', () => {});
    s.bind(0, t.from, () => resolve(s));
  });
}
/** Sends 'ping' on the flow, true when it comes back within ms. */
function echoed(flow, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { flow.waiter = undefined; resolve(false); }, ms);
    flow.waiter = () => { clearTimeout(timer); flow.waiter = undefined; resolve(true); };
    try { flow.send(); } catch { clearTimeout(timer); resolve(false); }
  });
}
async function openFlow(t, ms) {
  const flow = { waiter: undefined };
  if (t.protocol === 'tcp') {
    const c = await tcpConnect(t, ms);
    if (!c.socket) return { outcome: c.outcome };
    flow.close = () => c.socket.destroy();
    flow.send = () => c.socket.write('ping');
    c.socket.on('data', () => flow.waiter && flow.waiter());
  } else {
    const s = await udpSocket(t);
    flow.close = () => s.close();
    flow.send = () => s.send('ping', t.port, t.host);
    s.on('message', () => flow.waiter && flow.waiter());
  }
  return { flow, outcome: 'open' };
}
/** Connects and reads what the server sends until it closes or goes quiet for ms. */
async function banner(t, ms) {
  const c = await tcpConnect(t, ms);
  if (!c.socket) return { outcome: c.outcome };
  return new Promise((resolve) => {
    let data = '';
    const done = () => { c.socket.destroy(); resolve({ outcome: 'open', banner: data }); };
    c.socket.setTimeout(ms, done);
    c.socket.on('data', (d) => { data += d; });
    c.socket.once('end', done);
    c.socket.once('close', done);
  });
}
async function handle(m) {
  if (m.op === 'banner') return banner(m.target, m.ms);
  if (m.op === 'probe') {
    if (m.target.protocol === 'tcp') {
      const c = await tcpConnect(m.target, m.ms);
      c.socket && c.socket.destroy();
      return { outcome: c.outcome };
    }
    const o = await openFlow(m.target, m.ms);
    const ok = await echoed(o.flow, m.ms);
    o.flow.close();
    return { outcome: ok ? 'open' : 'timeout' };
  }
  if (m.op === 'open') {
    const o = await openFlow(m.target, m.ms);
    if (!o.flow) return { outcome: o.outcome };
    const ok = await echoed(o.flow, m.ms);
    if (ok) flows.set(m.flow, o.flow); else o.flow.close();
    return { outcome: ok ? 'open' : 'timeout' };
  }
  if (m.op === 'ping') {
    const flow = flows.get(m.flow);
    return { outcome: flow && (await echoed(flow, m.ms)) ? 'open' : 'timeout' };
  }
  if (m.op === 'close') {
    for (const flow of flows.values()) flow.close();
    flows.clear();
    return { outcome: 'open' };
  }
  return { outcome: 'error' };
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  handle(m).then((r) => reply({ id: m.id, ...r }), () => reply({ id: m.id, outcome: 'error' }));
});
console.log(JSON.stringify({ ready: true }));
`;

interface Reply {
  outcome: Outcome;
  banner?: string;
}

export class Prober {
  private nextId = 0;
  private readonly pending = new Map<number, (reply: Reply) => void>();

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as { id?: number; outcome?: Outcome; banner?: string };
      if (message.id === undefined) return;
      this.pending.get(message.id)?.({ outcome: message.outcome ?? 'error', banner: message.banner });
      this.pending.delete(message.id);
    });
  }

  /** Starts the prober in `ns`; resolves once it reads commands. */
  static async start(ns: Netns): Promise<Prober> {
    const child = ns.spawn(process.execPath, ['-e', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), scaled(30_000));
      child.stdout!.once('data', (d: Buffer) => {
        clearTimeout(timer);
        resolve(d.toString().includes('ready'));
      });
    });
    if (!ready) throw new Error(`the prober did not start in namespace ${ns.name}`);
    return new Prober(child);
  }

  private request(message: Record<string, unknown>, timeoutMs: number): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      // Bounded even if the prober dies: every probe has its own timeout inside, plus slack here.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ outcome: 'error' });
      }, timeoutMs + 10_000);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.child.stdin!.write(`${JSON.stringify({ id, ...message, ms: timeoutMs })}\n`);
    });
  }

  private async send(message: Record<string, unknown>, timeoutMs: number): Promise<Outcome> {
    return (await this.request(message, timeoutMs)).outcome;
  }

  /** A new connection (TCP) or datagram and its echo (UDP). */
  probe(target: Target, timeoutMs: number): Promise<Outcome> {
    return this.send({ op: 'probe', target }, timeoutMs);
  }

  /**
   * What a TCP client sees, as `tcpProbe` in scenario.ts reports it: a connection with the bytes
   * the server sent before closing (or going quiet for `timeoutMs`), a reset, or nothing.
   */
  async tcp(from: string, host: string, port: number, timeoutMs: number): Promise<TcpOutcome> {
    const reply = await this.request({ op: 'banner', target: { protocol: 'tcp', from, host, port } }, timeoutMs);
    if (reply.outcome === 'open') return { kind: 'open', banner: reply.banner ?? '' };
    return reply.outcome === 'refused' ? { kind: 'refused' } : { kind: 'timeout' };
  }

  /** True when a datagram sent from `from` is echoed back within the timeout. */
  async udpEchoes(from: string, host: string, port: number, timeoutMs: number): Promise<boolean> {
    return (await this.probe({ protocol: 'udp', from, host, port }, timeoutMs)) === 'open';
  }

  /** Opens a flow named `flow` and keeps it when its first ping is echoed. */
  open(flow: string, target: Target, timeoutMs: number): Promise<Outcome> {
    return this.send({ op: 'open', flow, target }, timeoutMs);
  }

  /** Whether the kept flow still gets its ping echoed. */
  ping(flow: string, timeoutMs: number): Promise<Outcome> {
    return this.send({ op: 'ping', flow }, timeoutMs);
  }

  /** Closes every kept flow. */
  async closeFlows(): Promise<void> {
    await this.send({ op: 'close' }, 1000);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}
