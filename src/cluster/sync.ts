/**
 * The cluster wiring (docs/cluster.md): this gateway's grants, operator revokes and accepted
 * one-time codes go to the store, signed, fire and forget; the other gateways' entries come back,
 * are verified and applied through the Granter and the used-code cache. Off the knock path, but
 * for one bounded wait: step 2 gives the store CONFIRM_WAIT_MS to say that another gateway used
 * its one-time code first. A store that is down only costs the sharing.
 */
import type { UsedCode } from '../auth/used-codes.js';
import type { AppConfig, ClusterConfig } from '../config/types.js';
import {
  MAX_CLOCK_SKEW_MS,
  clusterSigningKey,
  decodeClusterMessage,
  encodeClusterMessage,
  type ClusterGrant,
  type ClusterMessage,
  type ClusterRevoke,
  type ClusterUsedCode,
} from './message.js';
import type { ClaimResult, ClusterEntryKind, ClusterStoreState, RedisClusterStore } from './store.js';
import type { ClusterMetrics } from '../metrics/cluster-metrics.js';
import { bounded } from '../shared/bounded.js';
import { BoundedMap } from '../shared/bounded-map.js';
import { errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Granter } from '../sessions/grants.js';
import { recordKey, type SessionRecord } from '../sessions/record.js';
import type { SessionStore } from '../sessions/store.js';
import { RevokeJournal, type JournaledRevoke } from './revoke-journal.js';

/** What the sync needs of the store (RedisClusterStore; a fake in tests). */
export type ClusterSyncStore = Pick<RedisClusterStore, 'storeGrant' | 'storeRevoke' | 'claimUsedCode' | 'state'>;

export interface ClusterSyncOptions {
  /** `name` is signed into every message (message.ts: clusterSigningKey). */
  cluster: Pick<ClusterConfig, 'gateway' | 'key' | 'name'>;
  granter: Pick<Granter, 'revoke' | 'applyRemote' | 'recordRemote'>;
  sessions: Pick<SessionStore, 'list' | 'listOf' | 'kernelExpiry' | 'find'>;
  /** Marks a code another gateway accepted as used here (LastingState's used codes). */
  markCodeUsed: (code: UsedCode) => void;
  /** The running config's apps (read at each use: a reload changes them). */
  apps: () => readonly AppConfig[];
  /**
   * Opens the store this sync publishes to, handing it the sync's handlers for what the store
   * receives (RedisClusterStore.connect's onEntry and onState; a fake in tests).
   */
  connect: (handlers: ClusterSyncHandlers) => ClusterSyncStore;
  logger: Logger;
  metrics?: ClusterMetrics;
  /** Every revoke made or learned here, saved in the state directory (a test may leave it out: memory only). */
  journal?: RevokeJournal;
  now?: () => number;
}

/** An operator revoke's outcome: the grants closed here, and whether the store has it yet. */
export interface RevokeOutcome {
  closed: number;
  /** False: closed here, not yet shared (kept in the journal and retried until the store has it). */
  shared: boolean;
}

/** What the store tells the sync: the other gateways' entries and its connection state. */
export interface ClusterSyncHandlers {
  onEntry: (kind: ClusterEntryKind, id: string, text: string, seq?: number) => void;
  onState: (state: ClusterStoreState) => void;
}

/** Health problem while the store is unreachable: degraded, the gateway works alone. */
export const CLUSTER_DISCONNECTED = 'cluster store unreachable: this gateway works alone (grants, revokes and used codes not shared)';
/** Health problem while revokes made here are not in the store yet. */
export const REVOKES_NOT_SHARED = 'revokes closed here, not yet shared';
/** Health problem while this gateway's clock and the store's differ by more than MAX_CLOCK_SKEW_MS. */
export const CLOCK_SKEW = "this gateway's clock differs from the store's";
/** Retry period of revokes the store does not have yet (also retried on every resync). */
export const REVOKE_RETRY_MS = 2000;
/** Longest step 2 waits for the store's word on its one-time code before deciding alone. */
export const CONFIRM_WAIT_MS = 250;
/** Claims remembered for confirmCode. */
const MAX_CLAIMS = 4096;
/** Entries applied per batch (grants of one batch go to the kernel together). */
const APPLY_BATCH = 4096;
/** Revokes remembered, per (IP, app or all), against replayed grants. */
const MAX_REVOKES = 65_536;
/** Grant records whose order is remembered (one per live record, normally). */
const MAX_GRANT_ORDERS = 262_144;
/** Ignored and refused entries are summed in one log line per this period. */
const IGNORED_LOG_MS = 1000;

