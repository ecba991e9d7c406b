/**
 * Runs capture-child.mjs inside a test namespace and reads its JSON-line events. The
 * child imports the compiled modules from dist/, which is rebuilt here when stale.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../../helpers/netns.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
export const CHILD_SCRIPT = fileURLToPath(new URL('./capture-child.mjs', import.meta.url));
const ADDON = `${root}build/Release/knockport_native.node`;

export type ChildEvent = { event: string } & Record<string, unknown>;

function newestMtime(dir: string): number {
  return Math.max(...readdirSync(dir).map((f) => statSync(`${dir}/${f}`).mtimeMs));
}

/** Why the capture tests cannot run (addon not built), after compiling dist/ if needed. */
export function prepareBuild(): string | undefined {
  if (!existsSync(ADDON)) return 'the native addon is not built: run `npx node-gyp rebuild` (needs the -dev packages)';
  const built = `${root}dist/capture/nfqueue.js`;
  const stale = !existsSync(built) || statSync(built).mtimeMs < Math.max(...['capture', 'firewall', 'native'].map((dir) => newestMtime(`${root}src/${dir}`)));
  if (stale) {
    // tsc still emits when another module has type errors; only a missing output is fatal.
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'ignore' });
    } catch {
      /* checked below */
    }
    if (!existsSync(built)) return 'dist/ could not be built: run `npx tsc -p tsconfig.json`';
  }
  return undefined;
}

export class CaptureChild {
  readonly events: ChildEvent[] = [];
  private readonly waiters: Array<() => void> = [];

  constructor(readonly process: ChildProcess) {
    createInterface({ input: process.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as ChildEvent);
      } catch {
        this.events.push({ event: 'output', line });
      }
      this.waiters.splice(0).forEach((wake) => wake());
    });
    process.on('exit', () => this.waiters.splice(0).forEach((wake) => wake()));
  }

  static start(ns: Netns, ...args: string[]): CaptureChild {
    return new CaptureChild(ns.spawn('node', [CHILD_SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'inherit'] }));
  }

  /** The first event named `name` (waiting up to `timeoutMs`); throws with what came instead. */
  async next(name: string, timeoutMs = 10_000): Promise<ChildEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === name || e.event === 'error');
      if (found?.event === name) return found;
      if (found) throw new Error(`capture child failed: ${JSON.stringify(found)}`);
      if (Date.now() > deadline || this.process.exitCode !== null) {
        throw new Error(`no '${name}' event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`);
      }
      await new Promise<void>((wake) => {
        this.waiters.push(wake);
        setTimeout(wake, 100);
      });
    }
  }

  batches(): ChildEvent[] {
    return this.events.filter((e) => e.event === 'batch');
  }

  /** Closes stdin: the child closes its sockets, prints `done` with its counters, and exits. */
  async stop(): Promise<ChildEvent> {
    this.process.stdin?.end();
    return this.next('done');
  }

  kill(): void {
    if (this.process.exitCode === null) this.process.kill('SIGKILL');
  }
}

/** Runs the child to completion (for one-shot modes and expected failures). */
export async function runChild(ns: Netns, ...args: string[]): Promise<ChildEvent[]> {
  const child = CaptureChild.start(ns, ...args);
  child.process.stdin?.end();
  await new Promise((done) => child.process.on('close', done));
  return child.events;
}

/** Sends `count` UDP datagrams from `ns` to addr:port as fast as the socket takes them. */
export function udpBurst(ns: Netns, addr: string, port: number, count: number): void {
  ns.exec('node', [
    '-e',
    `
    const s = require('dgram').createSocket('udp4'); let n = 0; const b = Buffer.alloc(32);
    (function next() { if (n++ >= ${count}) return s.close(); s.send(b, ${port}, '${addr}', next); })();`,
  ]);
}
