/**
 * The real `knock-port run` started inside a demo namespace as a child process, with its log
 * lines collected, so that the demo can wait for what it logs and stop it cleanly.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor, type Netns } from './netns.js';

/** The `knock-port` entry point of this installation (bin/ next to dist/ and src/). */
export const CLI_SCRIPT = fileURLToPath(new URL('../../bin/knock-port.js', import.meta.url));

export interface DaemonProcess {
  proc: ChildProcess;
  /** Every line the daemon wrote so far (stdout and stderr). */
  output: string[];
  /** Resolves true once a log line matches, false after timeoutMs (or when the daemon exits). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<boolean>;
  /** Sends the signal and waits for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `knock-port run ARGS` with this Node.js inside the namespace, collecting its log
 * lines. `launcher` is a command that execs the rest (e.g. `setpriv ...` to drop privileges).
 */
export function spawnDaemon(ns: Netns, runArgs: string[], launcher: readonly string[] = []): DaemonProcess {
  const argv = [...launcher, process.execPath, CLI_SCRIPT, 'run', ...runArgs];
  const proc = ns.spawn(argv[0]!, argv.slice(1));
  const output: string[] = [];
  const collect = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean));
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  // 'close' comes after the last output line, unlike 'exit'.
  let closed = false;
  proc.once('close', () => (closed = true));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const logged = (pattern: RegExp) => output.some((line) => pattern.test(line));
  return {
    proc,
    output,
    async waitForLog(pattern, timeoutMs = 15_000) {
      await waitFor(() => closed || logged(pattern), timeoutMs);
      return logged(pattern);
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exit;
    },
  };
}