/**
 * Where a grant record stands against revokes: the store's sequence number (docs/cluster.md),
 * never a gateway's clock.
 */
interface GrantOrder {
  /** The record's own sequence number (`sequenced`); else the last one this gateway had seen when it made the grant. */
  order: number;
  sequenced: boolean;
  /** When its gateway made it, by that gateway's (signed) clock: for the replay guard only. */
  issuedAt: number;
}

/** A verified entry from another gateway, with the store's sequence number. */
interface QueuedEntry {
  message: ClusterMessage;
  seq: number;
}

function codeId(code: UsedCode): string {
  return `${code.scope}:${code.counter}`;
}

function scopeKey(ip: string, app: string | undefined): string {
  return `${ip}\0${app ?? '*'}`;
}

export class ClusterSync {
  private readonly store: ClusterSyncStore;
  private readonly log: Logger;
  private readonly now: () => number;
  /** The cluster key bound to the cluster name: what messages are signed with. */
  private readonly signingKey: Buffer;
  /** Latest revoke per (IP, app or '*'), by the store's sequence number. */
  private readonly revokeSeqs = new BoundedMap<string, number>(MAX_REVOKES);
  /** Latest revoke time (signed issuedAt, ms) per (IP, app or '*'): the replay guard. */
  private readonly revokeTimes = new BoundedMap<string, number>(MAX_REVOKES);
  /** Revokes made here that the store does not have yet, by journal id: their (IP, app or '*'). */
  private readonly unsharedScopes = new Map<string, string>();
  /** Each grant record's order (recordKey). */
  private readonly orders = new BoundedMap<string, GrantOrder>(MAX_GRANT_ORDERS);
  /** The highest sequence number this gateway has seen from the store. */
  private lastSeq = 0;
  /** Ignored and refused entries since the last summary line, by reason, with one example each. */
  private ignoredTally = new Map<string, { count: number; example: Record<string, unknown> }>();
  private ignoredTimer: NodeJS.Timeout | undefined;
  /** Verified entries from other gateways, waiting to be applied in arrival order. */
  private queue: QueuedEntry[] = [];
  /** The drain in progress, if any (see drain). */
  private draining: Promise<void> | undefined;
  private wasSynced = false;
  private readonly pending = new Set<Promise<unknown>>();
  /** This gateway's latest code claims, by scope and counter: step 2 waits for its own (confirmCode). */
  private readonly claims = new BoundedMap<string, Promise<ClaimResult>>(MAX_CLAIMS);
  /** Entries of the batch being applied (taken off the queue, not applied yet). */
  private inFlight = 0;
  private readonly journal: RevokeJournal;
  /** The retry of unshared revokes in progress, if any. */
  private flushing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Journaled revokes already reported as impossible to share (logged once each). */
  private readonly unpublishable = new Set<string>();

  constructor(private readonly options: ClusterSyncOptions) {
    this.log = options.logger.child({ component: 'cluster' });
    this.now = options.now ?? Date.now;
    this.signingKey = clusterSigningKey(options.cluster.key, options.cluster.name);
    this.journal = options.journal ?? new RevokeJournal('', [], this.now);
    this.reloadRevokes();
    // Last: the store may report as soon as it exists.
    this.store = options.connect({ onEntry: (kind, id, text, seq) => this.onEntry(kind, id, text, seq), onState: (state) => this.onState(state) });
  }

  get gateway(): string {
    return this.options.cluster.gateway;
  }

  // --- local events, published fire and forget ---

  /** A grant this gateway made (Granter's listener). */
  grantedLocally(record: SessionRecord): void {
    if (record.app === null || record.user === null) return;
    // Its sequence comes with the store's answer; until then it stands after every entry seen here.
    const order: GrantOrder = { order: this.lastSeq, sequenced: false, issuedAt: this.now() };
    this.orders.set(recordKey(record), order);
    this.publishGrant(record, order);
  }

