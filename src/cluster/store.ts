// The grants, revokes and one-time-code claims several gateways share through Redis 7 / Valkey
// (optionally behind Sentinel): bounded, never-blocking calls, a snapshot on every (re)connect, then live updates.
import { Redis, type RedisOptions } from 'ioredis';
import { bounded, TimeoutError } from '../shared/bounded.js';
import type { Logger } from '../shared/log.js';
import {
  DEFAULT_BACKOFF,
  announceChannel,
  backoffDelay,
  chunks,
  decodeAnnouncement,
  encodeAnnouncement,
  entryKey,
  globEscape,
  grantIndexKey,
  parseEntryKey,
  type Announcement,
  type BackoffOptions,
  type ClusterEntry,
  type ClusterEntryKind,
} from './store-parts.js';

export type { ClusterEntry, ClusterEntryKind } from './store-parts.js';

/*
 * Announcements: pub/sub, not a Stream. The keys are the source of truth (each entry is a key
 * with its own absolute expiry), and every (re)connect replays them with a snapshot, so a
 * gateway that missed announcements while away catches up from the keys; the announcement
 * only makes a live update prompt. A Stream would replay missed announcements by ID, but only
 * as far back as MAXLEN keeps, so the snapshot would still be needed after a long outage, and it
 * would add trimming, consumer positions and a blocking XREAD connection for no state the
 * snapshot lacks. Pub/sub is fire-and-forget, costs nothing when no gateway listens and keeps
 * Redis's memory bounded by the live entries alone.
 *
 * Semantics for the consumer (onEntry):
 *  - Texts are opaque here: the store never parses, verifies or merges them; message.ts does.
 *  - Deliveries are at-least-once across reconnects (each (re)connect replays every live entry,
 *    including this gateway's own), so applying an entry must be idempotent. Within one sync the
 *    snapshot and the live messages buffered while it ran are deduplicated: each entry once.
 *  - A revoke is its own entry (`revoke:<id>`, kept for ttlMs), so a gateway rejoining within
 *    ttlMs still learns it, and the same script deletes the grant keys it covers (found through
 *    the address's index, `grant-index:<ip>`), so no snapshot hands them out again. The snapshot lists grants, then used codes,
 *    then revokes, but it is the consumer's job to order by the messages' issuedAt and apply a
 *    revoke to the grants it covers, whatever order they arrive in.
 *  - Live announcements a gateway published itself are not delivered back to it.
 */

/** Health and metrics figures; a copy, safe to keep. */
export interface ClusterStoreState {
  /** Both connections (commands and subscription) are up. */
  connected: boolean;
  /** The last snapshot since the subscription (re)connected has been delivered; live updates flow. */
  synced: boolean;
  lastError?: string;
  /** Times the store came back after having been connected. */
  reconnects: number;
  /** Publish time to delivery time of the last live announcement (publisher's clock vs ours: includes skew). */
  lagMs?: number;
  /** Announcements this gateway published (grants, revokes, claimed codes). */
  published: number;
  /** Publishes and claims that failed (store down, timeout, error). */
  publishFailures: number;
  /** Entries delivered to onEntry, from snapshots and live. */
  received: number;
  /** Snapshots delivered (one per successful (re)connect sync). */
  snapshots: number;
}

export type ClaimResult = 'claimed' | 'already-used' | 'unavailable';

export interface ClusterStoreTimeouts {
  /** TCP + handshake for one connection attempt (default 2000). */
  connectMs?: number;
  /** One command or transaction: publishes and claims never wait longer (default 1000). */
  commandMs?: number;
  /** A whole snapshot, every SCAN and MGET included (default 15000). */
  snapshotMs?: number;
  /** Reconnect schedule: exponential from baseMs, capped at capMs, jittered (default 100..10000). */
  backoff?: BackoffOptions;
}

