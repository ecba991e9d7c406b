/**
 * The step-1 inspector: bytes of one IP packet in, a decision out. Synchronous, and its only
 * state is the step-1 tables (shared-state.ts: the retransmission table, the rate budget, the
 * lockout counts and the used one-time codes), the same implementation in the daemon's workers
 * and in `watch` and `replay`, so they decide alike.
 *
 * SYN → cookie SYN-ACK; pure ACK/FIN/RST → ignored; data → cookie check → retransmission
 * cache → rate limit (per source prefix) → HTTP parse → auth (with per-secret lockout). Every
 * packet is dropped whatever the decision.
 */
import { SecretLockout, lockoutPolicy } from '../auth/lockout.js';
import { TotpVerifier } from '../auth/totp.js';
import { UsedCodes } from '../auth/used-codes.js';
import type { AppConfig, Config } from '../config/types.js';
import { AddressFormatter, formatIPv4, formatIPv6 } from '../packet/address.js';
import { buildRst, buildSynAck } from '../packet/build.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../packet/decode.js';
import { KnockAuthenticator } from './auth.js';
import type { CookieSource } from './cookie.js';
import { Step1Counters, newDecision, settle, type Step1Decision, type Step1Reason } from './decision.js';
import { KnockScan, requestPathBytes, scanKnockRequest } from './request.js';
import { singleThreadState, type SharedDecidedSegments, type SharedSourceBudget } from './shared-state.js';

export interface InspectorOptions {
  cookie: CookieSource;
  /** Milliseconds since the epoch (the capture's timestamp in replay). */
  now?: () => number;
  /*
   * The daemon's worker threads pass the state they share, kept across reloads (and the used
   * codes across restarts). Whatever is not passed is the same tables on this thread's own
   * buffers (singleThreadState), on `now`, with the config's limits and lockout policy.
   */
  /** One-time codes. */
  totp?: TotpVerifier;
  /** Failure counts per secret. */
  lockout?: SecretLockout;
  /** Per-source-prefix rate budget. */
  budget?: SharedSourceBudget;
  /** Segments already decided (retransmissions). */
  decided?: SharedDecidedSegments;
}

export class Inspector {
  readonly counters = new Step1Counters();
  private readonly view = new TcpSegmentView();
  private readonly apps: ReadonlyMap<string, AppConfig>;
  private readonly cookie: CookieSource;
  private readonly now: () => number;
  private readonly totp: TotpVerifier;
  /** Counts per source prefix (`source_prefix_v4/v6`), not per address. */
  private readonly budget: SharedSourceBudget;
  private readonly lockout: SecretLockout;
  /** (src, sport, seq) → first outcome, oldest first. */
  private readonly decided: SharedDecidedSegments;
  private readonly pathBytes: Buffer;
  /** Reused for every packet: parsing and authenticating a knock allocate nothing. */
  private readonly scan = new KnockScan();
  private readonly authenticator: KnockAuthenticator;
  private readonly srcText = new AddressFormatter();
  private readonly dstText = new AddressFormatter();

  constructor(
    private readonly config: Config,
    options: InspectorOptions,
  ) {
    this.apps = new Map(config.apps.map((app) => [app.name, app]));
    this.cookie = options.cookie;
    this.now = options.now ?? Date.now;
    const own = options.totp && options.lockout && options.budget && options.decided ? undefined : singleThreadState(config.global, this.now);
    this.totp = options.totp ?? new TotpVerifier(1, () => this.now() / 1000, new UsedCodes({ store: own!.usedCodes }));
    this.budget = options.budget ?? own!.budget;
    this.decided = options.decided ?? own!.decided;
    this.lockout = options.lockout ?? new SecretLockout(lockoutPolicy(config.global), { now: this.now, states: own!.lockout });
    this.pathBytes = requestPathBytes(config.global.step1Path);
    this.authenticator = new KnockAuthenticator(this.apps);
  }

  inspect(packet: Buffer): Step1Decision {
    const decision = this.decide(packet);
    this.counters.count(decision);
    return decision;
  }

