/**
 * Runs nft command text for the nftables and VyOS backends: in-process through libnftables when
 * the addon is built (no fork per grant; grants on a thread of their own), else the `nft` command.
 * On kernels 6.9+ the in-process runner can also make knock-port's table owned by the netlink
 * socket it writes through (ownTable), so that no other process can flush or delete it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants as osConstants, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { KnockPortError } from '../shared/errors.js';
import { oneLine } from '../shared/one-line.js';
import { callNative, loadNativeAddon, type NativeNftContext } from '../native/addon.js';
import { spawnCollect, type ChildOutput } from './command.js';
import type { NftThreadReply, NftThreadRequest, NftThreadTask } from './nft-thread.js';

export class NftError extends KnockPortError {
  constructor(
    message: string,
    readonly script: string,
  ) {
    // nft's errors end in a caret diagram under the failing line: one line for logs and terminals alike.
    super(oneLine(message));
  }
}

/** An nft table. knock-port's own is always `inet NAME`: one table holds both families. */
export interface NftTable {
  family: 'inet';
  name: string;
}

export function tableRef(table: NftTable): string {
  return `${table.family} ${table.name}`;
}

/** Whether a runner can own knock-port's table (kernel table flags owner and persist), and why not. */
export type TableOwnershipSupport = { supported: true } | { supported: false; reason: string };

/** What ownTable did: the table is the runner's, or why not. */
export type TableOwnershipOutcome = { owned: true } | { owned: false; errno: number; reason: string };

const { EOPNOTSUPP, EPERM } = osConstants.errno;

function errnoName(errno: number): string {
  return Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
}

/**
 * The decision, from the probe's answer: owner+persist tables where the kernel accepts both flags
 * (Linux 6.9+). Without persist an owned table would vanish with its owner's socket (a crash would
 * open everything), so owner alone is never used.
 */
export function tableOwnershipSupport(probeErrno: number | undefined, kernelRelease = release()): TableOwnershipSupport {
  if (probeErrno === undefined) return { supported: false, reason: 'the native addon predates table ownership: rebuild it (npx node-gyp rebuild)' };
  if (probeErrno === 0) return { supported: true };
  if (probeErrno === EOPNOTSUPP) return { supported: false, reason: `kernel ${kernelRelease} lacks the table flag persist (Linux 6.9+)` };
  return { supported: false, reason: `the kernel refused the ownership probe (${errnoName(probeErrno)})` };
}

/** Why the kernel refused to make `table` owned. */
export function ownershipRefusal(table: NftTable, errno: number): string {
  const ref = tableRef(table);
  if (errno === EPERM) return `another process owns table ${ref} (a second knock-port daemon?)`;
  if (errno === EOPNOTSUPP) {
    return `table ${ref} exists without the flag persist (made by an older knock-port or another tool), which the kernel adds only to a new table: it is owned once re-created (stop knock-port, run \`knock-port uninstall\`, start it again)`;
  }
  return `the kernel refused to make table ${ref} owned (${errnoName(errno)})`;
}

/** Runs nft command text (the `nft -f` language) and returns nft's output. */
export interface NftRunner {
  /** `json`: ask for JSON output (list commands). `check`: parse and validate only (`nft -c`). */
  run(script: string, options?: { json?: boolean; check?: boolean }): string;
  /**
   * The same without blocking on a child process (grants, self-heal). libnftables runs
   * in-process and returns at once: its cost is the parse and the netlink round trip.
   */
  runAsync?(script: string, options?: { json?: boolean; check?: boolean }): Promise<string>;
  readonly kind: 'libnftables' | 'cli';
  /** Whether ownTable() can work here (probed once). Absent: never (one `nft` process per call owns nothing). */
  tableOwnership?(): TableOwnershipSupport;
  /**
   * Makes `table` owned by the netlink socket runAsync() writes through: created if absent,
   * adopted when its owner is gone (a previous daemon), kept when already that socket's. From
   * then on only runAsync() may change it, and it must not be declared (`add table` sends flags
   * 0, which the kernel refuses on an owned table).
   */
  ownTable?(table: NftTable): Promise<TableOwnershipOutcome>;
  /** Releases in-process resources (libnftables context). */
  close?(): void;
}