export interface ClusterStoreOptions {
  /** `redis://` or `rediss://` URL of a single server; or `sentinels` + `sentinelName`. */
  url?: string;
  sentinels?: Array<{ host: string; port: number }>;
  /** The master name Sentinel monitors. */
  sentinelName?: string;
  username?: string;
  password?: string;
  /** Sentinel's own credentials, when it has any (its ACL user differs from the data nodes'). */
  sentinelUsername?: string;
  sentinelPassword?: string;
  /** TLS to the data nodes (and to the sentinels when they are used). */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Prefix of every key and of the channel, e.g. `knock-port:` (shared by all gateways of a cluster). */
  prefix: string;
  /** This gateway's name: its own announcements are not delivered back. */
  gateway: string;
  logger: Logger;
  /** Called for each entry from another gateway (live) and for each live entry of a snapshot. */
  onEntry(kind: ClusterEntryKind, id: string, text: string): void;
  /** Called when `connected` or `synced` changes. */
  onState?(state: ClusterStoreState): void;
  now?: () => number;
  timeouts?: ClusterStoreTimeouts;
}

/** SCAN COUNT and MGET batch size. */
export const SNAPSHOT_BATCH = 1000;
/** Live announcements held while a snapshot runs; beyond it, they are dropped and the snapshot restarts. */
export const MAX_BUFFERED = 10_000;
/** Upper bound on SCAN round trips in one snapshot, besides its time limit. */
const MAX_SCAN_CALLS = 1_000_000;
/** Longest close() waits for the sockets to end. */
const CLOSE_WAIT_MS = 2000;

/** Order of kinds in a snapshot: grants first, revokes last (see the semantics above). */
const KIND_ORDER: Record<ClusterEntryKind, number> = { grant: 0, 'used-code': 1, revoke: 2 };

