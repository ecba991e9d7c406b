/**
 * One step-1 worker thread: its own capture socket (NFQUEUE queue or NFLOG group), its own
 * inspector and raw sender. It inspects every packet, gives NFQUEUE its drop verdicts, sends
 * its SYN-ACKs (and RSTs) itself, and only posts grants and log events to the main thread:
 * nothing here waits on the main thread. The budgets, the retransmission table, the lockout
 * counts and the used one-time codes are shared with the other workers (shared-state.ts).
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { SecretLockout, lockoutPolicy, type LockEvent, type LockFactor } from '../auth/lockout.js';
import { TotpVerifier } from '../auth/totp.js';
import { UsedCodes, type UsedCode } from '../auth/used-codes.js';
import type { PacketBatch } from '../native/packet-batch.js';
import { RawPacketSender } from '../capture/raw-socket.js';
import { openStep1Capture, type Step1Capture } from '../capture/step1-capture.js';
import type { Config } from '../config/types.js';
import { KeyedCookieSource } from '../step1/cookie.js';
import { STEP1_REASONS, STEP1_RESULTS, step1RefusalClass, type Step1Decision } from '../step1/decision.js';
import { Inspector } from '../step1/inspector.js';
import { SharedDecidedSegments, SharedLockoutStates, SharedSourceBudget, SharedUsedCodeStore } from '../step1/shared-state.js';
import {
  COUNTER_ENOBUFS,
  COUNTER_KERNEL_DROPS,
  COUNTER_REASONS,
  COUNTER_RESULTS,
  WORKER_COUNTERS,
  credentialFingerprint,
  reviveConfig,
  type GrantEvent,
  type MainMessage,
  type RejectionEvent,
  type RejectionsPosted,
  type WorkerInit,
  type WorkerMessage,
} from './protocol.js';

/** How often capture drop counters are copied to shared memory. */
const DROPS_INTERVAL_MS = 1_000;
/** A problem (raw socket errors) is posted at most this often: a flood must not flood the main thread. */
const PROBLEM_INTERVAL_MS = 5_000;

class Step1Worker {
  private config: Config;
  private inspector: Inspector;
  private logRejections: RejectionsPosted;
  private readonly cookie: KeyedCookieSource;
  private readonly lockout: SecretLockout;
  private readonly totp: TotpVerifier;
  private readonly decided: SharedDecidedSegments;
  private readonly counters: Float64Array;
  /** What this slot had counted before this inspector (earlier workers in the slot, earlier configs). */
  private base: Float64Array;
  private readonly sender: RawPacketSender;
  private capture: Step1Capture | undefined;
  private dropsTimer: NodeJS.Timeout | undefined;
  private readonly problemsPosted = new Map<string, number>();
  // Events of the batch being inspected, posted together once it is done.
  private grants: GrantEvent[] = [];
  private rejections: RejectionEvent[] = [];
  private locks: LockEvent[] = [];
  private refusals: Partial<Record<LockFactor, number>> = {};
  private codes: UsedCode[] = [];
  private dropsBase = { kernel: 0, enobufs: 0 };

  constructor(private readonly init: WorkerInit) {
    this.config = reviveConfig(init.config);
    this.logRejections = init.logRejections;
    this.cookie = new KeyedCookieSource(Buffer.from(init.cookieSecret));
    this.lockout = new SecretLockout(lockoutPolicy(this.config.global), {
      states: new SharedLockoutStates(init.shared),
      onLock: (event) => this.locks.push(event),
      onRefused: (factor) => (this.refusals[factor] = (this.refusals[factor] ?? 0) + 1),
    });
    const used = new UsedCodes({
      store: new SharedUsedCodeStore(init.shared),
      onChange: (code) => {
        this.codes.push({ ...code });
      },
      onFull: () => this.postProblem('one-time codes refused: the used-code cache is full (too many codes accepted within 90 s)'),
    });
    this.totp = new TotpVerifier(1, undefined, used);
    this.decided = new SharedDecidedSegments(init.shared);
    this.counters = new Float64Array(init.counters, init.slot * WORKER_COUNTERS * 8, WORKER_COUNTERS);
    this.base = this.counters.slice();
    this.dropsBase = { kernel: this.counters[COUNTER_KERNEL_DROPS]!, enobufs: this.counters[COUNTER_ENOBUFS]! };
    this.inspector = this.buildInspector();
    this.sender = RawPacketSender.open({ mark: this.config.global.packetMark, ipv6: this.config.global.ipv6 });
  }

  private buildInspector(): Inspector {
    const g = this.config.global;
    return new Inspector(this.config, {
      cookie: this.cookie,
      lockout: this.lockout,
      totp: this.totp,
      budget: new SharedSourceBudget(this.init.shared, g.sourcePrefixV4, g.sourcePrefixV6),
      decided: this.decided,
    });
  }

  /** Binds the capture; throws when the queue or group cannot be bound. */
  open(): void {
    this.capture = openStep1Capture({
      kind: this.init.kind,
      queueNum: this.init.number,
      nflogGroup: this.init.number,
      onBatch: (batch) => this.onBatch(batch),
      onError: (err) => this.postProblem(`step-1 batch failed; its packets were dropped (${(err as Error).message})`),
    });
    this.dropsTimer = setInterval(() => this.publishDrops(), DROPS_INTERVAL_MS);
  }

