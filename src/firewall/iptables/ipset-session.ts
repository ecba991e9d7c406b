/**
 * One long-lived `ipset -` process (ipset's interactive mode) that takes grant commands on
 * stdin, instead of a fork per grant (about 3 ms each, on the event loop when synchronous).
 *
 * Knowing when a command is done, and how it went: in interactive mode ipset prints its
 * prompt `ipset> ` before reading each line, and a failing command prints its error (on
 * stderr) before the next prompt; a successful add or del prints nothing. With stderr joined
 * to stdout and stdout unbuffered (`stdbuf -o0`: ipset never flushes its prompt into a pipe),
 * the text between two prompts is the outcome of exactly one line: empty means done. No
 * marker commands, and one bad line fails only itself (interactive mode goes on after an
 * error, unlike `ipset restore`).
 *
 * The session is started on first use and ended after a quiet spell. If it dies, the lines
 * in flight are rejected (their callers hear of it, never silence) and the next call starts
 * a fresh one; a line that gets no answer in time kills the session the same way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { GrantSetError } from '../grant-sets.js';

/** The session failed; `sameForEach` when it never started (retrying line by line would fork for nothing). */
export class IpsetSessionError extends GrantSetError {}

const PROMPT = 'ipset> ';
/** The shell line: stderr into the same pipe (one ordered stream), stdout unbuffered. */
export const IPSET_SESSION_SCRIPT = 'exec stdbuf -o0 ipset - 2>&1';

export interface IpsetSessionOptions {
  /** Starts the process; default `sh -c IPSET_SESSION_SCRIPT` behind `prefix`. */
  spawn?: () => ChildProcess;
  /** Runs the default command behind this (e.g. `ip netns exec NS`). */
  prefix?: readonly string[];
  /** No answer to a line within this long: the session is killed and restarted (default 10 s). */
  lineTimeoutMs?: number;
  /** Idle this long: the session ends (default 10 min); the next call starts another. */
  idleMs?: number;
}

interface Line {
  text: string;
  resolve: (output: string) => void;
  reject: (err: Error) => void;
}

/** A running `ipset -` and the lines it has not answered yet, oldest first. */
interface Running {
  child: ChildProcess;
  pending: Line[];
  buffer: string;
  /** The first prompt says ipset is reading; every later one closes the oldest pending line. */
  ready: boolean;
  /** Everything ipset printed that was not an answer (why it died, for the error). */
  stray: string;
  ended: boolean;
}

export class IpsetSession {
  private current: Running | undefined;
  private lineTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly lineTimeoutMs: number;
  private readonly idleMs: number;
  /** Sessions started so far (health and tests: a restart shows here). */
  starts = 0;

  constructor(private readonly options: IpsetSessionOptions = {}) {
    this.lineTimeoutMs = options.lineTimeoutMs ?? 10_000;
    // Starting a session forks this (large) process: that is paid once in a while, not per burst.
    this.idleMs = options.idleMs ?? 600_000;
  }

  /**
   * Sends `lines` (ipset commands, one per line) and resolves with what ipset printed for
   * each ('' for success, else its error); rejects every line still unanswered when the
   * session dies.
   */
  run(lines: readonly string[]): Promise<string[]> {
    if (lines.length === 0) return Promise.resolve([]);
    for (const line of lines) {
      // An empty line gets no prompt of its own, a newline would split one: both would shift every answer after it.
      if (line.trim() === '' || /[\r\n]/.test(line)) return Promise.reject(new IpsetSessionError(`not an ipset command line: ${JSON.stringify(line)}`));
    }
    const session = this.session();
    const answers = lines.map(
      (text) =>
        new Promise<string>((resolve, reject) => {
          session.pending.push({ text, resolve, reject });
        }),
    );
    this.busy(session);
    session.child.stdin?.write(lines.map((l) => `${l}\n`).join(''));
    return Promise.all(answers);
  }

  /** Starts the session ahead of the first grant (install does), so no grant waits for the fork. */
  start(): void {
    this.busy(this.session());
  }

  /** Ends the session (pending lines are rejected). */
  close(): void {
    const session = this.current;
    if (session) this.end(session, new IpsetSessionError('the ipset session was closed'));
  }

