/**
 * The state the step-1 inspector keeps between packets, behind two small interfaces: the
 * per-source-prefix rate budget and the retransmission table. The implementations here live in
 * one thread's memory (`replay`, `watch`, unit tests); the daemon's worker threads share theirs
 * (shared-state.ts), so that N workers count one budget and see one table.
 */
import { PerMinuteLimiter } from '../auth/ratelimit.js';
import { SourcePrefixKey } from '../packet/address.js';
import type { TcpSegmentView } from '../packet/decode.js';
import type { Step1Reason } from './decision.js';
import { SegmentCache } from './segment-cache.js';

/** Decided segments remembered to spot retransmissions: a few minutes of knocks at a high rate. */
export const RETRANSMISSION_CACHE_SIZE = 65_536;
/** Source prefixes tracked by the in-memory budget (the oldest is forgotten first). */
const BUDGET_KEYS = 100_000;

/** The first outcome of a data segment: granted, or why it was refused. */
export type FirstOutcome = Step1Reason | 'granted';

/** Per-source-prefix budget of `step1_2_rate_limit_per_minute` knocks. */
export interface SourceBudget {
  /** Counts a knock from the address at `offset` (formatted as `text`); false when its prefix is out of budget. */
  allow(packet: Buffer, offset: number, family: 4 | 6, text: string): boolean;
}

/** Data segments already decided, by (source address, source port, sequence number). */
export interface DecidedSegments {
  /**
   * The first copy's outcome; or 'pending' while another thread is still deciding the first
   * copy; or undefined for a first copy, which is then claimed: call `record` with its outcome.
   */
  claim(segment: TcpSegmentView): FirstOutcome | 'pending' | undefined;
  record(segment: TcpSegmentView, outcome: FirstOutcome): void;
}

/** The budget in this thread's memory, keyed by the prefix's text. */
export class MemorySourceBudget implements SourceBudget {
  private readonly limiter: PerMinuteLimiter;
  private readonly keys: SourcePrefixKey;

  constructor(limitPerMinute: number, prefixV4: number, prefixV6: number, now: () => number) {
    this.limiter = new PerMinuteLimiter(limitPerMinute, BUDGET_KEYS, now);
    this.keys = new SourcePrefixKey(prefixV4, prefixV6);
  }

  allow(packet: Buffer, offset: number, family: 4 | 6, text: string): boolean {
    return this.limiter.allow(this.keys.ofBytes(packet, offset, family, text));
  }
}

/** The retransmission table in this thread's memory: one thread, so a claim is a lookup. */
export class MemoryDecidedSegments implements DecidedSegments {
  private readonly cache = new SegmentCache<FirstOutcome>(RETRANSMISSION_CACHE_SIZE);

  claim(segment: TcpSegmentView): FirstOutcome | undefined {
    return this.cache.get(segment);
  }

  record(segment: TcpSegmentView, outcome: FirstOutcome): void {
    this.cache.set(segment, outcome);
  }
}
