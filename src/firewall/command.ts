/**
 * How backends run firewall tools (iptables-restore, ipset, nft): synchronously only for one-off
 * commands, else in an awaited child process with a timeout and capped output; netns optional.
 */
import { execFileSync, spawn } from 'node:child_process';
import { KnockPortError } from '../shared/errors.js';

/** A firewall tool (iptables-restore, ipset, ...) failed; the message carries its stderr. */
export class FirewallCommandError extends KnockPortError {
  constructor(
    message: string,
    readonly command: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Runs one firewall tool and returns its stdout; throws FirewallCommandError on failure. */
export interface CommandRunner {
  /** Synchronous: only for one-off commands (install at start, uninstall, the CLI). */
  run(command: string, args: string[], input?: string): string;
  /** The same in a child process, never blocking the event loop (grants, self-heal). */
  runAsync?(command: string, args: string[], input?: string): Promise<string>;
  /** What tools run behind (e.g. `ip netns exec NS`): long-lived sessions start behind it too. */
  readonly prefix?: readonly string[];
}

/** Runs `command` without blocking: the runner's own async path, else its synchronous one. */
export async function runCommand(runner: CommandRunner, command: string, args: string[], input?: string): Promise<string> {
  return runner.runAsync ? runner.runAsync(command, args, input) : runner.run(command, args, input);
}

/** Output of a child process is capped: a runaway listing must not fill the heap. */
const OUTPUT_LIMIT = 256 << 20;
/** A firewall tool that hangs (a held xtables lock) is killed: its caller gets an error. */
const ASYNC_TIMEOUT_MS = 30_000;

export interface ChildOutput {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns `file`, writes `input` to its stdin, collects its output; rejects only when it cannot start. */
export function spawnCollect(file: string, args: readonly string[], input?: string, timeoutMs = ASYNC_TIMEOUT_MS): Promise<ChildOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < OUTPUT_LIMIT) stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < OUTPUT_LIMIT) stderr += chunk.toString();
    });
    // A tool that exits before reading its input: the close below reports its status.
    child.stdin.on('error', () => undefined);
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr: signal === 'SIGKILL' ? `${stderr}killed after ${timeoutMs / 1000} s`.trim() : stderr }),
    );
    child.stdin.end(input ?? '');
  });
}

/**
 * Runs tools directly, or behind a prefix such as `ip netns exec NS` so that every
 * call lands in another network namespace (kernel tests never touch the host's rules).
 */
export class ExecCommandRunner implements CommandRunner {
  constructor(readonly prefix: string[] = []) {}

  run(command: string, args: string[], input?: string): string {
    const [file, ...fileArgs] = [...this.prefix, command, ...args] as [string, ...string[]];
    try {
      return execFileSync(file, fileArgs, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string; code?: string };
      if (err.code === 'ENOENT') throw notFound(file, command);
      const stderr = (err.stderr ?? err.message).trim();
      throw new FirewallCommandError(`${command} ${args.join(' ')} failed: ${stderr}`, command, stderr);
    }
  }

  async runAsync(command: string, args: string[], input?: string): Promise<string> {
    const [file, ...fileArgs] = [...this.prefix, command, ...args] as [string, ...string[]];
    let out: ChildOutput;
    try {
      out = await spawnCollect(file, fileArgs, input);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(file, command);
      throw new FirewallCommandError(`${command} could not be run: ${(e as Error).message}`, command, '');
    }
    if (out.code === 0) return out.stdout;
    const stderr = (out.stderr || `exit status ${out.code ?? out.signal}`).trim();
    throw new FirewallCommandError(`${command} ${args.join(' ')} failed: ${stderr}`, command, stderr);
  }
}

function notFound(file: string, command: string): FirewallCommandError {
  return new FirewallCommandError(`'${file}' not found: install it (see packaging/debian-packages.txt)`, command, '');
}

/** The command prefix that runs a tool inside network namespace `netns`, or none. */
export function netnsPrefix(netns: string | undefined): string[] {
  return netns ? ['ip', 'netns', 'exec', netns] : [];
}