/** Fallback runner: one `nft -f -` process per call (about 2.4 ms each). */
export class CliNftRunner implements NftRunner {
  readonly kind = 'cli' as const;

  /** `prefix`: a command to run nft behind, e.g. `['ip', 'netns', 'exec', NS]`. */
  constructor(
    private readonly binary = 'nft',
    private readonly prefix: string[] = [],
  ) {}

  run(script: string, options: { json?: boolean; check?: boolean } = {}): string {
    const [file, ...args] = this.command(script, options);
    try {
      return execFileSync(file, args, { input: script, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string; code?: string };
      if (err.code === 'ENOENT') throw new NftError(`'${this.binary}' not found: install the nftables package`, script);
      throw new NftError(`nft failed: ${err.stderr?.trim() || err.message.trim()}`, script);
    }
  }

  /** One `nft` child process, awaited: the event loop runs meanwhile. */
  async runAsync(script: string, options: { json?: boolean; check?: boolean } = {}): Promise<string> {
    const [file, ...args] = this.command(script, options);
    let out: ChildOutput;
    try {
      out = await spawnCollect(file, args, script);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NftError(`'${this.binary}' not found: install the nftables package`, script);
      throw new NftError(`nft could not be run: ${(e as Error).message}`, script);
    }
    if (out.code === 0) return out.stdout;
    throw new NftError(`nft failed: ${out.stderr.trim() || `exit status ${out.code ?? out.signal}`}`, script);
  }

  private command(script: string, options: { json?: boolean; check?: boolean }): [string, ...string[]] {
    // `nft -j -f -` first tries to read the input as JSON and cannot reread stdin: pass list commands as arguments.
    const input = options.json ? ['-j', ...script.trim().split(/\s+/)] : ['-f', '-'];
    const nftArgs = [...(options.check ? ['-c'] : []), ...input];
    return [...this.prefix, this.binary, ...nftArgs] as [string, ...string[]];
  }
}

/** The worker thread's script, next to this file once compiled (absent when running from sources). */
const NFT_THREAD_SCRIPT = new URL('./nft-thread.js', import.meta.url);
/** A thread that keeps dying is given up on: runAsync then runs in-process. */
const MAX_THREAD_STARTS = 3;

/**
 * The libnftables thread (nft-thread.ts), started on first use: requests in order, one reply
 * each. It holds the event loop open only while a request is pending.
 */
class NftThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (reply: NftThreadReply) => void; reject: (err: Error) => void }>();
  private nextId = 1;

  constructor(onGone: () => void) {
    this.worker = new Worker(NFT_THREAD_SCRIPT);
    this.worker.unref();
    this.worker.on('message', (reply: NftThreadReply) => {
      this.pending.get(reply.id)?.resolve(reply);
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
    });
    const gone = (why: string): void => {
      onGone();
      for (const { reject } of this.pending.values()) reject(new NftError(`the libnftables thread ${why}; the next command starts another`, ''));
      this.pending.clear();
    };
    this.worker.on('error', (err) => gone(`failed: ${err.message}`));
    this.worker.on('exit', (code) => gone(`exited (status ${code})`));
  }

  run(task: NftThreadTask): Promise<NftThreadReply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...task, id } satisfies NftThreadRequest);
    });
  }

  close(): void {
    void this.worker.terminate();
  }
}

/**
 * In-process runner through libnftables (about 0.06 ms per small command, no fork). It acts
 * on the network namespace of this process. run() parses on the calling thread; runAsync()
 * (grants, install, self-heal) goes to a libnftables thread of its own, so a batch of grants
 * never holds up the event loop; without the compiled thread script it runs in-process. The
 * context runAsync() uses is also the one ownTable() makes the owner of knock-port's table.
 */
