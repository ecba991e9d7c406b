/**
 * Copies the step-1 workers' counters (monotonic totals in shared memory) into the daemon's
 * metrics as deltas: decisions and per-worker packets at scrape time, capture drops on the
 * maintenance tick. The workers never touch the registry; only this copies into it.
 */
import { STEP1_REASONS, STEP1_RESULTS, type IgnoreReason, type SpoofReason, type Step1Reason, type Step1Result } from '../step1/decision.js';
import type { Logger } from '../shared/log.js';
import type { DaemonMetrics } from './daemon-metrics.js';

/** Reasons of `ignored` and of `spoofed` (typed records: every reason of the type, no other). */
const IGNORED: Record<IgnoreReason, true> = { 'not-step1-port': true, 'pure-ack': true, fin: true, rst: true, 'bad-flags': true, 'handshake-none': true };
const SPOOFED: Record<SpoofReason, true> = { 'bad-cookie': true, 'no-ack': true };

/** The result of a packet refused for `reason`: a reason belongs to exactly one result. */
function resultOf(reason: Step1Reason): 'ignored' | 'spoofed' | 'rejected' {
  if (Object.hasOwn(IGNORED, reason)) return 'ignored';
  if (Object.hasOwn(SPOOFED, reason)) return 'spoofed';
  return 'rejected';
}

/**
 * The reasons that would tell a right key (or app) from a wrong one (`otp-required` and
 * `bad-otp` mean the key was right) count as one in the metrics, which more people read than
 * the log; the debug log keeps each.
 */
const CREDENTIAL_REASONS: ReadonlySet<Step1Reason> = new Set(['unknown-app', 'bad-key', 'otp-required', 'bad-otp', 'locked']);
export const STEP1_CREDENTIAL_REASON = 'bad-credentials';

/** Packets lost before inspection: kernel = queue full, enobufs = socket buffer overrun. */
export interface Step1Drops {
  kernel: number;
  enobufs: number;
}

/** One running worker as the pool reports it (see step1-workers/pool.ts WorkerStats). */
export interface Step1WorkerCount {
  slot: number;
  /** Its queue number or log group. */
  number: number;
  alive: boolean;
  packets: number;
}

/** What the counters are read from: the step-1 worker pool. */
export interface Step1CounterSource {
  counts(): { results: Record<Step1Result, number>; reasons: Record<Step1Reason, number> };
  stats(): Step1WorkerCount[];
  drops(): Step1Drops;
  readonly restartCount: number;
}

export type Step1Metrics = Pick<DaemonMetrics, 'step1Packets' | 'step1WorkerPackets' | 'step1Workers' | 'step1WorkerRestarts' | 'captureDrops'>;

export class Step1CountCopier {
  private readonly countedResults: Partial<Record<Step1Result, number>> = {};
  private readonly countedReasons: Partial<Record<Step1Reason, number>> = {};
  /** Per-worker packet counts already in the metrics, by queue number (log group) and worker slot. */
  private readonly countedWorkers = new Map<number, { slot: number; packets: number }>();
  private countedDrops: Step1Drops = { kernel: 0, enobufs: 0 };
  private countedRestarts = 0;

  constructor(
    private readonly metrics: Step1Metrics,
    private readonly logger: Pick<Logger, 'warn'>,
  ) {}

  /** At scrape time: decisions by result and reason, packets per worker, workers alive, restarts. */
  copyCounts(source: Step1CounterSource): void {
    this.copyDecisions(source.counts());
    const stats = source.stats();
    for (const worker of stats) this.copyWorkerPackets(worker);
    this.metrics.step1Workers.set(stats.filter((worker) => worker.alive).length);
    const restarts = source.restartCount - this.countedRestarts;
    if (restarts > 0) this.metrics.step1WorkerRestarts.inc(restarts);
    this.countedRestarts = Math.max(this.countedRestarts, source.restartCount);
  }

  /** Counts the drops since the last call, with a warning when there were any; returns them. */
  copyDrops(source: Pick<Step1CounterSource, 'drops'>): Step1Drops {
    const drops = source.drops();
    const kernel = drops.kernel - this.countedDrops.kernel;
    const enobufs = drops.enobufs - this.countedDrops.enobufs;
    if (kernel > 0) this.metrics.captureDrops.inc({ source: 'kernel' }, kernel);
    if (enobufs > 0) this.metrics.captureDrops.inc({ source: 'enobufs' }, enobufs);
    if (kernel > 0 || enobufs > 0) this.logger.warn({ kernel, enobufs }, 'step-1 packets dropped before inspection (flood or slow consumer)');
    this.countedDrops = drops;
    return { kernel, enobufs };
  }

  /**
   * Every series names its result: `{outcome=<result>, reason=""}` is the result's total, and
   * `{outcome=<result>, reason=<reason>}` breaks an ignored, spoofed or rejected total down.
   */
  private copyDecisions({ results, reasons }: ReturnType<Step1CounterSource['counts']>): void {
    for (const result of STEP1_RESULTS) {
      const delta = results[result] - (this.countedResults[result] ?? 0);
      if (delta > 0) this.metrics.step1Packets.inc({ outcome: result, reason: '' }, delta);
      this.countedResults[result] = results[result];
    }
    for (const reason of STEP1_REASONS) {
      const delta = reasons[reason] - (this.countedReasons[reason] ?? 0);
      const label = CREDENTIAL_REASONS.has(reason) ? STEP1_CREDENTIAL_REASON : reason;
      if (delta > 0) this.metrics.step1Packets.inc({ outcome: resultOf(reason), reason: label }, delta);
      this.countedReasons[reason] = reasons[reason];
    }
  }

  /** A slot taken over by another worker starts from 0 again; the series shows from the start. */
  private copyWorkerPackets(worker: Step1WorkerCount): void {
    const counted = this.countedWorkers.get(worker.number);
    const before = counted?.slot === worker.slot ? counted.packets : 0;
    const labels = { worker: String(worker.number) };
    this.metrics.step1WorkerPackets.inc(labels, Math.max(0, worker.packets - before));
    this.countedWorkers.set(worker.number, { slot: worker.slot, packets: Math.max(before, worker.packets) });
  }
}
