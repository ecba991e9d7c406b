/**
 * The main thread's side of the step-1 worker threads: one worker per queue number (NFQUEUE)
 * or log group (NFLOG), started, reconfigured on reload, restarted when one dies, stopped.
 * The main thread makes the grants the workers post, and reads their counters from shared
 * memory when metrics are scraped.
 *
 * A dead worker's queue has no reader until it is back, so the kernel drops what arrives there
 * (fail closed): the death is logged, `health` reports it, and it is restarted after a second.
 */
import { Worker } from 'node:worker_threads';
import type { CaptureDrops } from '../capture/step1-capture.js';
import type { Config } from '../config/types.js';
import { errorFields, KnockPortError } from '../shared/errors.js';
import type { CaptureKind } from '../shared/kinds.js';
import type { Logger } from '../shared/log.js';
import { STEP1_REASONS, STEP1_RESULTS, type Step1Reason, type Step1Result } from '../step1/decision.js';
import type { SharedStateBuffers } from '../step1/shared-state.js';
import {
  COUNTER_ENOBUFS,
  COUNTER_KERNEL_DROPS,
  COUNTER_REASONS,
  COUNTER_RESULTS,
  WORKER_COUNTERS,
  type MainMessage,
  type RejectionsPosted,
  type WorkerInit,
  type WorkerMessage,
} from './protocol.js';

export class Step1WorkerError extends KnockPortError {}

export type WorkerEvents = Extract<WorkerMessage, { type: 'events' }>;

export interface Step1WorkersOptions {
  kind: CaptureKind;
  shared: SharedStateBuffers;
  cookieSecret: Buffer;
  logger: Logger;
  /** Workers post their rejections only when the main thread logs them. */
  logRejections: RejectionsPosted;
  onEvents(events: WorkerEvents): void;
  onProblem(problem: string): void;
}

/** Counter slots: twice the most workers, since a reload opens new ones before closing old ones. */
const SLOTS = 32;
const RESTART_DELAY_MS = 1_000;
const RETRY_DELAY_MS = 5_000;
/** A worker that does not end within this after `stop` is terminated. */
const STOP_TIMEOUT_MS = 3_000;
const WORKER_SCRIPT = new URL('./worker.js', import.meta.url);

interface Running {
  slot: number;
  number: number;
  worker: Worker | undefined;
  alive: boolean;
  stopping: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  /** The slot's packet count when this worker took it (slots are reused). */
  startPackets: number;
}

/** Per-worker numbers for metrics. */
export interface WorkerStats {
  slot: number;
  number: number;
  alive: boolean;
  /** Every packet the workers of this number inspected since it was added, whatever the outcome. */
  packets: number;
}

export class Step1Workers {
  private readonly counters = new SharedArrayBuffer(SLOTS * WORKER_COUNTERS * 8);
  private readonly view = new Float64Array(this.counters);
  private readonly running = new Map<number, Running>();
  private config: Config;
  private restarts = 0;
  private stopped = false;

  private constructor(
    private readonly options: Step1WorkersOptions,
    config: Config,
  ) {
    this.config = config;
  }

  /** One worker per number; throws (with every worker stopped) when one cannot bind its capture. */
  static async start(options: Step1WorkersOptions, numbers: readonly number[], config: Config): Promise<Step1Workers> {
    const pool = new Step1Workers(options, config);
    try {
      await Promise.all(numbers.map((number) => pool.add(number)));
    } catch (err) {
      await pool.stop();
      throw err;
    }
    return pool;
  }

