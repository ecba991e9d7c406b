/**
 * Runs nft command text for the nftables and VyOS backends: in-process through libnftables when
 * the addon is built (no fork per grant; grants on a thread of their own), else the `nft` command.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { KnockPortError } from '../shared/errors.js';
import { callNative, loadNativeAddon, type NativeNftContext } from '../native/addon.js';
import { spawnCollect, type ChildOutput } from './command.js';
import type { NftThreadReply, NftThreadRequest } from './nft-thread.js';

export class NftError extends KnockPortError {
  constructor(
    message: string,
    readonly script: string,
  ) {
    super(message);
  }
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

  run(request: Omit<NftThreadRequest, 'id'>): Promise<NftThreadReply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...request, id } satisfies NftThreadRequest);
    });
  }

  close(): void {
    void this.worker.terminate();
  }
}

/**
 * In-process runner through libnftables (about 0.06 ms per small command, no fork). It acts
 * on the network namespace of this process. run() parses on the calling thread; runAsync()
 * (grants, self-heal) goes to a libnftables thread of its own, so a batch of grants never
 * holds up the event loop; without the compiled thread script it runs in-process.
 */
export class LibnftablesRunner implements NftRunner {
  readonly kind = 'libnftables' as const;
  private thread: NftThread | undefined;
  private threadStarts = 0;

  private constructor(private readonly context: NativeNftContext) {}

  /** Throws NativeAddonMissingError when the addon is not built. */
  static open(): LibnftablesRunner {
    const addon = loadNativeAddon();
    return new LibnftablesRunner(callNative(() => new addon.NftContext()));
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