  private decide(packet: Buffer): Step1Decision {
    const view = this.view;
    const failure = decodeTcpPacket(packet, view);
    if (failure !== undefined) return this.malformed(packet, failure);
    const base = this.describe(view);
    if (view.dport !== this.config.global.step1Port) return settle(base, 'ignored', 'not-step1-port');

    const flags = view.flags;
    const hasPayload = view.payloadLength > 0;
    const handshake = this.config.global.step1Handshake;
    if ((flags & TCP_RST) !== 0) return settle(base, 'ignored', 'rst');
    if ((flags & TCP_SYN) !== 0) {
      if ((flags & (TCP_ACK | TCP_FIN)) !== 0) return settle(base, 'ignored', 'bad-flags');
      if (handshake === 'cookie') return settle(base, 'syn', undefined, buildSynAck(view, this.cookie.issue(view, this.now())));
      // No handshake: only a SYN carrying the whole request (TCP Fast Open, raw client) is a knock.
      if (!hasPayload) return settle(base, 'ignored', 'handshake-none');
      return this.withReply(this.knock(view, base));
    }
    if (!hasPayload) return settle(base, 'ignored', (flags & TCP_FIN) !== 0 ? 'fin' : 'pure-ack');
    if (handshake === 'none') return this.withReply(settle(base, 'ignored', 'handshake-none'));
    if ((flags & TCP_ACK) === 0) return this.withReply(settle(base, 'spoofed', 'no-ack'));
    if (!this.cookie.verify(view, this.now())) return this.withReply(settle(base, 'spoofed', 'bad-cookie'));
    return this.withReply(this.knock(view, base));
  }

  /** A data segment whose sender is proven (or, without handshake, accepted as is). */
  private knock(view: TcpSegmentView, base: Step1Decision): Step1Decision {
    // A claim, not a lookup: of two copies on two worker threads at once, only one is judged.
    const first = this.decided.claim(view);
    if (first !== undefined) return settle(base, 'retransmission', first === 'pending' ? undefined : first);
    const decision = this.judge(view, base);
    this.decided.record(view, decision.result === 'granted' ? 'granted' : decision.reason!);
    return decision;
  }

  private judge(view: TcpSegmentView, base: Step1Decision): Step1Decision {
    if (!this.budget.allow(view.packet, view.srcOffset, view.family)) return settle(base, 'rejected', 'rate-limited');
    const malformed = scanKnockRequest(view.packet, view.payloadOffset, view.end, this.pathBytes, this.scan);
    if (malformed !== undefined) return settle(base, 'rejected', malformed);
    const auth = this.authenticator;
    const refused = auth.authenticate(this.scan, this.totp, this.lockout, this.config.global.step1Handshake === 'cookie');
    if (refused !== undefined) return settle(base, 'rejected', refused);
    const matched = { app: auth.app!, user: auth.user! };
    base.result = 'granted';
    base.app = matched.app.name;
    base.user = matched.user.name;
    base.matched = matched;
    return base;
  }

  /** With `step1_reply: reset`, every data segment alike gets a RST, so none can be told apart. */
  private withReply(decision: Step1Decision): Step1Decision {
    if (this.config.global.step1Reply === 'reset') decision.reply = buildRst(this.view);
    return decision;
  }

  private describe(view: TcpSegmentView): Step1Decision {
    const src = this.srcText.format(view.packet, view.srcOffset, view.family);
    return newDecision(view.family, src, view.sport, this.dstText.format(view.packet, view.dstOffset, view.family), view.dport);
  }

  /** Fills in whatever the packet carried before it stopped making sense. */
  private malformed(packet: Buffer, reason: Step1Reason): Step1Decision {
    const view = this.view;
    const family = packet.length > 0 && packet[0]! >> 4 === 6 ? 6 : 4;
    const decision = settle(newDecision(family, '', 0, '', 0), 'rejected', reason);
    if (reason === 'bad-ip-version' || packet.length < (family === 4 ? 20 : 40)) return decision;
    const format = family === 4 ? formatIPv4 : formatIPv6;
    decision.src = format(packet, view.srcOffset);
    decision.dst = format(packet, view.dstOffset);
    if (reason === 'bad-tcp-options') {
      decision.sport = view.sport;
      decision.dport = view.dport;
    }
    return decision;
  }
}
