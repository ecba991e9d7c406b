/** What the step-1 inspector decides for one packet, and the counters it keeps. */
import type { AppConfig, User } from '../config/types.js';
import type { RefusalClass } from '../shared/knock-refusal.js';
import type { DecodeFailure } from '../packet/decode.js';
import type { AuthFailure } from './auth.js';
import { STEP1_REQUEST_FAILURES, type Step1RequestFailure } from './request.js';

export const STEP1_RESULTS = ['syn', 'ignored', 'spoofed', 'granted', 'rejected', 'retransmission'] as const;
export type Step1Result = (typeof STEP1_RESULTS)[number];

/** Why a packet was ignored, spoofed or rejected. */
export type IgnoreReason = 'not-step1-port' | 'pure-ack' | 'fin' | 'rst' | 'bad-flags' | 'handshake-none';
export type SpoofReason = 'bad-cookie' | 'no-ack';
export type Step1Reason = DecodeFailure | Step1RequestFailure | AuthFailure | IgnoreReason | SpoofReason | 'rate-limited';

export const STEP1_REASONS: readonly Step1Reason[] = [
  'truncated',
  'bad-ip-version',
  'bad-ip-header',
  'bad-ip-options',
  'bad-ipv6-extension',
  'fragment',
  'non-first-fragment',
  'not-tcp',
  'bad-tcp-header',
  'bad-tcp-options',
  ...STEP1_REQUEST_FAILURES,
  'unknown-app',
  'bad-key',
  'otp-required',
  'bad-otp',
  'locked',
  'rate-limited',
  'not-step1-port',
  'pure-ack',
  'fin',
  'rst',
  'bad-flags',
  'handshake-none',
  'bad-cookie',
  'no-ack',
];

const SECRET_REFUSALS: ReadonlySet<Step1Reason> = new Set<AuthFailure>(['unknown-app', 'bad-key', 'otp-required', 'bad-otp', 'locked']);
const MALFORMED_KNOCKS: ReadonlySet<Step1Reason> = new Set<Step1RequestFailure>(STEP1_REQUEST_FAILURES);

/**
 * The class of the info line for a knock refused after its sender was proven (the request was
 * judged); undefined for what never got that far (decode failures, spoofed segments), whose
 * source address may be forged and so is never handed to a tool that bans addresses.
 */
export function step1RefusalClass(reason: Step1Decision['reason']): RefusalClass | undefined {
  if (reason === undefined || reason === 'granted') return undefined;
  if (SECRET_REFUSALS.has(reason)) return 'refused';
  if (MALFORMED_KNOCKS.has(reason)) return 'malformed';
  return reason === 'rate-limited' ? 'rate-limited' : undefined;
}

/**
 * One packet's decision. The verdict is always drop, so it is not here. `src`/`dst` are empty
 * and ports 0 when the packet is too short to carry them. For a retransmission, `reason` is
 * the first copy's outcome (`granted` or its rejection reason).
 */
export interface Step1Decision {
  result: Step1Result;
  reason?: Step1Reason | 'granted';
  family: 4 | 6;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** Names of the app and user a granted knock matched (for logs and output). */
  app?: string;
  user?: string;
  /** The app and user a granted knock matched, as the inspector's config has them. */
  matched?: KnockMatch;
  /** A whole IP packet to send from the raw socket: SYN-ACK for `syn`, RST when step1_reply is reset. */
  reply?: Buffer;
}

/** Who a granted knock is: the config's own objects, so nobody looks them up again by name. */
export interface KnockMatch {
  app: AppConfig;
  user: User;
}

/**
 * A decision with every field present (undefined when unused): one object shape for all
 * decisions keeps the per-packet path monomorphic.
 */
export function newDecision(family: 4 | 6, src: string, sport: number, dst: string, dport: number): Step1Decision {
  return { result: 'ignored', reason: undefined, family, src, sport, dst, dport, app: undefined, user: undefined, matched: undefined, reply: undefined };
}

export function settle(decision: Step1Decision, result: Step1Result, reason?: Step1Decision['reason'], reply?: Buffer): Step1Decision {
  decision.result = result;
  decision.reason = reason;
  decision.reply = reply;
  return decision;
}

/** Counts per result and per reason, all present (at 0) from the start, for metrics. */
export class Step1Counters {
  readonly results: Record<Step1Result, number> = { syn: 0, ignored: 0, spoofed: 0, granted: 0, rejected: 0, retransmission: 0 };
  readonly reasons = new Map<Step1Reason, number>(STEP1_REASONS.map((r) => [r, 0]));

  count(decision: Step1Decision): void {
    this.results[decision.result]++;
    const reason = decision.reason;
    if (reason !== undefined && reason !== 'granted' && decision.result !== 'retransmission') this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }
}
