/**
 * Network namespaces for kernel tests: unique names, a veth "wire" between two hosts,
 * and cleanup that runs even when a test fails. Traffic only ever goes to addresses
 * inside the namespaces created here.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Why kernel tests cannot run here, or undefined when they can. Printed loudly when skipping. */
export function kernelSkipReason(needs: string[] = ['ip', 'nft']): string | undefined {
  if (!isRoot) return 'kernel tests need root (network namespaces, nftables, raw sockets); run `sudo npm test`';
  for (const tool of needs) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `kernel tests need the '${tool}' command (see the README's system packages)`;
    }
  }
  return undefined;
}

/** Logs the skip reason once per file so a skipped run is never silent. */
export function announceSkip(file: string, reason: string | undefined): boolean {
  if (reason) process.stderr.write(`\n*** SKIPPED ${file}: ${reason}\n\n`);
  return reason !== undefined;
}

export function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function tryRun(cmd: string, args: string[], input?: string): { ok: boolean; out: string; err: string } {
  try {
    return { ok: true, out: run(cmd, args, input), err: '' };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: err.stdout ?? '', err: err.stderr ?? err.message };
  }
}

export class Netns {
  private constructor(readonly name: string) {}

  static create(prefix: string): Netns {
    const name = `kp${prefix}-${process.pid.toString(36)}-${randomBytes(3).toString('hex')}`.slice(0, 30);
    run('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** `ip -n NAME ...` */
  ip(...args: string[]): string {
    return run('ip', ['-n', this.name, ...args]);
  }

  /** Runs a command inside the namespace and returns stdout (throws on non-zero exit). */
  exec(cmd: string, args: string[] = [], input?: string): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], input);
  }

  tryExec(cmd: string, args: string[] = [], input?: string): { ok: boolean; out: string; err: string } {
    return tryRun('ip', ['netns', 'exec', this.name, cmd, ...args], input);
  }

  /** Starts a long-running process inside the namespace. */
  spawn(cmd: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  }

  sysctl(key: string, value: string): void {
    this.exec('sysctl', ['-qw', `${key}=${value}`]);
  }

  destroy(): void {
    tryRun('ip', ['netns', 'pids', this.name]).out
      .split('\n')
      .filter(Boolean)
      .forEach((pid) => tryRun('kill', ['-9', pid]));
    tryRun('ip', ['netns', 'del', this.name]);
  }
}

export interface Link {
  a: Netns;
  b: Netns;
  ifA: string;
  ifB: string;
}

/**
 * Joins two namespaces with a veth pair and addresses (IPv4 /24 and IPv6 /64 given
 * without prefix). IPv6 DAD is disabled so addresses are usable at once.
 */
export function wire(
  a: Netns,
  b: Netns,
  opts: { ifA: string; ifB: string; a4: string; b4: string; a6?: string; b6?: string },
): Link {
  run('ip', ['link', 'add', opts.ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', opts.ifB, 'netns', b.name]);
  for (const [ns, ifname, v4, v6] of [
    [a, opts.ifA, opts.a4, opts.a6],
    [b, opts.ifB, opts.b4, opts.b6],
  ] as const) {
    ns.sysctl(`net.ipv6.conf.${ifname}.accept_dad`, '0');
    ns.ip('addr', 'add', `${v4}/24`, 'dev', ifname);
    if (v6) ns.ip('addr', 'add', `${v6}/64`, 'dev', ifname, 'nodad');
    ns.ip('link', 'set', ifname, 'up');
  }
  return { a, b, ifA: opts.ifA, ifB: opts.ifB };
}

/** Destroys every namespace in the list; safe to call twice. */
export function destroyAll(namespaces: Array<Netns | undefined>): void {
  for (const ns of namespaces) ns?.destroy();
}

/** Polls `probe` until it returns true or `timeoutMs` passes. */
export async function waitFor(probe: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * True when a TCP connect from `ns` to addr:port completes within `timeoutMs`.
 * Uses bash's /dev/tcp so it needs nothing but bash and coreutils' timeout.
 */
export function tcpOpen(ns: Netns, addr: string, port: number, timeoutMs = 1000): boolean {
  const host = addr.includes(':') ? addr : addr;
  const r = ns.tryExec('timeout', [String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`]);
  return r.ok;
}
