/**
 * The cluster wiring (docs/cluster.md): this gateway's grants, operator revokes and accepted
 * one-time codes go to the store, signed, fire and forget; the other gateways' entries come back,
 * are verified and applied through the Granter and the used-code cache. Off the knock path, but
 * for one bounded wait: step 2 gives the store CONFIRM_WAIT_MS to say that another gateway used
 * its one-time code first. A store that is down only costs the sharing.
 */
import type { UsedCode } from '../auth/used-codes.js';
import type { AppConfig, ClusterConfig } from '../config/types.js';
import { decodeClusterMessage, encodeClusterMessage, type ClusterGrant, type ClusterMessage, type ClusterRevoke, type ClusterUsedCode } from './message.js';
import type { ClaimResult, ClusterEntryKind, ClusterStoreState, RedisClusterStore } from './store.js';
import type { ClusterMetrics } from '../metrics/cluster-metrics.js';
import { bounded } from '../shared/bounded.js';
import { BoundedMap } from '../shared/bounded-map.js';
import { errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Granter } from '../sessions/grants.js';
import type { SessionRecord } from '../sessions/record.js';
import type { SessionStore } from '../sessions/store.js';
import { RevokeJournal, type JournaledRevoke } from './revoke-journal.js';

/** What the sync needs of the store (RedisClusterStore; a fake in tests). */
export type ClusterSyncStore = Pick<RedisClusterStore, 'publishGrant' | 'publishRevoke' | 'claimUsedCode' | 'state'>;

export interface ClusterSyncOptions {
  cluster: Pick<ClusterConfig, 'gateway' | 'key'>;
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
  onEntry: (kind: ClusterEntryKind, id: string, text: string) => void;
  onState: (state: ClusterStoreState) => void;
}