  /**
   * An operator revoke (control socket): closed here through the Granter, saved in the journal,
   * then published. When the store does not take it now, it stays in the journal and is retried
   * until it does (`shared: false` until then).
   */
  async revoke(ip: string, app?: AppConfig): Promise<RevokeOutcome> {
    const closed = await this.options.granter.revoke(ip, app);
    const issuedAt = this.now();
    this.noteRevokeTime({ ip, ...(app ? { app: app.name } : {}), issuedAt });
    const body: ClusterRevoke = { ip, ...(app ? { app: app.name } : {}), gateway: this.gateway, issuedAt };
    const text = this.encode({ type: 'revoke', body });
    if (text === undefined) return { closed, shared: false };
    const entry: JournaledRevoke = {
      id: `${this.gateway}:${ip}:${app?.name ?? '*'}:${issuedAt}`,
      text,
      keepUntil: issuedAt + this.longestGrantMs(),
      shared: false,
    };
    // Until the store orders it, it covers every grant of the scope from elsewhere.
    this.unsharedScopes.set(entry.id, scopeKey(ip, app?.name));
    await this.journalWrite(this.journal.record(entry));
    const shared = await this.publishRevoke(entry, body);
    if (!shared) {
      this.log.warn({ ip, app: app?.name ?? '*' }, 'revoke closed here, not yet shared: the store does not have it; retried until it does');
      this.scheduleRetry();
    }
    return { closed, shared };
  }

  /** Revokes made here that the store does not have yet. */
  unsharedRevokes(): number {
    return this.journal.pending().length;
  }

  /** Stops the retry timer (the journal keeps what is left for the next start). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.ignoredTimer);
    this.flushTally();
  }

  /** One revoke to the store (its key, the grant keys it covers deleted, its announcement); true once the store has it. */
  private async publishRevoke(entry: JournaledRevoke, body: ClusterRevoke): Promise<boolean> {
    const ttlMs = entry.keepUntil - this.now();
    if (ttlMs <= 0) {
      // Outlived every grant it could cover: nothing left to close anywhere.
      this.unsharedScopes.delete(entry.id);
      await this.journalWrite(this.journal.markShared(entry.id));
      return true;
    }
    const stored = this.store.storeRevoke(entry.id, entry.text, ttlMs, { ip: body.ip, ...(body.app !== undefined ? { app: body.app } : {}) });
    this.track(
      'revoke',
      stored.then((seq) => seq !== undefined),
    );
    const seq = await stored.catch(() => undefined);
    if (seq === undefined) return false;
    this.seen(seq);
    this.noteRevokeSeq(body, seq);
    this.unsharedScopes.delete(entry.id);
    this.reorderAfterRevoke(body, seq);
    await this.journalWrite(this.journal.markShared(entry.id, seq));
    return true;
  }

  /**
   * Grants made here after a revoke made here, while the store did not have the revoke yet: they
   * are later than it (one clock), so they now stand after its sequence, and their publish is not
   * refused for it.
   */
  private reorderAfterRevoke(revoke: ClusterRevoke, seq: number): void {
    for (const record of this.options.sessions.listOf(revoke.ip)) {
      if (record.app === null || (revoke.app !== undefined && record.app !== revoke.app) || !this.isOwn(record)) continue;
      const order = this.orders.get(recordKey(record));
      if (order && !order.sequenced && order.issuedAt >= revoke.issuedAt && order.order < seq) this.orders.set(recordKey(record), { ...order, order: seq });
    }
  }

