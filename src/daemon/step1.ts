/**
 * Step 1 in the daemon: one worker thread per queue (log group), sharing budgets, tables and used
 * codes through LastingState. Their grants open step-2 windows through the Granter, under the
 * running config; their counters reach the metrics at scrape time.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/types.js';
import { resolveStep1Workers } from '../config/workers.js';
import type { ClusterSync } from '../cluster/sync.js';
import type { DaemonMetrics } from '../metrics/daemon-metrics.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import { countRefusals, recordLock } from '../metrics/lockouts.js';
import { Step1CountCopier } from '../metrics/step1-counts.js';
import type { Granter } from '../sessions/grants.js';
import { errorFields } from '../shared/errors.js';
import type { CaptureKind } from '../shared/kinds.js';
import { logRefusedKnock } from '../shared/knock-refusal.js';
import type { Logger } from '../shared/log.js';
import { Step1Workers, type WorkerEvents } from '../step1-workers/pool.js';
import { currentMatch, type GrantEvent, type RejectionEvent, type RejectionsPosted } from '../step1-workers/protocol.js';
import { step1RefusalClass } from '../step1/decision.js';
import type { PreparedSwitch } from '../step2/listener.js';
import type { LastingState } from './lasting-state.js';
import type { RunningConfig } from './running.js';

export interface Step1Parts {
  running: RunningConfig;
  captureKind: CaptureKind;
  lasting: LastingState;
  granter: Granter;
  metrics: DaemonMetrics;
  problems: ProblemMemory;
  logger: Logger;
  /** Clustered: the codes step 1 accepted are claimed in the store. */
  sync?: ClusterSync;
}

export class Step1 {
  private workers: Step1Workers | undefined;
  private readonly counts: Step1CountCopier;

  constructor(private readonly parts: Step1Parts) {
    this.counts = new Step1CountCopier(parts.metrics, parts.logger);
    // The workers' counters reach the metrics only at scrape time.
    parts.metrics.registry.beforeScrape(() => {
      if (this.workers) this.counts.copyCounts(this.workers);
    });
  }

  /** Throws when a queue number or log group cannot be bound (e.g. another process holds it). */
  async open(): Promise<void> {
    const { captureKind, lasting, problems, logger, running } = this.parts;
    this.workers = await Step1Workers.start(
      {
        kind: captureKind,
        shared: lasting.shared,
        cookieSecret: lasting.cookieSecret,
        logger,
        logRejections: rejectionsPosted(logger),
        onEvents: (events) => this.onWorkerEvents(events),
        onProblem: (problem) => problems.note(problem),
      },
      this.captureNumbers(running.config),
      running.config,
    );
  }

  /** The queue numbers (log groups) read now, one per worker. */
  numbers(): number[] {
    return this.workers?.numbers() ?? [];
  }

  /** For `systemctl status`: `nfqueue 5-6`, `nflog group 7`. */
  describe(): string {
    const numbers = this.numbers();
    const range = numbers.length > 1 ? `${numbers[0]}-${numbers[numbers.length - 1]}` : String(numbers[0] ?? '-');
    return this.parts.captureKind === 'nfqueue' ? `nfqueue ${range}` : `nflog group ${range}`;
  }

  /** A reload to `next`: workers on its queues (log groups) next to the running ones; none when they stay the same. */
  async prepare(next: Config): Promise<PreparedSwitch | undefined> {
    const numbers = this.captureNumbers(next);
    if (!this.workers || numbers.join(',') === this.numbers().join(',')) return undefined;
    return this.workers.prepare(numbers, next);
  }

  /** The running workers judge by `next` from now on. */
  reconfigure(next: Config): void {
    this.workers?.reconfigure(next, rejectionsPosted(this.parts.logger));
  }

  /** Each maintenance tick: the capture's drop counters into the metrics. */
  copyDrops(): void {
    if (this.workers) this.counts.copyDrops(this.workers);
  }

  problems(): string[] {
    return this.workers ? this.workers.problems() : ['step-1 capture is not open'];
  }

  async stop(): Promise<void> {
    await this.workers?.stop();
    this.workers = undefined;
  }

  /** The queue numbers (log groups) step 1 reads under a config: one per worker, consecutive. */
  private captureNumbers(config: Config): number[] {
    const g = config.global;
    const first = this.parts.captureKind === 'nfqueue' ? g.queueNum : g.nflogGroup;
    return Array.from({ length: resolveStep1Workers(g.step1Workers) }, (_, i) => first + i);
  }

  /**
   * What a worker posted after a batch: grants to make (the worker already dropped the packets
   * and sent its SYN-ACKs), and what to log and count. Never blocks a worker.
   */
  private onWorkerEvents(events: WorkerEvents): void {
    const { metrics, lasting, logger, sync } = this.parts;
    for (const grant of events.grants) this.grantStep2(grant, grant.receivedAt - performance.timeOrigin);
    for (const r of events.rejections) this.logRejection(r);
    for (const event of events.locks) recordLock(logger, metrics, event);
    countRefusals(metrics, events.refusals);
    if (events.codes.length > 0) lasting.usedCodes.changed();
    if (sync) for (const code of events.codes) sync.codeClaimed(code, 'step1');
  }

  /**
   * The info line for a judged knock (packaging/fail2ban/ bans on it), only when the cookie
   * handshake proved its source address; the detailed reason at debug.
   */
  private logRejection(r: RejectionEvent): void {
    const { logger, running } = this.parts;
    logger.debug({ ip: r.src, sport: r.sport, result: r.result, reason: r.reason }, 'step-1 knock refused');
    const refusal = step1RefusalClass(r.reason);
    if (refusal !== undefined && running.config.global.step1Handshake === 'cookie')
      logRefusedKnock(logger, { ip: r.src, port: r.sport, step: 1, class: refusal });
  }

  /** A worker's grant opens the step-2 window if it still stands under the running config (see currentMatch). */
  private grantStep2(grant: GrantEvent, knockAt: number): void {
    const { ip } = grant;
    const { logger, granter, problems, running } = this.parts;
    const matched = currentMatch(grant, running.config.apps);
    if (!matched) {
      logger.info({ ip, app: grant.app, user: grant.user }, 'step-1 knock judged on the config before the reload: not granted');
      return;
    }
    granter.openStep2Window(ip, matched.app, matched.user, knockAt).catch((err: unknown) => {
      problems.note('a firewall grant failed (see the error log)');
      logger.error({ ip, app: matched.app.name, ...errorFields(err) }, 'step-2 window could not be opened');
    });
  }
}

/** What the workers post: everything at debug, the judged refusals at info (see logRejection). */
function rejectionsPosted(logger: Logger): RejectionsPosted {
  if (logger.isLevelEnabled('debug')) return 'all';
  return logger.isLevelEnabled('info') ? 'judged' : 'none';
}