  /** The queue numbers or log groups read now, in order. */
  numbers(): number[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  get restartCount(): number {
    return this.restarts;
  }

  /**
   * For a reload that changes the numbers: starts workers for the new ones next to the running
   * ones (throws, with those stopped again, when one cannot bind). `apply` then stops the workers
   * of numbers no longer wanted; `cancel` stops the new ones.
   */
  async prepare(numbers: readonly number[], config: Config): Promise<{ apply(): Promise<void>; cancel(): Promise<void> }> {
    const added = numbers.filter((number) => !this.running.has(number));
    const removed = this.numbers().filter((number) => !numbers.includes(number));
    const started: number[] = [];
    const previous = this.config;
    this.config = config;
    try {
      await Promise.all(
        added.map(async (number) => {
          await this.add(number);
          started.push(number);
        }),
      );
    } catch (err) {
      this.config = previous;
      await Promise.all(started.map((number) => this.remove(number)));
      throw err;
    }
    this.config = previous;
    return {
      apply: async () => {
        await Promise.all(removed.map((number) => this.remove(number)));
      },
      cancel: async () => {
        await Promise.all(added.map((number) => this.remove(number)));
      },
    };
  }

  /** A reloaded config for every worker: each builds a new inspector on the same shared state. */
  reconfigure(config: Config, logRejections: RejectionsPosted): void {
    this.config = config;
    this.options.logRejections = logRejections;
    for (const running of this.running.values()) this.send(running, { type: 'config', config, logRejections });
  }

  /** Health problems: workers down right now. */
  problems(): string[] {
    const what = this.options.kind === 'nfqueue' ? 'queue' : 'log group';
    return [...this.running.values()]
      .filter((running) => !running.alive)
      .map((running) => `step-1 worker for ${what} ${running.number} is down (restarting; the kernel drops that ${what}'s packets meanwhile)`);
  }

  /** Decisions of every worker that ever ran, summed (monotonic: slots keep their counts). */
  counts(): { results: Record<Step1Result, number>; reasons: Record<Step1Reason, number> } {
    const results = Object.fromEntries(STEP1_RESULTS.map((result, i) => [result, this.sum(COUNTER_RESULTS + i)])) as Record<Step1Result, number>;
    const reasons = Object.fromEntries(STEP1_REASONS.map((reason, i) => [reason, this.sum(COUNTER_REASONS + i)])) as Record<Step1Reason, number>;
    return { results, reasons };
  }

  drops(): CaptureDrops {
    return { kernel: this.sum(COUNTER_KERNEL_DROPS), enobufs: this.sum(COUNTER_ENOBUFS) };
  }

  /** Per worker (slot) now running: packets inspected so far. */
  stats(): WorkerStats[] {
    return [...this.running.values()]
      .sort((a, b) => a.number - b.number)
      .map((running) => {
        return { slot: running.slot, number: running.number, alive: running.alive, packets: this.slotPackets(running.slot) - running.startPackets };
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.numbers().map((number) => this.remove(number)));
  }

  private slotPackets(slot: number): number {
    let packets = 0;
    for (let i = 0; i < STEP1_RESULTS.length; i++) packets += this.view[slot * WORKER_COUNTERS + COUNTER_RESULTS + i]!;
    return packets;
  }

  private sum(index: number): number {
    let total = 0;
    for (let slot = 0; slot < SLOTS; slot++) total += this.view[slot * WORKER_COUNTERS + index]!;
    return total;
  }

  private freeSlot(): number {
    const used = new Set([...this.running.values()].map((running) => running.slot));
    for (let slot = 0; slot < SLOTS; slot++) if (!used.has(slot)) return slot;
    throw new Step1WorkerError(`no counter slot left for another step-1 worker (at most ${SLOTS} at once)`);
  }

  private async add(number: number): Promise<void> {
    const slot = this.freeSlot();
    const running: Running = { slot, number, worker: undefined, alive: false, stopping: false, restartTimer: undefined, startPackets: this.slotPackets(slot) };
    this.running.set(number, running);
    try {
      await this.spawn(running);
    } catch (err) {
      this.running.delete(number);
      throw err;
    }
  }

  /** Starts the thread of `running`; resolves once its capture is bound. */
  private spawn(running: Running): Promise<void> {
    const { kind, shared, cookieSecret, logRejections } = this.options;
    const init: WorkerInit = {
      slot: running.slot,
      kind,
      number: running.number,
      config: this.config,
      shared,
      counters: this.counters,
      cookieSecret: new Uint8Array(cookieSecret),
      logRejections,
    };
    const worker = new Worker(WORKER_SCRIPT, { workerData: init, name: `step1-${running.number}` });
    running.worker = worker;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') {
          running.alive = true;
          settle();
        } else if (message.type === 'failed') {
          settle(new Step1WorkerError(`step-1 worker for ${this.what(running)}: ${message.message}`));
        } else if (message.type === 'events') {
          this.options.onEvents(message);
        } else {
          this.options.onProblem(message.problem);
        }
      });
      worker.on('error', (err) => {
        this.options.logger.error(
          { worker: running.slot, [this.options.kind === 'nfqueue' ? 'queue' : 'group']: running.number, ...errorFields(err) },
          'step-1 worker failed',
        );
        settle(new Step1WorkerError(`step-1 worker for ${this.what(running)} failed: ${err.message}`, { cause: err }));
      });
      worker.on('exit', (code) => {
        // Only a worker that was running died: one that never got ready has already failed its start.
        const wasAlive = running.alive;
        running.alive = false;
        settle(new Step1WorkerError(`step-1 worker for ${this.what(running)} ended before it was ready (exit code ${code})`));
        if (wasAlive && running.worker === worker && !running.stopping && !this.stopped) this.died(running, code);
      });
    });
  }

  /** A worker that was running ended on its own: log it, and start it again (fail closed meanwhile). */
  private died(running: Running, code: number): void {
    running.worker = undefined;
    this.restarts++;
    this.options.logger.error(
      { worker: running.slot, [this.options.kind === 'nfqueue' ? 'queue' : 'group']: running.number, exitCode: code },
      `step-1 worker for ${this.what(running)} stopped; restarting it (the kernel drops its packets until then)`,
    );
    this.scheduleRestart(running, RESTART_DELAY_MS);
  }

  private scheduleRestart(running: Running, delay: number): void {
    running.restartTimer = setTimeout(() => {
      running.restartTimer = undefined;
      if (running.stopping || this.stopped) return;
      this.spawn(running).then(
        () => this.options.logger.info({ worker: running.slot }, `step-1 worker for ${this.what(running)} restarted`),
        (err: unknown) => {
          this.options.logger.error(errorFields(err), `step-1 worker for ${this.what(running)} could not be restarted; retrying`);
          if (running.worker) running.worker = undefined;
          this.scheduleRestart(running, RETRY_DELAY_MS);
        },
      );
    }, delay);
    running.restartTimer.unref();
  }

  /** Stops one worker: asks it to close its capture, terminates it if it does not end in time. */
  private async remove(number: number): Promise<void> {
    const running = this.running.get(number);
    if (!running) return;
    this.running.delete(number);
    running.stopping = true;
    clearTimeout(running.restartTimer);
    const worker = running.worker;
    if (!worker || worker.threadId === -1) return; // never started, or already ended
    const ended = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.send(running, { type: 'stop' });
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    await ended;
    clearTimeout(timer);
  }

  private send(running: Running, message: MainMessage): void {
    running.worker?.postMessage(message);
  }

  private what(running: Running): string {
    return `${this.options.kind === 'nfqueue' ? 'queue' : 'log group'} ${running.number}`;
  }
}