  /** Publishes every revoke the store does not have yet, oldest first; one run at a time. */
  flushRevokes(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    for (const entry of this.journal.pending()) {
      const decoded = decodeClusterMessage(this.signingKey, entry.text, this.now());
      if (!decoded.ok || decoded.message.type !== 'revoke') {
        // Signed with a key this gateway no longer has (the cluster key changed): the others would refuse it too.
        if (!this.unpublishable.has(entry.id))
          this.log.error(
            { id: entry.id, reason: decoded.ok ? 'not a revoke' : decoded.reason },
            'journaled revoke cannot be shared: it stays closed here only',
          );
        this.unpublishable.add(entry.id);
        continue;
      }
      if (!(await this.publishRevoke(entry, decoded.message.body))) break;
      this.log.info({ ip: decoded.message.body.ip, app: decoded.message.body.app ?? '*' }, 'revoke made while the store was unreachable is shared now');
    }
    if (this.journal.pending().length > 0) this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flushRevokes();
    }, REVOKE_RETRY_MS);
    this.retryTimer.unref();
  }

  /** A journal write that failed is logged: the revoke still holds here, only its survival of a restart is at risk. */
  private async journalWrite(write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (err) {
      this.log.error({ ...errorFields(err), path: this.journal.path }, 'cluster revoke journal not written: a restart may forget a revoke');
    }
  }

  /** At start: every revoke kept in the journal is known again before any grant from the store; unshared ones are retried. */
  private reloadRevokes(): void {
    for (const entry of this.journal.list()) {
      const decoded = decodeClusterMessage(this.signingKey, entry.text, this.now());
      if (!decoded.ok || decoded.message.type !== 'revoke') continue;
      const body = decoded.message.body;
      this.noteRevokeTime(body);
      if (entry.seq !== undefined) {
        this.seen(entry.seq);
        this.noteRevokeSeq(body, entry.seq);
      }
      if (!entry.shared) this.unsharedScopes.set(entry.id, scopeKey(body.ip, body.app));
    }
    if (this.journal.pending().length > 0) this.scheduleRetry();
  }

  /**
   * A one-time code this gateway accepted in `step`. `expiresAt` in unix seconds, as UsedCode.
   * The claim is atomic in the store: when another gateway claimed the same code first, one of the
   * two uses was a replay. Step 2 waits for the answer before granting (confirmCode); a step-1
   * conflict is logged and counted (its grant is only the step-2 window, which still asks for the
   * HTTPS key).
   */
  codeClaimed(code: UsedCode, step: 'step1' | 'step2'): void {
    const body: ClusterUsedCode = {
      scope: code.scope,
      counter: code.counter,
      expiresAt: Math.ceil(code.expiresAt * 1000),
      gateway: this.gateway,
      issuedAt: this.now(),
    };
    if (body.expiresAt <= body.issuedAt) return;
    const text = this.encode({ type: 'used-code', body });
    if (text === undefined) return;
    const id = codeId(code);
    const claim = this.store.claimUsedCode(id, text, body.expiresAt);
    // Kept after the answer too (the last MAX_CLAIMS), for a step 2 that asks once it has come.
    this.claims.set(
      id,
      claim.catch((): ClaimResult => 'unavailable'),
    );
    this.track(
      'used-code',
      claim.then((result) => {
        if (result === 'already-used') {
          this.options.metrics?.codeConflicts.inc({ step });
          this.log.warn({ step, counter: code.counter }, 'a one-time code accepted here was already used on another gateway (one of the two uses is a replay)');
        }
        return result !== 'unavailable';
      }),
    );
  }

  /**
   * Step 2, after its code was accepted here and before the grant: false when the store says
   * another gateway used the code first. Waits at most CONFIRM_WAIT_MS: a slow or unreachable
   * store leaves the decision to this gateway alone (the code is still refused here, and shared
   * once the store answers).
   */
  async confirmCode(code: UsedCode): Promise<boolean> {
    const claim = this.claims.get(codeId(code));
    if (!claim) return true;
    const result = await bounded(claim, CONFIRM_WAIT_MS, 'code claim').catch((): ClaimResult => 'unavailable');
    return result !== 'already-used';
  }

  /**
   * Store state changes: on every (re)sync, the revokes the store lacks go first, then this
   * gateway's live grants are published again (each keeps its sequence number; one made while
   * the store was away gets one, unless a revoke it did not know of came later).
   */
  onState(state: ClusterStoreState): void {
    if (state.synced && !this.wasSynced) this.settleLater(this.flushRevokes().then(() => this.republish()));
    this.wasSynced = state.synced;
  }

  private republish(): void {
    for (const record of this.options.sessions.list()) {
      if (!this.isOwn(record) || record.app === null || record.user === null) continue;
      // A record restored from the state file that the store no longer has: it stands before every revoke.
      const order = this.orders.get(recordKey(record)) ?? { order: 0, sequenced: false, issuedAt: this.now() };
      // A revoke the snapshot just brought closes it in a moment: publishing it again would put it back in the store.
      if (order.order < this.revokeSeqOf(record.ip, record.app)) continue;
      this.publishGrant(record, order);
    }
  }

  private isOwn(record: SessionRecord): boolean {
    return record.gateway === undefined || record.gateway === this.gateway;
  }

  /** For health: the cluster as this gateway sees it. */
  health(): {
    gateway: string;
    connected: boolean;
    synced: boolean;
    lagMs?: number;
    clockOffsetMs?: number;
    backlog: number;
    reconnects: number;
    unsharedRevokes: number;
  } {
    const state = this.store.state();
    return {
      gateway: this.gateway,
      connected: state?.connected ?? false,
      synced: state?.synced ?? false,
      ...(state?.lagMs !== undefined ? { lagMs: state.lagMs } : {}),
      ...(state?.clockOffsetMs !== undefined ? { clockOffsetMs: state.clockOffsetMs } : {}),
      backlog: this.backlog(),
      reconnects: state?.reconnects ?? 0,
      unsharedRevokes: this.unsharedRevokes(),
    };
  }

  /** For health: degraded (not failed) while the store is unreachable or a revoke made here is not in it yet. */
  problems(): string[] {
    const problems: string[] = [];
    const unshared = this.unsharedRevokes();
    if (unshared > 0) problems.push(`${REVOKES_NOT_SHARED} (${unshared}): the other gateways keep those grants open until the store has them`);
    const state = this.store.state();
    const offset = state?.clockOffsetMs;
    if (offset !== undefined && Math.abs(offset) > MAX_CLOCK_SKEW_MS)
      problems.push(
        `${CLOCK_SKEW} by ${Math.round(offset / 1000)} s (accepted: ${MAX_CLOCK_SKEW_MS / 1000} s): the others refuse its messages as from the future or expire its grants early; run NTP`,
      );
    if (!state || state.connected) return problems;
    problems.unshift(state.lastError ? `${CLUSTER_DISCONNECTED}; last error: ${state.lastError}` : CLUSTER_DISCONNECTED);
    return problems;
  }

  /** Resolves once every entry received so far is applied and every publish settled (tests, stop). */
  async idle(): Promise<void> {
    // A settled step may start another (a resync's revokes, then its grants): until none is left.
    while (this.draining || this.pending.size > 0) {
      while (this.draining) await this.draining;
      await Promise.allSettled([...this.pending]);
    }
  }

  /** Entries received and not yet applied (a joining gateway's snapshot, mostly). */
  backlog(): number {
    return this.queue.length + this.inFlight;
  }

  /** Stores the grant; the store's sequence becomes its order (unless a newer grant of the record replaced it meanwhile). */
  private publishGrant(record: SessionRecord, order: GrantOrder): void {
    const body: ClusterGrant = {
      kind: record.step,
      ip: record.ip,
      app: record.app!,
      user: record.user!,
      expiresAt: record.expiresAt,
      gateway: this.gateway,
      issuedAt: order.issuedAt,
    };
    if (body.expiresAt <= body.issuedAt) return;
    const text = this.encode({ type: 'grant', body });
    if (text === undefined) return;
    const id = `${this.gateway}:${body.kind}:${body.ip}:${body.app}:${body.user}`;
    const key = recordKey(record);
    const stored = this.store.storeGrant(id, text, body.expiresAt, { ip: body.ip, app: body.app, order: order.order, own: order.sequenced }).then((result) => {
      if (result.outcome === 'stored') {
        this.seen(result.seq);
        if (this.orders.get(key) === order) this.orders.set(key, { ...order, order: result.seq, sequenced: true });
      } else if (result.outcome === 'revoked') {
        // The store has a revoke of the scope later than this grant: it reaches this gateway next (announcement or snapshot).
        this.ignored('revoked-in-store', { ip: body.ip, app: body.app, step: body.kind }, 'grant not shared: the store has a later revoke of it');
      }
      return result.outcome !== 'failed';
    });
    this.track('grant', stored);
  }

  private encode(message: Parameters<typeof encodeClusterMessage>[1]): string | undefined {
    try {
      return encodeClusterMessage(this.signingKey, message);
    } catch (err) {
      this.log.error({ ...errorFields(err), type: message.type }, 'cluster message not published');
      return undefined;
    }
  }

  /** Work idle() waits for (never rejects). */
  private settleLater(work: Promise<unknown>): void {
    const settled = work.catch((err: unknown) => this.log.error({ ...errorFields(err) }, 'cluster resync step failed'));
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
  }

  /** Counts a publish's outcome; never rejects, never awaited by a knock. */
  private track(kind: ClusterEntryKind, publish: Promise<boolean>): void {
    const metrics = this.options.metrics;
    const settled = publish.then(
      (ok) => (ok ? metrics?.published.inc({ kind }) : metrics?.publishFailures.inc({ kind })),
      (err: unknown) => {
        metrics?.publishFailures.inc({ kind });
        this.log.debug({ ...errorFields(err), kind }, 'cluster publish failed');
      },
    );
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
  }

  /** How long a revoke is kept in the store: as long as the longest grant of the running config. */
  private longestGrantMs(): number {
    let longest = 60;
    for (const app of this.options.apps()) longest = Math.max(longest, app.duration, app.step2Duration);
    return longest * 1000;
  }

  // --- entries from the store ---

  /** The store's onEntry: verified now, applied in order. Never throws. */
  onEntry(kind: ClusterEntryKind, id: string, text: string, seq?: number): void {
    const decoded = decodeClusterMessage(this.signingKey, text, this.now());
    if (!decoded.ok) return this.refused(decoded.reason, { kind, id });
    const message = decoded.message;
    if (message.type !== kind) return this.refused('malformed', { kind, id, type: message.type });
    if (seq !== undefined) this.seen(seq);
    // Own entries come back in snapshots: already applied here, but they tell a grant's sequence (after a restart).
    if (message.body.gateway === this.gateway) {
      if (message.type === 'grant' && seq !== undefined) this.learnOwnOrder(message.body, seq);
      return;
    }
    // Written by something other than a gateway's script: it cannot be ordered against revokes.
    if (message.type !== 'used-code' && seq === undefined) return this.refused('unsequenced', { kind, id });
    this.options.metrics?.received.inc({ kind });
    // Known at once, before any queued grant is applied: a snapshot lists revokes after the
    // grants they cover, and a revoked grant must not open, even for the time of a join.
    if (message.type === 'revoke') this.rememberRevoke(id, text, message.body, seq!);
    this.queue.push({ message, seq: seq ?? 0 });
    // Started after the caller's turn: a snapshot delivered in one loop is then one batch, not its first entry alone.
    this.draining ??= Promise.resolve().then(() => this.drain());
  }

  /** The highest sequence number seen so far: a grant made here now stands after all of them. */
  private seen(seq: number): void {
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  /** An own grant the store has (a snapshot): its record here takes the store's sequence. */
  private learnOwnOrder(grant: ClusterGrant, seq: number): void {
    const record = this.options.sessions.find(grant.ip, grant.app, grant.user, grant.kind);
    if (!record || !this.isOwn(record)) return;
    const key = recordKey(record);
    if (!this.orders.get(key)?.sequenced) this.orders.set(key, { order: seq, sequenced: true, issuedAt: grant.issuedAt });
  }

  /**
   * Applies the queue in batches. Within a batch, grants (and used codes) go together, without
   * awaiting each other, so the firewall writes them in one kernel transaction per event-loop
   * turn (grant-sets.ts) instead of one each: a gateway joining a cluster with 100,000 live
   * grants is not minutes behind. A revoke is a barrier: what came before it is applied first.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, APPLY_BATCH);
        this.inFlight = batch.length;
        let grants: QueuedEntry[] = [];
        for (const entry of batch) {
          const message = entry.message;
          if (message.type === 'grant') grants.push(entry);
          else if (message.type === 'used-code') this.applyUsedCode(message.body);
          else {
            await this.applyGrants(grants);
            grants = [];
            await this.guarded(message, () => this.applyRevoke(message.body, entry.seq));
          }
        }
        await this.applyGrants(grants);
        this.inFlight = 0;
      }
    } finally {
      this.inFlight = 0;
      this.draining = undefined;
    }
  }

  /** Each (kind, IP, app, user) once, with its latest expiry; all at once. */
  private async applyGrants(entries: readonly QueuedEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const latest = new Map<string, { grant: ClusterGrant; seq: number }>();
    for (const { message, seq } of entries) {
      const grant = message.body as ClusterGrant;
      const key = `${grant.kind}\0${scopeKey(grant.ip, grant.app)}\0${grant.user}`;
      const known = latest.get(key);
      if (!known || known.grant.expiresAt < grant.expiresAt || (known.grant.expiresAt === grant.expiresAt && known.seq < seq)) latest.set(key, { grant, seq });
    }
    let applied = 0;
    const apply = async (grant: ClusterGrant, seq: number): Promise<void> => {
      if (await this.applyGrant(grant, seq)) applied++;
    };
    await Promise.all([...latest.values()].map(({ grant, seq }) => this.guarded({ type: 'grant', body: grant }, () => apply(grant, seq))));
    // One line per batch, not per grant: a joining gateway applies a whole site's grants at once.
    if (applied === 1 && latest.size === 1) {
      const [only] = latest.values();
      const grant = only!.grant;
      this.log.info({ ip: grant.ip, app: grant.app, user: grant.user, step: grant.kind, gateway: grant.gateway }, 'granted by another gateway');
    } else if (applied > 0) {
      this.log.info({ applied, of: latest.size }, 'grants from other gateways applied');
    }
  }

  /** Runs one entry's apply; a failure is logged, never thrown (the others still go). */
  private async guarded(message: ClusterMessage, apply: () => Promise<void>): Promise<void> {
    try {
      await apply();
    } catch (err) {
      this.log.error({ ...errorFields(err), kind: message.type, gateway: message.body.gateway }, 'cluster entry could not be applied');
    }
  }

  /** True when the grant went into the kernel or the records here; every other outcome is counted and logged. */
  private async applyGrant(grant: ClusterGrant, seq: number): Promise<boolean> {
    const fields = { ip: grant.ip, app: grant.app, user: grant.user, step: grant.kind, gateway: grant.gateway, seq };
    const revoked = this.revokedBefore(grant, seq);
    if (revoked) return this.ignored(revoked, fields, 'cluster grant covered by a later revoke: ignored');
    const now = this.now();
    const ttl = Math.ceil((grant.expiresAt - now) / 1000);
    if (ttl <= 0) return this.ignored('expired', fields, 'cluster grant expired before it could be applied: ignored');
    const app = this.options.apps().find((a) => a.name === grant.app);
    if (!app) return this.ignored('unknown-app', fields, 'cluster grant for an app this gateway does not have: ignored');
    if (!app.users.some((u) => u.name === grant.user))
      return this.ignored('unknown-user', fields, 'cluster grant for a user this gateway does not have: ignored');
    const sessions = this.options.sessions;
    const own = sessions.find(grant.ip, grant.app, grant.user, grant.kind);
    if (own && own.expiresAt >= grant.expiresAt) return false; // already known (an overlap of snapshot and live)
    this.orders.set(recordKey({ step: grant.kind, ip: grant.ip, app: grant.app, user: grant.user }), { order: seq, sequenced: true, issuedAt: grant.issuedAt });
    const remote = { ip: grant.ip, user: grant.user, step: grant.kind, expiresAt: grant.expiresAt, gateway: grant.gateway };
    const kernel = sessions.kernelExpiry(grant.ip, grant.kind, grant.app);
    // The kernel's timeout is set, not extended: a longer grant in place stays as it is.
    if (kernel !== undefined && kernel >= grant.expiresAt) this.options.granter.recordRemote({ ...remote, app: grant.app });
    else await this.options.granter.applyRemote({ ...remote, app }, ttl);
    return true;
  }

  /**
   * Why a grant from another gateway must not open, if a revoke covers it: the store ordered a
   * revoke of its scope after it ('revoked'); a revoke made here is not in the store yet, so the
   * store will order it after every grant it has ('revoked-not-shared'); or the grant was signed
   * more than the accepted clock skew before a revoke, whatever sequence it comes with
   * ('revoked-replay': the sequence is not signed, the time is).
   */
  private revokedBefore(grant: ClusterGrant, seq: number): string | undefined {
    if (seq < this.revokeSeqOf(grant.ip, grant.app)) return 'revoked';
    const scopes = [scopeKey(grant.ip, undefined), scopeKey(grant.ip, grant.app)];
    if (this.unsharedScopes.size > 0 && [...this.unsharedScopes.values()].some((scope) => scopes.includes(scope))) return 'revoked-not-shared';
    const revokedAt = Math.max(...scopes.map((scope) => this.revokeTimes.get(scope) ?? 0));
    if (grant.issuedAt + MAX_CLOCK_SKEW_MS < revokedAt) return 'revoked-replay';
    return undefined;
  }

  /** The sequence of the latest revoke known here of the address's app (or of all its apps); 0 when none. */
  private revokeSeqOf(ip: string, app: string): number {
    return Math.max(this.revokeSeqs.get(scopeKey(ip, undefined)) ?? 0, this.revokeSeqs.get(scopeKey(ip, app)) ?? 0);
  }

  /** A revoke from another gateway, kept in the journal (as shared) so that a restart here still knows it. */
  private rememberRevoke(id: string, text: string, revoke: ClusterRevoke, seq: number): void {
    this.noteRevokeTime(revoke);
    this.noteRevokeSeq(revoke, seq);
    if (this.journal.has(id)) return;
    // idle() waits for it too: a stop right after still leaves it in the file.
    this.settleLater(this.journalWrite(this.journal.record({ id, text, keepUntil: revoke.issuedAt + this.longestGrantMs(), shared: true, seq })));
  }

  private noteRevokeTime(revoke: Pick<ClusterRevoke, 'ip' | 'app' | 'issuedAt'>): void {
    const key = scopeKey(revoke.ip, revoke.app);
    if ((this.revokeTimes.get(key) ?? 0) < revoke.issuedAt) this.revokeTimes.set(key, revoke.issuedAt);
  }

  private noteRevokeSeq(revoke: Pick<ClusterRevoke, 'ip' | 'app'>, seq: number): void {
    const key = scopeKey(revoke.ip, revoke.app);
    if ((this.revokeSeqs.get(key) ?? 0) < seq) this.revokeSeqs.set(key, seq);
  }

  /**
   * Closes the grants the revoke covers that the store ordered before it (or, for a grant made
   * here that the store did not have, that was made before this gateway saw it); grants after it
   * stand, since a snapshot replays old revokes. Applying one twice changes nothing. A kernel
   * entry is shared by the records of one app's service grant: when one of them is older, it closes.
   */
  private async applyRevoke(revoke: ClusterRevoke, seq: number): Promise<void> {
    const apps = this.options.apps();
    const app = revoke.app !== undefined ? apps.find((a) => a.name === revoke.app) : undefined;
    if (revoke.app !== undefined && !app) {
      // No such app here: nothing of it to close, but an operator comparing gateways should see it.
      this.ignored(
        'revoke-unknown-app',
        { ip: revoke.ip, app: revoke.app, gateway: revoke.gateway, seq },
        'cluster revoke for an app this gateway does not have: ignored',
      );
      return;
    }
    const records = this.options.sessions.listOf(revoke.ip).filter((r) => revoke.app === undefined || r.app === revoke.app);
    const older = records.filter((r) => (this.orders.get(recordKey(r))?.order ?? 0) < seq);
    if (older.length === 0) return;
    if (older.length === records.length || (app !== undefined && older.some((r) => r.step === 'service'))) {
      this.log.info({ ip: revoke.ip, app: revoke.app ?? '*', gateway: revoke.gateway, seq }, 'revoke from another gateway');
      await this.options.granter.revoke(revoke.ip, app);
      return;
    }
    if (revoke.app !== undefined) return; // only the address's newer grants, or an older step-2 window a one-app revoke leaves
    for (const name of new Set(older.map((r) => r.app))) {
      const each = apps.find((a) => a.name === name);
      if (each) await this.options.granter.revoke(revoke.ip, each);
    }
  }

  /** An entry refused before it was queued (message.ts's reasons, or 'unsequenced'): counted and logged. */
  private refused(reason: string, fields: Record<string, unknown>): void {
    this.options.metrics?.rejected.inc({ reason });
    this.log.debug({ ...fields, reason }, 'cluster entry refused');
    this.tally(`refused:${reason}`, fields);
  }

  /** A valid entry not applied here: counted, logged (debug) and summed in a warning. Returns false (nothing applied). */
  private ignored(reason: string, fields: Record<string, unknown>, text: string): false {
    this.options.metrics?.ignored.inc({ reason });
    this.log.debug({ ...fields, reason }, text);
    this.tally(`ignored:${reason}`, fields);
    return false;
  }

  /**
   * Sums refused and ignored entries per reason into one warning per IGNORED_LOG_MS (a joining
   * gateway may ignore thousands at once), with the first one of each reason as an example.
   */
  private tally(reason: string, example: Record<string, unknown>): void {
    const known = this.ignoredTally.get(reason);
    if (known) known.count++;
    else this.ignoredTally.set(reason, { count: 1, example });
    if (this.ignoredTimer !== undefined || this.stopped) return;
    this.ignoredTimer = setTimeout(() => this.flushTally(), IGNORED_LOG_MS);
    this.ignoredTimer.unref();
  }

  private flushTally(): void {
    this.ignoredTimer = undefined;
    if (this.ignoredTally.size === 0) return;
    const reasons = Object.fromEntries([...this.ignoredTally].map(([reason, { count, example }]) => [reason, { count, example }]));
    this.ignoredTally = new Map();
    this.log.warn({ reasons }, 'cluster entries not applied here');
  }

  private applyUsedCode(code: ClusterUsedCode): void {
    this.options.markCodeUsed({ scope: code.scope, counter: code.counter, expiresAt: Math.ceil(code.expiresAt / 1000) });
  }
}
