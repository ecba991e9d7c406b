/**
 * Network namespaces from the host's `ip` command: unique names, a veth "wire" between two
 * of them, commands run inside, and cleanup that kills what runs there. Used by
 * `knock-port demo` and by the kernel tests; traffic only ever goes to addresses inside the
 * namespaces made here.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

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

/** A finished command: its exit code (null when killed by a signal) and output. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The commands of `names` that are not found on PATH (as a shell's `command -v` would say). */
export function missingCommands(names: readonly string[], path = process.env.PATH ?? ''): string[] {
  const dirs = path.split(delimiter).filter(Boolean);
  return names.filter(
    (name) =>
      !dirs.some((dir) => {
        try {
          accessSync(join(dir, name), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
}

export class Netns {
  private constructor(readonly name: string) {}

  /** A new namespace named `kp<label>-<pid>-<random>`, with loopback up. */
  static create(label: string): Netns {
    const name = `kp${label}-${process.pid.toString(36)}-${randomBytes(3).toString('hex')}`.slice(0, 30);
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

  /** Runs a command inside the namespace to the end and returns its exit code and output. */
  runCommand(cmd: string, args: string[] = [], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): CommandResult {
    const result = spawnSync('ip', ['netns', 'exec', this.name, cmd, ...args], {
      encoding: 'utf8',
      input: options.input ?? '',
      ...(options.env ? { env: options.env } : {}),
      ...(options.timeoutMs ? { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const } : {}),
    });
    return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? result.error?.message ?? '' };
  }

  /** Starts a long-running process inside the namespace. */
  spawn(cmd: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  }

  sysctl(key: string, value: string): void {
    this.exec('sysctl', ['-qw', `${key}=${value}`]);
  }

  /** True while the namespace exists. */
  exists(): boolean {
    return listNamespaces().includes(this.name);
  }

  /** Kills every process inside, then deletes the namespace (its interfaces and firewall go with it). */
  destroy(): void {
    tryRun('ip', ['netns', 'pids', this.name])
      .out.split('\n')
      .filter(Boolean)
      .forEach((pid) => tryRun('kill', ['-9', pid]));
    tryRun('ip', ['netns', 'del', this.name]);
  }
}

/** Names of the namespaces `ip netns` knows. */
export function listNamespaces(): string[] {
  return tryRun('ip', ['netns', 'list'])
    .out.split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter(Boolean);
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
export function wire(a: Netns, b: Netns, opts: { ifA: string; ifB: string; a4: string; b4: string; a6?: string; b6?: string }): Link {
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