  private session(): Running {
    if (this.current && !this.current.ended) return this.current;
    const child = this.options.spawn ? this.options.spawn() : this.spawnDefault();
    return this.attach({ child, pending: [], buffer: '', ready: false, stray: '', ended: false });
  }

  private spawnDefault(): ChildProcess {
    const command: string[] = [...(this.options.prefix ?? []), 'sh', '-c', IPSET_SESSION_SCRIPT];
    return spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  }

  private attach(session: Running): Running {
    this.current = session;
    this.starts++;
    const { child } = session;
    unrefAll(child);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => this.onOutput(session, chunk));
    child.stderr?.on('data', (chunk: Buffer) => (session.stray += chunk.toString()));
    child.stdin?.on('error', () => undefined); // a dead session is reported by 'close'
    child.once('error', (err) =>
      this.end(
        session,
        new IpsetSessionError(`cannot start the ipset session (${IPSET_SESSION_SCRIPT}): ${err.message}; install ipset and coreutils`, { sameForEach: true }),
      ),
    );
    // 'close', not 'exit': the answers ipset printed before it died are read first.
    child.once('close', (code, signal) => this.end(session, this.exitError(session, code, signal)));
    return session;
  }

  private onOutput(session: Running, chunk: string): void {
    const text = session.buffer + chunk;
    let from = 0;
    let at: number;
    // One pass over the text, then one slice: a burst's answers arrive by the hundred per chunk.
    while ((at = text.indexOf(PROMPT, from)) >= 0) {
      const said = text.slice(from, at);
      from = at + PROMPT.length;
      if (!session.ready) {
        session.ready = true;
        session.stray += said;
        continue;
      }
      const line = session.pending.shift();
      if (line) line.resolve(said.trim());
      else session.stray += said;
    }
    session.buffer = text.slice(from);
    this.busy(session);
  }

  private exitError(session: Running, code: number | null, signal: NodeJS.Signals | null): IpsetSessionError {
    const said = `${session.stray}${session.buffer}`.trim().split('\n').slice(-3).join(' ');
    const how = signal ? `killed by ${signal}` : `exit status ${code}`;
    // Never reading a line (no first prompt): ipset or stdbuf is missing or refuses to run.
    return new IpsetSessionError(
      `the ipset session ended (${how})${said ? `: ${said}` : ''}; it is restarted on the next grant (needs ipset and stdbuf from coreutils)`,
      {
        sameForEach: !session.ready,
      },
    );
  }

  /** Rejects what is pending and forgets the session; the next run() starts another. */
  private end(session: Running, err: Error): void {
    if (session.ended) return;
    session.ended = true;
    if (this.current === session) {
      this.current = undefined;
      this.clearTimers();
    }
    for (const line of session.pending.splice(0)) line.reject(err);
    session.child.stdin?.end();
    if (session.child.exitCode === null && session.child.signalCode === null) session.child.kill('SIGKILL');
  }

  /** Re-arms the timers: a line timeout while lines are pending, an idle timeout otherwise. */
  private busy(session: Running): void {
    if (this.current !== session) return;
    this.clearTimers();
    const waiting = session.pending.length > 0;
    if (waiting) {
      // The process and its pipes are unreferenced: this timer is what holds the event loop open while lines are pending.
      this.lineTimer = setTimeout(
        () =>
          this.end(
            session,
            new IpsetSessionError(`ipset did not answer within ${this.lineTimeoutMs / 1000} s; the session was killed and is restarted on the next grant`),
          ),
        this.lineTimeoutMs,
      );
    } else {
      this.idleTimer = setTimeout(() => this.end(session, new IpsetSessionError('the ipset session ended after being idle')), this.idleMs);
      this.idleTimer.unref();
    }
  }

  private clearTimers(): void {
    clearTimeout(this.lineTimer);
    clearTimeout(this.idleTimer);
    this.lineTimer = undefined;
    this.idleTimer = undefined;
  }
}

/** The session never keeps the daemon (or a CLI command) alive on its own; pending lines do, through their timer. */
function unrefAll(child: ChildProcess): void {
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr] as Array<Socket | null>) {
    if (stream && typeof stream.unref === 'function') stream.unref();
  }
}
