/**
 * Network namespaces for the benchmarks (plain JavaScript: the bench runs without a
 * TypeScript step). Unique names, veth wires, and cleanup that kills what runs inside.
 * Traffic only ever goes to addresses inside the namespaces made here.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function sh(cmd, args, input, timeoutMs = 60_000) {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, maxBuffer: 256 << 20 });
}

export function trySh(cmd, args, input, timeoutMs) {
  try {
    return { ok: true, out: sh(cmd, args, input, timeoutMs) };
  } catch (err) {
    return { ok: false, out: String(err.stdout ?? ''), err: String(err.stderr ?? err.message) };
  }
}

export function hasCommand(tool) {
  return trySh('sh', ['-c', `command -v ${tool}`]).ok;
}

export class Netns {
  constructor(name) {
    this.name = name;
  }

  static create(prefix) {
    const name = `kpb${prefix}-${process.pid.toString(36)}-${randomBytes(2).toString('hex')}`;
    sh('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  ip(...args) {
    return sh('ip', ['-n', this.name, ...args]);
  }

  /** `ip -batch`: thousands of address/route commands in one process. */
  ipBatch(lines) {
    return sh('ip', ['-n', this.name, '-batch', '-'], `${lines.join('\n')}\n`);
  }

  exec(cmd, args = [], input, timeoutMs) {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args], input, timeoutMs);
  }

  tryExec(cmd, args = [], input, timeoutMs) {
    return trySh('ip', ['netns', 'exec', this.name, cmd, ...args], input, timeoutMs);
  }

  /** A long-running process inside the namespace (`ip netns exec` execs, so pid is the command's). */
  spawn(cmd, args = [], options = {}) {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  }

  sysctl(key, value) {
    this.exec('sysctl', ['-qw', `${key}=${value}`]);
  }

  mac(dev) {
    return /link\/ether (\S+)/.exec(this.ip('link', 'show', dev))[1];
  }

  destroy() {
    for (const pid of trySh('ip', ['netns', 'pids', this.name]).out.split('\n').filter(Boolean)) trySh('kill', ['-9', pid]);
    trySh('ip', ['netns', 'del', this.name]);
  }
}

/** A veth pair between two namespaces with IPv4 /24 addresses, up. */
export function wire(a, b, { ifA, ifB, a4, b4 }) {
  sh('ip', ['link', 'add', ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  for (const [ns, dev, addr] of [
    [a, ifA, a4],
    [b, ifB, b4],
  ]) {
    ns.ip('addr', 'add', `${addr}/24`, 'dev', dev);
    ns.ip('link', 'set', dev, 'up');
  }
}

/** Runs a command in `ns` without blocking the event loop; resolves { code, out, err }, killed after timeoutMs. */
export function execAsync(ns, cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = ns.spawn(cmd, args);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}