  /** A granted decision as the main thread gets it: names, and the fingerprint of the user it matched. */
  private grantEvent(decision: Step1Decision, receivedAt: number): GrantEvent {
    const { app, user } = decision.matched!;
    return { ip: decision.src, app: app.name, user: user.name, receivedAt, credentials: credentialFingerprint(user) };
  }

  /** The hot path, as the single-threaded daemon had it: inspect, stage replies, send them together. */
  private onBatch(batch: PacketBatch): void {
    const receivedAt = performance.timeOrigin + performance.now();
    try {
      for (let i = 0; i < batch.count; i++) {
        const decision = this.inspector.inspect(batch.payload(i));
        if (decision.reply !== undefined) this.sender.stage(decision.reply);
        if (decision.result === 'granted') this.grants.push(this.grantEvent(decision, receivedAt));
        else if (this.posts(decision)) this.rejections.push({ src: decision.src, sport: decision.sport, result: decision.result, reason: decision.reason });
      }
    } finally {
      const sent = this.sender.flush();
      if (sent.bufferFull > 0) this.postProblem('raw socket buffer full: SYN-ACKs/RSTs are being lost');
      if (sent.failed > 0) this.postProblem(`raw socket refused SYN-ACKs/RSTs (${sent.code}): check the routes back to clients and output firewall rules`);
      this.publishCounters();
      this.postEvents();
    }
  }

  /** Whether the main thread logs this decision as a rejection (see RejectionsPosted). */
  private posts(decision: Step1Decision): boolean {
    if (decision.result !== 'rejected' && decision.result !== 'spoofed') return false;
    if (this.logRejections === 'all') return true;
    return this.logRejections === 'judged' && step1RefusalClass(decision.reason) !== undefined;
  }

  /** Copies the inspector's counts into this slot's shared counters (read by the main thread at scrape time). */
  private publishCounters(): void {
    const { results, reasons } = this.inspector.counters;
    const counters = this.counters;
    const base = this.base;
    for (let i = 0; i < STEP1_RESULTS.length; i++) counters[COUNTER_RESULTS + i] = base[COUNTER_RESULTS + i]! + results[STEP1_RESULTS[i]!];
    for (let i = 0; i < STEP1_REASONS.length; i++) counters[COUNTER_REASONS + i] = base[COUNTER_REASONS + i]! + (reasons.get(STEP1_REASONS[i]!) ?? 0);
  }

  private publishDrops(): void {
    const drops = this.capture?.drops();
    if (!drops) return;
    this.counters[COUNTER_KERNEL_DROPS] = this.dropsBase.kernel + drops.kernel;
    this.counters[COUNTER_ENOBUFS] = this.dropsBase.enobufs + drops.enobufs;
  }

  private postEvents(): void {
    if (
      this.grants.length === 0 &&
      this.rejections.length === 0 &&
      this.locks.length === 0 &&
      this.codes.length === 0 &&
      Object.keys(this.refusals).length === 0
    )
      return;
    post({
      type: 'events',
      grants: this.grants,
      rejections: this.rejections,
      locks: this.locks,
      refusals: this.refusals,
      codes: this.codes,
    });
    this.grants = [];
    this.rejections = [];
    this.locks = [];
    this.refusals = {};
    this.codes = [];
  }

  private postProblem(problem: string): void {
    const now = Date.now();
    const last = this.problemsPosted.get(problem);
    if (last !== undefined && now - last < PROBLEM_INTERVAL_MS) return;
    this.problemsPosted.set(problem, now);
    post({ type: 'problem', problem });
  }

  /** A reloaded config: a new inspector on the same shared state; the counts so far are kept. */
  reconfigure(config: Config, logRejections: RejectionsPosted): void {
    this.publishCounters();
    this.config = reviveConfig(config);
    this.logRejections = logRejections;
    this.lockout.setPolicy(lockoutPolicy(this.config.global));
    this.inspector = this.buildInspector();
    this.base = this.counters.slice();
  }

  /** Closes the capture (the kernel drops what this queue gets from now on) and sends what is staged. */
  stop(): void {
    clearInterval(this.dropsTimer);
    this.publishDrops();
    this.capture?.close();
    this.capture = undefined;
    this.publishCounters();
    this.postEvents();
    this.sender.close();
  }
}

function post(message: WorkerMessage): void {
  parentPort?.postMessage(message);
}

function main(): void {
  const init = workerData as WorkerInit;
  let worker: Step1Worker;
  try {
    worker = new Step1Worker(init);
    worker.open();
  } catch (err) {
    const e = err as Error & { code?: string };
    post({ type: 'failed', message: e.message, ...(e.code === undefined ? {} : { code: e.code }) });
    process.exit(1);
  }
  parentPort?.on('message', (message: MainMessage) => {
    if (message.type === 'config') worker.reconfigure(message.config, message.logRejections);
    else {
      worker.stop();
      // With the capture, timer and sender closed, nothing keeps the thread: it ends once the port is closed.
      parentPort?.close();
    }
  });
  post({ type: 'ready' });
}

main();