/** Health problem while the store is unreachable: degraded, the gateway works alone. */
export const CLUSTER_DISCONNECTED = 'cluster store unreachable: this gateway works alone (grants, revokes and used codes not shared)';
/** Health problem while revokes made here are not in the store yet. */
export const REVOKES_NOT_SHARED = 'revokes closed here, not yet shared';
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
/** Grant times remembered, per (IP, app), so a revoke older than a grant does not close it. */
const MAX_GRANT_TIMES = 65_536;

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
  /** Last revoke time (issuedAt, ms) per (IP, app or '*'). */
  private readonly revokes = new BoundedMap<string, number>(MAX_REVOKES);
  /** Last grant time (issuedAt, ms) per (IP, app). */
  private readonly granted = new BoundedMap<string, number>(MAX_GRANT_TIMES);
  /** Verified entries from other gateways, waiting to be applied in arrival order. */
  private queue: ClusterMessage[] = [];
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
    this.journal = options.journal ?? new RevokeJournal('', [], this.now);
    this.reloadRevokes();
    // Last: the store may report as soon as it exists.
    this.store = options.connect({ onEntry: (kind, id, text) => this.onEntry(kind, id, text), onState: (state) => this.onState(state) });
  }

  get gateway(): string {
    return this.options.cluster.gateway;
  }

  // --- local events, published fire and forget ---

  /** A grant this gateway made (Granter's listener). */
  grantedLocally(record: SessionRecord): void {
    if (record.app === null || record.user === null) return;
    const issuedAt = this.now();
    this.granted.set(scopeKey(record.ip, record.app), issuedAt);
    this.publishGrant(record, issuedAt);
  }

  /**
   * An operator revoke (control socket): closed here through the Granter, saved in the journal,
   * then published. When the store does not take it now, it stays in the journal and is retried
   * until it does (`shared: false` until then).
   */
  async revoke(ip: string, app?: AppConfig): Promise<RevokeOutcome> {
    const closed = await this.options.granter.revoke(ip, app);
    const issuedAt = this.now();
    this.noteRevoke({ ip, ...(app ? { app: app.name } : {}), issuedAt });
    const body: ClusterRevoke = { ip, ...(app ? { app: app.name } : {}), gateway: this.gateway, issuedAt };
    const text = this.encode({ type: 'revoke', body });
    if (text === undefined) return { closed, shared: false };
    const entry: JournaledRevoke = {
      id: `${this.gateway}:${ip}:${app?.name ?? '*'}:${issuedAt}`,
      text,
      keepUntil: issuedAt + this.longestGrantMs(),
      shared: false,
    };
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
  }

  /** One revoke to the store (its key, the grant keys it covers deleted, its announcement); true once the store has it. */
  private async publishRevoke(entry: JournaledRevoke, body: ClusterRevoke): Promise<boolean> {
    const ttlMs = entry.keepUntil - this.now();
    if (ttlMs <= 0) {
      // Outlived every grant it could cover: nothing left to close anywhere.
      await this.journalWrite(this.journal.markShared(entry.id));
      return true;
    }
    const published = this.store.publishRevoke(entry.id, entry.text, ttlMs, { ip: body.ip, ...(body.app !== undefined ? { app: body.app } : {}) });
    this.track('revoke', published);
    const ok = await published.catch(() => false);
    if (ok) await this.journalWrite(this.journal.markShared(entry.id));
    return ok;
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
      const decoded = decodeClusterMessage(this.options.cluster.key, entry.text, this.now());
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
      const decoded = decodeClusterMessage(this.options.cluster.key, entry.text, this.now());
      if (decoded.ok && decoded.message.type === 'revoke') this.noteRevoke(decoded.message.body);
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

  /** Store state changes: on every (re)sync, this gateway's live grants are published again. */
  onState(state: ClusterStoreState): void {
    if (state.synced && !this.wasSynced) {
      for (const record of this.options.sessions.list()) {
        if ((record.gateway === undefined || record.gateway === this.gateway) && record.app !== null && record.user !== null) {
          const issuedAt = this.granted.get(scopeKey(record.ip, record.app)) ?? this.now();
          // A revoke the snapshot just brought closes it in a moment: publishing it again would put it back in the store.
          if (!this.revokedSince(record.ip, record.app, issuedAt)) this.publishGrant(record, issuedAt);
        }
      }
      void this.flushRevokes();
    }
    this.wasSynced = state.synced;
  }

  /** For health: the cluster as this gateway sees it. */
  health(): { gateway: string; connected: boolean; synced: boolean; lagMs?: number; backlog: number; reconnects: number; unsharedRevokes: number } {
    const state = this.store.state();
    return {
      gateway: this.gateway,
      connected: state?.connected ?? false,
      synced: state?.synced ?? false,
      ...(state?.lagMs !== undefined ? { lagMs: state.lagMs } : {}),
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
    if (!state || state.connected) return problems;
    problems.unshift(state.lastError ? `${CLUSTER_DISCONNECTED}; last error: ${state.lastError}` : CLUSTER_DISCONNECTED);
    return problems;
  }

  /** Resolves once every entry received so far is applied and every publish settled (tests, stop). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
    await Promise.allSettled([...this.pending]);
  }

  /** Entries received and not yet applied (a joining gateway's snapshot, mostly). */
  backlog(): number {
    return this.queue.length + this.inFlight;
  }

  private publishGrant(record: SessionRecord, issuedAt: number): void {
    const body: ClusterGrant = {
      kind: record.step,
      ip: record.ip,
      app: record.app!,
      user: record.user!,
      expiresAt: record.expiresAt,
      gateway: this.gateway,
      issuedAt,
    };
    if (body.expiresAt <= issuedAt) return;
    const text = this.encode({ type: 'grant', body });
    if (text === undefined) return;
    const id = `${this.gateway}:${body.kind}:${body.ip}:${body.app}:${body.user}`;
    this.track('grant', this.store.publishGrant(id, text, body.expiresAt, { ip: body.ip, app: body.app }));
  }

  private encode(message: Parameters<typeof encodeClusterMessage>[1]): string | undefined {
    try {
      return encodeClusterMessage(this.options.cluster.key, message);
    } catch (err) {
      this.log.error({ ...errorFields(err), type: message.type }, 'cluster message not published');
      return undefined;
    }
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
  onEntry(kind: ClusterEntryKind, id: string, text: string): void {
    const decoded = decodeClusterMessage(this.options.cluster.key, text, this.now());
    if (!decoded.ok) {
      this.options.metrics?.rejected.inc({ reason: decoded.reason });
      this.log.debug({ kind, id, reason: decoded.reason }, 'cluster entry refused');
      return;
    }
    const message = decoded.message;
    if (message.type !== kind) {
      this.options.metrics?.rejected.inc({ reason: 'malformed' });
      this.log.debug({ kind, id, type: message.type }, 'cluster entry refused: its key and type differ');
      return;
    }
    // Own entries come back in snapshots: already applied here.
    if (message.body.gateway === this.gateway) return;
    this.options.metrics?.received.inc({ kind });
    // Known at once, before any queued grant is applied: a snapshot lists revokes after the
    // grants they cover, and a revoked grant must not open, even for the time of a join.
    if (message.type === 'revoke') this.rememberRevoke(id, text, message.body);
    this.queue.push(message);
    // Started after the caller's turn: a snapshot delivered in one loop is then one batch, not its first entry alone.
    this.draining ??= Promise.resolve().then(() => this.drain());
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
        let grants: ClusterGrant[] = [];
        for (const message of batch) {
          if (message.type === 'grant') grants.push(message.body);
          else if (message.type === 'used-code') this.applyUsedCode(message.body);
          else {
            await this.applyGrants(grants);
            grants = [];
            await this.guarded(message, () => this.applyRevoke(message.body));
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
  private async applyGrants(grants: readonly ClusterGrant[]): Promise<void> {
    if (grants.length === 0) return;
    const latest = new Map<string, ClusterGrant>();
    for (const grant of grants) {
      const key = `${grant.kind}\0${scopeKey(grant.ip, grant.app)}\0${grant.user}`;
      const known = latest.get(key);
      if (!known || known.expiresAt < grant.expiresAt || (known.expiresAt === grant.expiresAt && known.issuedAt < grant.issuedAt)) latest.set(key, grant);
    }
    let applied = 0;
    const apply = async (grant: ClusterGrant): Promise<void> => {
      if (await this.applyGrant(grant)) applied++;
    };
    await Promise.all([...latest.values()].map((grant) => this.guarded({ type: 'grant', body: grant }, () => apply(grant))));
    // One line per batch, not per grant: a joining gateway applies a whole site's grants at once.
    if (applied === 1 && latest.size === 1) {
      const [grant] = latest.values();
      this.log.info({ ip: grant!.ip, app: grant!.app, user: grant!.user, step: grant!.kind, gateway: grant!.gateway }, 'granted by another gateway');
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

  /** True when the grant went into the kernel or the records here. */
  private async applyGrant(grant: ClusterGrant): Promise<boolean> {
    if (this.revokedSince(grant.ip, grant.app, grant.issuedAt)) {
      this.options.metrics?.ignored.inc({ reason: 'revoked' });
      this.log.debug({ ip: grant.ip, app: grant.app, gateway: grant.gateway }, 'cluster grant issued before a revoke: ignored');
      return false;
    }
    const now = this.now();
    const ttl = Math.ceil((grant.expiresAt - now) / 1000);
    if (ttl <= 0) return false;
    const app = this.options.apps().find((a) => a.name === grant.app);
    if (!app) {
      this.options.metrics?.ignored.inc({ reason: 'unknown-app' });
      this.log.debug({ app: grant.app, gateway: grant.gateway }, 'cluster grant for an app this gateway does not have: ignored');
      return false;
    }
    if (!app.users.some((u) => u.name === grant.user)) {
      this.options.metrics?.ignored.inc({ reason: 'unknown-user' });
      this.log.debug({ app: grant.app, user: grant.user, gateway: grant.gateway }, 'cluster grant for a user this gateway does not have: ignored');
      return false;
    }
    const sessions = this.options.sessions;
    const own = sessions.find(grant.ip, grant.app, grant.user, grant.kind);
    if (own && own.expiresAt >= grant.expiresAt) return false; // already known (an overlap of snapshot and live)
    const previous = this.granted.get(scopeKey(grant.ip, grant.app)) ?? 0;
    this.granted.set(scopeKey(grant.ip, grant.app), Math.max(previous, grant.issuedAt));
    const remote = { ip: grant.ip, user: grant.user, step: grant.kind, expiresAt: grant.expiresAt, gateway: grant.gateway };
    const kernel = sessions.kernelExpiry(grant.ip, grant.kind, grant.app);
    // The kernel's timeout is set, not extended: a longer grant in place stays as it is.
    if (kernel !== undefined && kernel >= grant.expiresAt) this.options.granter.recordRemote({ ...remote, app: grant.app });
    else await this.options.granter.applyRemote({ ...remote, app }, ttl);
    return true;
  }

  /** A revoke known here (of the app or of every app of the address) was issued at or after `issuedAt`. */
  private revokedSince(ip: string, app: string, issuedAt: number): boolean {
    return issuedAt <= Math.max(this.revokes.get(scopeKey(ip, undefined)) ?? 0, this.revokes.get(scopeKey(ip, app)) ?? 0);
  }

  /** A revoke from another gateway, kept in the journal (as shared) so that a restart here still knows it. */
  private rememberRevoke(id: string, text: string, revoke: ClusterRevoke): void {
    this.noteRevoke(revoke);
    if (this.journal.has(id)) return;
    const written = this.journalWrite(this.journal.record({ id, text, keepUntil: revoke.issuedAt + this.longestGrantMs(), shared: true }));
    // idle() waits for it too: a stop right after still leaves it in the file.
    this.pending.add(written);
    void written.finally(() => this.pending.delete(written));
  }

  private noteRevoke(revoke: Pick<ClusterRevoke, 'ip' | 'app' | 'issuedAt'>): void {
    const key = scopeKey(revoke.ip, revoke.app);
    if ((this.revokes.get(key) ?? 0) < revoke.issuedAt) this.revokes.set(key, revoke.issuedAt);
  }

  /**
   * Closes the grants the revoke covers that were made before it; grants made after it (here or
   * elsewhere) stand, since a snapshot replays old revokes. Applying one twice changes nothing.
   */
  private async applyRevoke(revoke: ClusterRevoke): Promise<void> {
    const apps = this.options.apps();
    const app = revoke.app !== undefined ? apps.find((a) => a.name === revoke.app) : undefined;
    if (revoke.app !== undefined && !app) {
      // No such app here: nothing of it to close, but an operator comparing gateways should see it.
      this.options.metrics?.ignored.inc({ reason: 'revoke-unknown-app' });
      this.log.debug({ ip: revoke.ip, app: revoke.app, gateway: revoke.gateway }, 'cluster revoke for an app this gateway does not have: ignored');
      return;
    }
    const records = this.options.sessions.listOf(revoke.ip).filter((r) => revoke.app === undefined || r.app === revoke.app);
    const older = records.filter((r) => this.issuedAt(r, apps) <= revoke.issuedAt);
    if (older.length === 0) return;
    if (older.length === records.length) {
      this.log.info({ ip: revoke.ip, app: revoke.app ?? '*', gateway: revoke.gateway }, 'revoke from another gateway');
      await this.options.granter.revoke(revoke.ip, app);
      return;
    }
    if (revoke.app !== undefined) return; // the one app's grant is newer
    for (const name of new Set(older.map((r) => r.app))) {
      const each = apps.find((a) => a.name === name);
      if (each) await this.options.granter.revoke(revoke.ip, each);
    }
  }

  /**
   * When the grant behind a record was made: as seen here, or else (a record restored from the
   * state file) its expiry less the app's duration for that step; 0 when the app is gone.
   */
  private issuedAt(record: SessionRecord, apps: readonly AppConfig[]): number {
    const seen = this.granted.get(scopeKey(record.ip, record.app ?? undefined));
    if (seen !== undefined) return seen;
    const app = apps.find((a) => a.name === record.app);
    if (!app) return 0;
    return record.expiresAt - 1000 * (record.step === 'step2' ? app.step2Duration : app.duration);
  }

  private applyUsedCode(code: ClusterUsedCode): void {
    this.options.markCodeUsed({ scope: code.scope, counter: code.counter, expiresAt: Math.ceil(code.expiresAt / 1000) });
  }
}