export class LibnftablesRunner implements NftRunner {
  readonly kind = 'libnftables' as const;
  private thread: NftThread | undefined;
  private threadStarts = 0;
  private support: TableOwnershipSupport | undefined;

  private constructor(
    private readonly context: NativeNftContext,
    private readonly probeOwnership: (() => number) | undefined,
  ) {}

  /** Throws NativeAddonMissingError when the addon is not built. */
  static open(): LibnftablesRunner {
    const addon = loadNativeAddon();
    return new LibnftablesRunner(
      callNative(() => new addon.NftContext()),
      addon.NftContext.probeTableOwnership?.bind(addon.NftContext),
    );
  }

  tableOwnership(): TableOwnershipSupport {
    this.support ??= tableOwnershipSupport(this.probeOwnership && callNative(this.probeOwnership));
    return this.support;
  }

  async ownTable(table: NftTable): Promise<TableOwnershipOutcome> {
    const thread = this.threadForAsync();
    let errno: number;
    if (thread) {
      const reply = await thread.run({ own: table });
      if (reply.status < 0) return { owned: false, errno: reply.status, reason: reply.error };
      errno = reply.status;
    } else {
      const own = this.context.ownTable?.bind(this.context);
      if (!own) return { owned: false, errno: -1, reason: 'the native addon predates table ownership: rebuild it' };
      try {
        errno = callNative(() => own(table.family, table.name));
      } catch (e) {
        return { owned: false, errno: -1, reason: (e as Error).message };
      }
    }
    return errno === 0 ? { owned: true } : { owned: false, errno, reason: ownershipRefusal(table, errno) };
  }

  run(script: string, options: { json?: boolean; check?: boolean } = {}): string {
    const result = callNative(() => this.context.run(script, { json: options.json, dryRun: options.check }));
    if (result.status !== 0) throw new NftError(`nft failed: ${(result.error || 'unknown error').trim()}`, script);
    return result.output;
  }

  async runAsync(script: string, options: { json?: boolean; check?: boolean } = {}): Promise<string> {
    const thread = this.threadForAsync();
    if (!thread) return this.run(script, options);
    const result = await thread.run({ script, ...(options.json ? { json: true } : {}), ...(options.check ? { check: true } : {}) });
    if (result.status !== 0) throw new NftError(`nft failed: ${(result.error || 'unknown error').trim()}`, script);
    return result.output;
  }

  /** True when runAsync() works off the main thread. */
  get threaded(): boolean {
    return this.threadForAsync() !== undefined;
  }

  private threadForAsync(): NftThread | undefined {
    if (this.thread) return this.thread;
    if (this.threadStarts >= MAX_THREAD_STARTS || !existsSync(fileURLToPath(NFT_THREAD_SCRIPT))) return undefined;
    this.threadStarts++;
    const thread = new NftThread(() => {
      if (this.thread === thread) this.thread = undefined;
    });
    this.thread = thread;
    return thread;
  }

  close(): void {
    this.thread?.close();
    this.thread = undefined;
    this.threadStarts = MAX_THREAD_STARTS;
    this.context.close();
  }
}

/** libnftables when the native addon loads, else one `nft` process per call. */
export function createNftRunner(options: { prefer?: NftRunner['kind'] } = {}): NftRunner {
  if (options.prefer !== 'cli') {
    try {
      return LibnftablesRunner.open();
    } catch {
      // Falls through: the CLI runner needs nothing but the nft binary.
    }
  }
  return new CliNftRunner();
}

/** Runs nft text without blocking on a child process: the runner's async path, else its in-process one. */
export async function runNft(nft: NftRunner, script: string, options: { json?: boolean; check?: boolean } = {}): Promise<string> {
  return nft.runAsync ? nft.runAsync(script, options) : nft.run(script, options);
}
