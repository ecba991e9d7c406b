/**
 * The step-1 inspector: bytes of one IP packet in, a decision out. Pure and synchronous (the
 * only state is the bounded retransmission cache, the rate limiter and the one-time-code
 * cache), so the live daemon, `watch` and `replay` decide alike.
 *
 * SYN → cookie SYN-ACK; pure ACK/FIN/RST → ignored; data → cookie check → retransmission
 * cache → rate limit (per source prefix) → HTTP parse → auth (with per-secret lockout). Every
 * packet is dropped whatever the decision.
 */
import { SecretLockout, lockoutPolicy } from '../auth/lockout.js';
import { PerMinuteLimiter } from '../auth/ratelimit.js';
import { TotpVerifier } from '../auth/totp.js';
import type { AppConfig, Config } from '../config/types.js';
import { AddressFormatter, SourcePrefixKey, formatIPv4, formatIPv6 } from '../packet/address.js';
import { buildRst, buildSynAck } from '../packet/build.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../packet/decode.js';
import { authenticateKnock } from './auth.js';
import type { CookieSource } from './cookie.js';
import { Step1Counters, newDecision, settle, type Step1Decision, type Step1Reason } from './decision.js';
import { parseKnockRequest, requestPathBytes } from './http.js';
import { SegmentCache } from './segment-cache.js';

/** Decided segments remembered to spot retransmissions: a few minutes of knocks at a high rate. */
export const RETRANSMISSION_CACHE_SIZE = 65_536;

export interface InspectorOptions {
  cookie: CookieSource;
  /** Milliseconds since the epoch (the capture's timestamp in replay). */
  now?: () => number;
  /** One-time codes; the daemon passes one whose used-code cache outlives reloads and restarts. Default: in memory, on `now`. */
  totp?: TotpVerifier;
  /** Failure counts per secret; the daemon keeps one across reloads. Default: the config's policy, on `now`. */
  lockout?: SecretLockout;
}

export class Inspector {
  readonly counters = new Step1Counters();
  private readonly view = new TcpSegmentView();
  private readonly apps: ReadonlyMap<string, AppConfig>;
  private readonly cookie: CookieSource;
  private readonly now: () => number;
  private readonly totp: TotpVerifier;
  private readonly limiter: PerMinuteLimiter;
  private readonly lockout: SecretLockout;
  /** The limiter counts per source prefix (`source_prefix_v4/v6`), not per address. */
  private readonly sourceKey: SourcePrefixKey;
  /** (src, sport, seq) → first outcome, oldest first. */
  private readonly decided = new SegmentCache<Step1Reason | 'granted'>(RETRANSMISSION_CACHE_SIZE);
  private readonly pathBytes: Buffer;
  private readonly srcText = new AddressFormatter();
  private readonly dstText = new AddressFormatter();

  constructor(private readonly config: Config, options: InspectorOptions) {
    this.apps = new Map(config.apps.map((app) => [app.name, app]));
    this.cookie = options.cookie;
    this.now = options.now ?? Date.now;
    this.totp = options.totp ?? new TotpVerifier(1, () => this.now() / 1000);
    this.limiter = new PerMinuteLimiter(config.global.rateLimitPerMinute, 100_000, this.now);
    this.lockout = options.lockout ?? new SecretLockout(lockoutPolicy(config.global), { now: this.now });
    this.sourceKey = new SourcePrefixKey(config.global.sourcePrefixV4, config.global.sourcePrefixV6);
    this.pathBytes = requestPathBytes(config.global.httpPostPath);
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
    if (view.dport !== this.config.global.httpPort) return settle(base, 'ignored', 'not-step1-port');

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
    const first = this.decided.get(view);
    if (first !== undefined) return settle(base, 'retransmission', first);
    const decision = this.judge(view, base);
    this.decided.set(view, decision.result === 'granted' ? 'granted' : decision.reason!);
    return decision;
  }

  private judge(view: TcpSegmentView, base: Step1Decision): Step1Decision {
    if (!this.limiter.allow(this.sourceKey.ofBytes(view.packet, view.srcOffset, view.family, base.src))) return settle(base, 'rejected', 'rate-limited');
    const parsed = parseKnockRequest(view.packet, view.payloadOffset, view.end, this.pathBytes);
    if (!parsed.ok) return settle(base, 'rejected', parsed.reason);
    const auth = authenticateKnock(this.apps, parsed.fields, this.totp, this.lockout, this.config.global.step1Handshake === 'cookie');
    if (!auth.ok) return settle(base, 'rejected', auth.reason);
    base.result = 'granted';
    base.app = auth.app.name;
    base.user = auth.user.name;
    base.userIndex = auth.user.index;
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