/** Atomic one-time-code claim plus its announcement: SET NX PXAT, and PUBLISH only when it was set. */
const CLAIM_SCRIPT = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0`;

/** The address (and app) of a grant: its key is indexed under the address for revokes. */
export interface GrantScope {
  ip: string;
  app: string;
}

/** What a revoke covers: one app of the address, or all of them when `app` is absent. */
export interface RevokeScope {
  ip: string;
  app?: string;
}

/**
 * A grant: its key until its expiry (PXAT), its key in the address's index (a hash: grant key ->
 * app; the index lives as long as its longest grant), and its announcement.
 * KEYS: grant key, index key. ARGV: text, channel, announcement, expiresAt, app.
 */
const GRANT_SCRIPT = `redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[4])
redis.call('HSET', KEYS[2], KEYS[1], ARGV[5])
if redis.call('PEXPIRETIME', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIREAT', KEYS[2], ARGV[4]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`;

/**
 * A revoke: its key for ttl ms, the grant keys it covers deleted (from the address's index, of
 * the one app or of all when ARGV[5] is empty), and its announcement, in one step.
 * KEYS: revoke key, index key. ARGV: text, channel, announcement, ttl, app or ''.
 */
const REVOKE_SCRIPT = `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
local index = redis.call('HGETALL', KEYS[2])
local deleted = 0
for i = 1, #index, 2 do
  if ARGV[5] == '' or index[i + 1] == ARGV[5] then
    deleted = deleted + redis.call('DEL', index[i])
    redis.call('HDEL', KEYS[2], index[i])
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return deleted`;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class RedisClusterStore {
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly channel: string;
  private readonly now: () => number;
  private readonly commandMs: number;
  private readonly snapshotMs: number;
  private readonly backoff: BackoffOptions;
  private readonly log: Logger;

  private closed = false;
  private cmdReady = false;
  private subscribed = false;
  private synced = false;
  private everConnected = false;
  private wasConnected = false;
  /** Bumped whenever the subscription is lost or a sync must restart: a stale sync's results are dropped. */
  private generation = 0;
  private syncing = false;
  private syncAttempts = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private buffered: Announcement[] = [];
  private syncWaiters: Array<() => void> = [];
  private readonly counters = { reconnects: 0, published: 0, publishFailures: 0, received: 0, snapshots: 0 };
  private lastError: string | undefined;
  private lagMs: number | undefined;

  private constructor(private readonly options: ClusterStoreOptions) {
    this.channel = announceChannel(options.prefix);
    this.now = options.now ?? Date.now;
    this.commandMs = options.timeouts?.commandMs ?? 1000;
    this.snapshotMs = options.timeouts?.snapshotMs ?? 15_000;
    this.backoff = options.timeouts?.backoff ?? DEFAULT_BACKOFF;
    this.log = options.logger.child({ component: 'cluster-store' });
    this.cmd = this.createClient('cmd');
    this.sub = this.createClient('sub');
    this.wire();
  }

  /**
   * Starts connecting in the background and returns at once: the daemon never waits for Redis.
   * `whenSynced()` waits (bounded) for the first snapshot when a caller wants to.
   */
  static connect(options: ClusterStoreOptions): RedisClusterStore {
    if (!options.url && !(options.sentinels && options.sentinels.length > 0)) throw new Error('cluster store: either url or sentinels is required');
    if (options.sentinels && options.sentinels.length > 0 && !options.sentinelName) throw new Error('cluster store: sentinels need sentinelName');
    if (options.prefix === '') throw new Error('cluster store: prefix must not be empty');
    return new RedisClusterStore(options);
  }

  private createClient(role: 'cmd' | 'sub'): Redis {
    const o = this.options;
    const retry = (attempt: number): number | null => (this.closed ? null : backoffDelay(attempt, this.backoff));
    const common: RedisOptions = {
      connectionName: `knock-port:${o.gateway}:${role}`,
      username: o.username,
      password: o.password,
      connectTimeout: o.timeouts?.connectMs ?? 2000,
      commandTimeout: role === 'cmd' ? this.commandMs : undefined,
      // Fail fast while disconnected: nothing is queued for later, nothing waits for a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: retry,
      // The subscription is renewed by hand on each 'ready', so the snapshot can follow it.
      autoResubscribe: false,
      keepAlive: 10_000,
      ...(o.tls ? { tls: { ...o.tls } } : {}),
    };
    if (o.sentinels && o.sentinels.length > 0) {
      return new Redis({
        ...common,
        sentinels: o.sentinels,
        name: o.sentinelName,
        sentinelUsername: o.sentinelUsername,
        sentinelPassword: o.sentinelPassword,
        sentinelRetryStrategy: retry,
        ...(o.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...o.tls } } : {}),
      });
    }
    return new Redis(o.url as string, common);
  }

  private wire(): void {
    this.cmd.on('ready', () => {
      this.cmdReady = true;
      this.stateChanged();
      if (this.subscribed && !this.synced) this.scheduleSync(0);
    });
    this.cmd.on('close', () => {
      this.cmdReady = false;
      this.stateChanged();
    });
    this.sub.on('ready', () => {
      this.sub.subscribe(this.channel).then(
        () => {
          this.subscribed = true;
          this.resetSync();
          this.stateChanged();
          this.scheduleSync(0);
        },
        (error: unknown) => this.recordError(`subscribe: ${message(error)}`),
      );
    });
    this.sub.on('close', () => {
      this.subscribed = false;
      this.resetSync();
      this.stateChanged();
    });
    this.sub.on('message', (channel: string, raw: string) => {
      if (channel === this.channel) this.onAnnouncement(raw);
    });
    for (const client of [this.cmd, this.sub]) client.on('error', (error: unknown) => this.recordError(message(error)));
  }

  private recordError(text: string): void {
    if (this.closed) return;
    // Each reconnect attempt repeats the same error: log it when it changes, not every time.
    if (text !== this.lastError) this.log.warn({ error: text }, 'cluster store error');
    this.lastError = text;
  }

  private connectedNow(): boolean {
    return this.cmdReady && this.subscribed;
  }

  private stateChanged(): void {
    const connected = this.connectedNow();
    if (connected !== this.wasConnected) {
      if (connected) {
        if (this.everConnected) this.counters.reconnects++;
        this.everConnected = true;
        this.log.info({ reconnects: this.counters.reconnects }, 'cluster store connected');
      } else if (!this.closed) {
        this.log.warn({ error: this.lastError }, 'cluster store disconnected');
      }
      this.wasConnected = connected;
    }
    this.options.onState?.(this.state());
  }

  /** The subscription changed: any sync in progress is stale, live delivery waits for a new snapshot. */
  private resetSync(): void {
    this.generation++;
    this.synced = false;
    this.buffered = [];
    this.syncAttempts = 0;
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
  }

  private scheduleSync(delayMs: number): void {
    if (this.closed || this.syncTimer !== undefined) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      void this.sync();
    }, delayMs);
  }

  /** Snapshot, deliver it, then the live announcements that arrived meanwhile (minus those it held), then go live. */
  private async sync(): Promise<void> {
    if (this.closed || this.synced || this.syncing || !this.subscribed || !this.cmdReady) return;
    const generation = this.generation;
    this.syncing = true;
    let entries: ClusterEntry[] | undefined;
    try {
      entries = await this.snapshot();
      // Barrier: the subscription and the commands are separate connections, so the announcement of
      // a key the SCAN saw may still be in flight on the subscription. It was pushed there before
      // the SCAN read the key (SET and PUBLISH are one transaction), so it arrives before the
      // reply to a PING sent on the subscription now: after it, the buffer holds every such duplicate.
      await bounded(this.sub.ping(), this.commandMs, 'sync barrier');
    } catch (error) {
      this.recordError(`snapshot: ${message(error)}`);
    } finally {
      this.syncing = false;
    }
    if (this.closed) return;
    if (generation !== this.generation) {
      // The subscription dropped or the buffer overflowed meanwhile: start over if we can.
      if (this.subscribed) this.scheduleSync(0);
      return;
    }
    if (!entries) {
      // cmd's 'ready' retries too; this covers a snapshot that failed on a live connection.
      this.scheduleSync(backoffDelay(++this.syncAttempts, this.backoff));
      return;
    }
    const seen = new Set<string>();
    for (const e of entries) {
      seen.add(`${e.kind}\0${e.id}\0${e.text}`);
      this.deliver(e.kind, e.id, e.text);
    }
    const live = this.buffered;
    this.buffered = [];
    for (const a of live) {
      if (!seen.has(`${a.kind}\0${a.id}\0${a.text}`)) this.deliverLive(a);
    }
    this.synced = true;
    this.syncAttempts = 0;
    this.counters.snapshots++;
    this.log.info({ entries: entries.length, live: live.length }, 'cluster store snapshot delivered');
    this.stateChanged();
    for (const wake of this.syncWaiters.splice(0)) wake();
  }

  private onAnnouncement(raw: string): void {
    const a = decodeAnnouncement(raw);
    if (!a) {
      this.log.debug('cluster store: ignored an announcement it cannot read');
      return;
    }
    if (a.gateway === this.options.gateway) return;
    if (this.synced) {
      this.deliverLive(a);
      return;
    }
    this.buffered.push(a);
    if (this.buffered.length > MAX_BUFFERED) {
      // Every buffered entry is also a key, so a fresh snapshot covers what is dropped here.
      this.log.warn({ buffered: this.buffered.length }, 'cluster store: too many updates during a snapshot; restarting it');
      this.resetSync();
      this.scheduleSync(0);
    }
  }

  private deliverLive(a: Announcement): void {
    this.lagMs = this.now() - a.publishedAtMs;
    this.deliver(a.kind, a.id, a.text);
  }

  private deliver(kind: ClusterEntryKind, id: string, text: string): void {
    this.counters.received++;
    try {
      this.options.onEntry(kind, id, text);
    } catch (error) {
      this.log.error({ error: message(error), kind, id }, 'cluster store: onEntry threw');
    }
  }

  /**
   * Stores a grant until `expiresAtMs` (absolute, PXAT) and announces it. False, fast, when the store is down.
   * With `scope`, the grant's key is also indexed under its address, so a revoke can delete it.
   */
  async publishGrant(id: string, text: string, expiresAtMs: number, scope?: GrantScope): Promise<boolean> {
    if (expiresAtMs <= this.now()) return false;
    if (!scope) return this.publish('grant', id, text, 'PXAT', Math.floor(expiresAtMs));
    const key = entryKey(this.options.prefix, 'grant', id);
    const index = grantIndexKey(this.options.prefix, scope.ip);
    return this.runScript('grant', id, text, GRANT_SCRIPT, [key, index], [Math.floor(expiresAtMs), scope.app]);
  }

  /**
   * Stores a revoke for `ttlMs` (the longest grant duration, so a gateway rejoining within it still
   * learns it) and announces it. With `scope`, the same script deletes the grant keys it covers
   * (those indexed under the address, of its app or of all): a gateway that rejoins, or restarts
   * with the revoke key gone, finds no grant to reopen.
   */
  async publishRevoke(id: string, text: string, ttlMs: number, scope?: RevokeScope): Promise<boolean> {
    const ttl = Math.max(1, Math.floor(ttlMs));
    if (!scope) return this.publish('revoke', id, text, 'PX', ttl);
    const key = entryKey(this.options.prefix, 'revoke', id);
    const index = grantIndexKey(this.options.prefix, scope.ip);
    return this.runScript('revoke', id, text, REVOKE_SCRIPT, [key, index], [ttl, scope.app ?? '']);
  }

  /** One script: the entry's key, its index change and its announcement, all or nothing. */
  private async runScript(kind: ClusterEntryKind, id: string, text: string, script: string, keys: string[], extra: Array<string | number>): Promise<boolean> {
    if (this.closed || !this.cmdReady) {
      this.counters.publishFailures++;
      return false;
    }
    const announcement = encodeAnnouncement({ gateway: this.options.gateway, kind, id, text, publishedAtMs: this.now() });
    try {
      await bounded(this.cmd.eval(script, keys.length, ...keys, text, this.channel, announcement, ...extra), this.commandMs, `publish ${kind}`);
      this.counters.published++;
      return true;
    } catch (error) {
      this.counters.publishFailures++;
      this.recordError(`publish ${kind}: ${message(error)}`);
      return false;
    }
  }

  private async publish(kind: ClusterEntryKind, id: string, text: string, mode: 'PX' | 'PXAT', value: number): Promise<boolean> {
    if (this.closed || !this.cmdReady) {
      this.counters.publishFailures++;
      return false;
    }
    const key = entryKey(this.options.prefix, kind, id);
    const announcement = encodeAnnouncement({ gateway: this.options.gateway, kind, id, text, publishedAtMs: this.now() });
    try {
      const tx = this.cmd.multi();
      if (mode === 'PXAT') tx.set(key, text, 'PXAT', value);
      else tx.set(key, text, 'PX', value);
      tx.publish(this.channel, announcement);
      const results = await bounded(tx.exec(), this.commandMs, `publish ${kind}`);
      if (!results) throw new Error('transaction aborted');
      for (const [error] of results) if (error) throw error;
      this.counters.published++;
      return true;
    } catch (error) {
      this.counters.publishFailures++;
      this.recordError(`publish ${kind}: ${message(error)}`);
      return false;
    }
  }

  /**
   * The shared one-time-code claim: SET NX PXAT, atomic across gateways, announced when it wins.
   * 'unavailable' when the store is down or slow: the caller decides (its fail-closed policy).
   */
  async claimUsedCode(id: string, text: string, expiresAtMs: number): Promise<ClaimResult> {
    if (this.closed || !this.cmdReady) {
      this.counters.publishFailures++;
      return 'unavailable';
    }
    // A claim must exist at least briefly to be a claim at all, even for a code at the end of its window.
    const at = Math.max(Math.floor(expiresAtMs), this.now() + 1000);
    const key = entryKey(this.options.prefix, 'used-code', id);
    const announcement = encodeAnnouncement({ gateway: this.options.gateway, kind: 'used-code', id, text, publishedAtMs: this.now() });
    try {
      const result = await bounded(this.cmd.eval(CLAIM_SCRIPT, 1, key, text, at, this.channel, announcement), this.commandMs, 'claim');
      if (result === 1) {
        this.counters.published++;
        return 'claimed';
      }
      return 'already-used';
    } catch (error) {
      this.counters.publishFailures++;
      this.recordError(`claim: ${message(error)}`);
      return 'unavailable';
    }
  }

  /**
   * Every live entry under the prefix (SCAN COUNT 1000, MGET in chunks of 1000), grants first and
   * revokes last. Rejects when the store is down or the whole scan exceeds its time limit.
   * Runs by itself before live updates on every (re)connect; on demand it only returns the entries.
   */
  async snapshot(): Promise<ClusterEntry[]> {
    if (this.closed) throw new Error('cluster store is closed');
    if (!this.cmdReady) throw new Error('cluster store is not connected');
    const deadline = this.now() + this.snapshotMs;
    const remaining = (): number => {
      const left = deadline - this.now();
      if (left <= 0) throw new TimeoutError(`snapshot timed out after ${this.snapshotMs} ms`);
      return left;
    };
    const prefix = this.options.prefix;
    const pattern = `${globEscape(prefix)}*`;
    const keys = new Set<string>(); // SCAN may return a key more than once
    let cursor = '0';
    for (let calls = 0; calls < MAX_SCAN_CALLS; calls++) {
      const [next, batch] = await bounded(this.cmd.scan(cursor, 'MATCH', pattern, 'COUNT', SNAPSHOT_BATCH), remaining(), 'snapshot scan');
      for (const key of batch) if (parseEntryKey(prefix, key)) keys.add(key);
      cursor = next;
      if (cursor === '0') break;
    }
    if (cursor !== '0') throw new Error('snapshot: SCAN did not finish');
    const entries: ClusterEntry[] = [];
    for (const slice of chunks([...keys], SNAPSHOT_BATCH)) {
      const values = await bounded(this.cmd.mget(...slice), remaining(), 'snapshot mget');
      slice.forEach((key, i) => {
        const text = values[i];
        const parsed = parseEntryKey(prefix, key);
        // null: expired (or deleted) between SCAN and MGET.
        if (parsed && typeof text === 'string') entries.push({ ...parsed, text });
      });
    }
    return entries.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
  }

  /** Resolves true once live updates flow (first snapshot delivered), false after `timeoutMs`. */
  whenSynced(timeoutMs: number): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve(this.synced);
      };
      const timer = setTimeout(() => {
        this.syncWaiters = this.syncWaiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      this.syncWaiters.push(wake);
    });
  }

  state(): ClusterStoreState {
    return {
      connected: this.connectedNow(),
      synced: this.synced,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lagMs !== undefined ? { lagMs: this.lagMs } : {}),
      ...this.counters,
    };
  }

  /** Drops both connections (no reconnect) and waits, bounded, until their sockets end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    for (const wake of this.syncWaiters.splice(0)) wake();
    const ended = [this.cmd, this.sub].map(
      (client) =>
        new Promise<void>((resolve) => {
          // 'reconnecting': no socket, only the retry timer, which disconnect() clears; no 'end' follows.
          if (client.status === 'end' || client.status === 'reconnecting') return resolve();
          client.once('end', () => resolve());
        }),
    );
    this.cmd.disconnect();
    this.sub.disconnect();
    await bounded(Promise.all(ended), CLOSE_WAIT_MS, 'close').catch(() => undefined);
    this.cmdReady = false;
    this.subscribed = false;
    this.synced = false;
    this.options.onState?.(this.state());
  }
}
