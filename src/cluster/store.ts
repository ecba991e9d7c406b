// The grants, revokes and one-time-code claims several gateways share through Redis 7 / Valkey
// (optionally behind Sentinel): bounded, never-blocking calls, a snapshot on every (re)connect, then live updates.
import { createRequire } from 'node:module';
import type * as IoRedis from 'ioredis';
import type { Redis, RedisOptions } from 'ioredis';
import { bounded, TimeoutError } from '../shared/bounded.js';
import type { Logger } from '../shared/log.js';
import { MAX_CLUSTER_MESSAGE_BYTES } from './message.js';
import {
  DEFAULT_BACKOFF,
  announceChannel,
  announcementHead,
  backoffDelay,
  chunks,
  decodeAnnouncement,
  encodeAnnouncement,
  entryKey,
  globEscape,
  grantIndexKey,
  parseEntryKey,
  parseStoredValue,
  revokedKey,
  seqKey,
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
 *    then revokes, but it is the consumer's job to order grants and revokes by their sequence
 *    number (`seq`, given by the store's scripts, never by a gateway's clock) and apply a revoke
 *    to the grants it covers, whatever order they arrive in.
 *  - No value larger than a message can be is ever fetched: the snapshot asks the store for each
 *    value's length first (in a script) and skips, counts and logs the oversized ones.
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
  /** Values under the prefix too large to be a message, skipped unread (snapshots and announcements). */
  oversized: number;
  /** This gateway's clock minus the store's (ms), from the last heartbeat; undefined before the first. */
  clockOffsetMs?: number;
}

/** A grant's publish: stored with its sequence number, refused by the store (a later revoke covers it), or not done. */
export type GrantPublish = { outcome: 'stored'; seq: number } | { outcome: 'revoked' } | { outcome: 'failed' };

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
  /**
   * Heartbeat period (default 1000): a PING on the subscription and the store's TIME. A PING not
   * answered within two periods means a silent partition: the store counts as unreachable and reconnects.
   */
  heartbeatMs?: number;
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
  /** Called for each entry from another gateway (live) and for each live entry of a snapshot; `seq`: see ClusterEntry. */
  onEntry(kind: ClusterEntryKind, id: string, text: string, seq?: number): void;
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
/** Largest value read from the store: a message plus its `<seq> ` prefix (parseStoredValue). */
export const MAX_VALUE_BYTES = MAX_CLUSTER_MESSAGE_BYTES + 32;
/** Largest announcement read (a message JSON-escaped inside the envelope); anything larger is dropped unread. */
const MAX_ANNOUNCEMENT_CHARS = 3 * MAX_VALUE_BYTES + 512;

/**
 * Lua helpers of the grant and revoke scripts. nextSeq: the store's sequence, max(last + 1, TIME
 * in microseconds) (exact in a Lua double until 2255), so it never goes back even if its key is
 * lost. revokedSeq: the sequence of the latest revoke of the address covering the app.
 */
const SEQ_LUA = `local function nextSeq(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local seq = math.max((tonumber(redis.call('GET', key)) or 0) + 1, now)
  redis.call('SET', key, string.format('%.0f', seq))
  return seq
end
local function revokedSeq(key, app)
  return math.max(tonumber(redis.call('HGET', key, app)) or 0, tonumber(redis.call('HGET', key, '*')) or 0)
end
`;

/**
 * The values of KEYS, each fetched only when its length is at most ARGV[1]: false for a missing
 * key (or one that is not a string), the length (an integer) for an oversized one.
 */
const FETCH_SCRIPT = `local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.pcall('STRLEN', key)
  if type(n) ~= 'number' or n == 0 then out[i] = false
  elseif n > tonumber(ARGV[1]) then out[i] = n
  else out[i] = redis.call('GET', key) end
end
return out`;

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

/** A grant as the sync stores it: see storeGrant. */
export interface SequencedGrantScope extends GrantScope {
  /** Its sequence number (`own`), or the last one its gateway had seen when it was made. */
  order: number;
  own: boolean;
}

/** What a revoke covers: one app of the address, or all of them when `app` is absent. */
export interface RevokeScope {
  ip: string;
  app?: string;
}

/**
 * A grant: refused (0) when a revoke of its address and app came after it (its sequence, or for a
 * grant the store never had, the last sequence its gateway had seen when it was made: `order`);
 * else its key until its expiry (PXAT) holding `<seq> <text>` (a new sequence, or its own again
 * when republished), its key in the address's index (a hash: grant key -> app; the index lives as
 * long as its longest grant) and its announcement. Returns the sequence.
 * KEYS: grant key, index key, seq key, revoked key.
 * ARGV: text, channel, announcement head, expiresAt, app, order, '1' when order is its own sequence.
 */
const GRANT_SCRIPT = `${SEQ_LUA}local order = tonumber(ARGV[6])
if revokedSeq(KEYS[4], ARGV[5]) > order then return 0 end
local seq = order
if ARGV[7] ~= '1' then seq = nextSeq(KEYS[3]) end
local q = string.format('%.0f', seq)
redis.call('SET', KEYS[1], q .. ' ' .. ARGV[1], 'PXAT', ARGV[4])
redis.call('HSET', KEYS[2], KEYS[1], ARGV[5])
if redis.call('PEXPIRETIME', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIREAT', KEYS[2], ARGV[4]) end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ',"q":' .. q .. '}')
return seq`;

/**
 * A revoke, in one step: a new sequence; its key for ttl ms holding `<seq> <text>`; the sequence
 * in the address's revoked hash (app or '*', kept as long), which the grant script checks; the
 * grant keys it covers deleted (from the address's index, of the one app or of all when ARGV[5]
 * is empty); and its announcement. Returns the sequence.
 * KEYS: revoke key, index key, seq key, revoked key. ARGV: text, channel, announcement head, ttl, app or ''.
 */
const REVOKE_SCRIPT = `${SEQ_LUA}local seq = nextSeq(KEYS[3])
local q = string.format('%.0f', seq)
redis.call('SET', KEYS[1], q .. ' ' .. ARGV[1], 'PX', ARGV[4])
local field = ARGV[5]
if field == '' then field = '*' end
redis.call('HSET', KEYS[4], field, q)
if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
local index = redis.call('HGETALL', KEYS[2])
local deleted = 0
for i = 1, #index, 2 do
  if ARGV[5] == '' or index[i + 1] == ARGV[5] then
    deleted = deleted + redis.call('DEL', index[i])
    redis.call('HDEL', KEYS[2], index[i])
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ',"q":' .. q .. '}')
return seq`;

/**
 * The Redis client class, loaded on the first connect: ioredis takes about half a second to
 * load, which every daemon start and CLI call without a cluster would otherwise pay.
 */
function redisClientClass(): typeof Redis {
  return (createRequire(import.meta.url)('ioredis') as typeof IoRedis).Redis;
}

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
  private readonly heartbeatMs: number;
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
  private readonly counters = { reconnects: 0, published: 0, publishFailures: 0, received: 0, snapshots: 0, oversized: 0 };
  private lastError: string | undefined;
  private lagMs: number | undefined;
  private clockOffsetMs: number | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** A heartbeat is waiting for its answers. */
  private beating = false;
  /** The last heartbeat went unanswered: unreachable until the subscription is back. */
  private silent = false;

  private constructor(private readonly options: ClusterStoreOptions) {
    this.channel = announceChannel(options.prefix);
    this.now = options.now ?? Date.now;
    this.commandMs = options.timeouts?.commandMs ?? 1000;
    this.snapshotMs = options.timeouts?.snapshotMs ?? 15_000;
    this.backoff = options.timeouts?.backoff ?? DEFAULT_BACKOFF;
    this.heartbeatMs = options.timeouts?.heartbeatMs ?? 1000;
    this.log = options.logger.child({ component: 'cluster-store' });
    this.cmd = this.createClient('cmd');
    this.sub = this.createClient('sub');
    this.wire();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  /**
   * A PING on the subscription and the store's TIME. TCP keepalive takes minutes to notice a
   * silent partition (packets dropped, no reset): an unanswered PING makes it visible in two
   * periods, and reconnecting then resyncs once the store answers again. TIME gives the clock offset.
   */
  private async heartbeat(): Promise<void> {
    if (this.closed || this.beating || !this.subscribed) return;
    this.beating = true;
    const sent = this.now();
    const time = this.cmdReady ? this.cmd.time().catch(() => undefined) : Promise.resolve(undefined);
    try {
      await bounded(this.sub.ping(), 2 * this.heartbeatMs, 'heartbeat');
      const answer = await bounded(time, this.heartbeatMs, 'heartbeat time').catch(() => undefined);
      if (answer) this.clockOffsetMs = Math.round((sent + this.now()) / 2 - (Number(answer[0]) * 1000 + Number(answer[1]) / 1000));
    } catch (error) {
      if (this.closed || !this.subscribed) return;
      this.recordError(`heartbeat: the store did not answer within ${2 * this.heartbeatMs} ms (${message(error)})`);
      this.silent = true;
      this.resetSync();
      this.stateChanged();
      // Ends the silent connection (destroyed after ioredis's disconnectTimeout) and reconnects with the backoff.
      this.sub.disconnect(true);
    } finally {
      this.beating = false;
    }
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
      // A connection the heartbeat found silent is destroyed this soon after it is ended.
      disconnectTimeout: 500,
      ...(o.tls ? { tls: { ...o.tls } } : {}),
    };
    const RedisClient = redisClientClass();
    if (o.sentinels && o.sentinels.length > 0) {
      return new RedisClient({
        ...common,
        sentinels: o.sentinels,
        name: o.sentinelName,
        sentinelUsername: o.sentinelUsername,
        sentinelPassword: o.sentinelPassword,
        sentinelRetryStrategy: retry,
        ...(o.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...o.tls } } : {}),
      });
    }
    return new RedisClient(o.url as string, common);
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
          this.silent = false;
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
    return this.cmdReady && this.subscribed && !this.silent;
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
      this.deliver(e.kind, e.id, e.text, e.seq);
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
    if (raw.length > MAX_ANNOUNCEMENT_CHARS) {
      // Only a writer other than a gateway publishes this (the store's pub/sub output buffer limit bounds what arrives).
      this.counters.oversized++;
      this.log.warn({ chars: raw.length }, 'cluster store: ignored an announcement too large to be a message');
      return;
    }
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
    this.deliver(a.kind, a.id, a.text, a.seq);
  }

  private deliver(kind: ClusterEntryKind, id: string, text: string, seq?: number): void {
    this.counters.received++;
    try {
      this.options.onEntry(kind, id, text, seq);
    } catch (error) {
      this.log.error({ error: message(error), kind, id }, 'cluster store: onEntry threw');
    }
  }

  /**
   * Stores a grant until `expiresAtMs` (absolute, PXAT) and announces it. False, fast, when the store is down.
   * With `scope`, it is stored as storeGrant does (a new sequence, indexed under its address).
   */
  async publishGrant(id: string, text: string, expiresAtMs: number, scope?: GrantScope): Promise<boolean> {
    if (!scope) return expiresAtMs > this.now() && this.publish('grant', id, text, 'PXAT', Math.floor(expiresAtMs));
    return (await this.storeGrant(id, text, expiresAtMs, { ...scope, order: 0, own: false })).outcome === 'stored';
  }

  /**
   * Stores a grant as the sync does: indexed under its address (for revokes to delete), with its
   * sequence number (`order` itself when `own`: a republish keeps its place; else a new one),
   * unless a revoke the store has is later than `order` (then 'revoked', nothing stored).
   */
  async storeGrant(id: string, text: string, expiresAtMs: number, scope: SequencedGrantScope): Promise<GrantPublish> {
    if (expiresAtMs <= this.now()) return { outcome: 'failed' };
    const keys = [
      entryKey(this.options.prefix, 'grant', id),
      grantIndexKey(this.options.prefix, scope.ip),
      seqKey(this.options.prefix),
      revokedKey(this.options.prefix, scope.ip),
    ];
    const seq = await this.runScript('grant', id, text, GRANT_SCRIPT, keys, [Math.floor(expiresAtMs), scope.app, scope.order, scope.own ? '1' : '0']);
    if (seq === undefined) return { outcome: 'failed' };
    return seq > 0 ? { outcome: 'stored', seq } : { outcome: 'revoked' };
  }

  /**
   * Stores a revoke for `ttlMs` (the longest grant duration, so a gateway rejoining within it still
   * learns it) and announces it. With `scope`, it is stored as storeRevoke does.
   */
  async publishRevoke(id: string, text: string, ttlMs: number, scope?: RevokeScope): Promise<boolean> {
    if (!scope) return this.publish('revoke', id, text, 'PX', Math.max(1, Math.floor(ttlMs)));
    return (await this.storeRevoke(id, text, ttlMs, scope)) !== undefined;
  }

  /**
   * Stores a revoke with a new sequence number, which the grant script then checks, and deletes
   * the grant keys it covers (those indexed under the address, of its app or of all), in one
   * script: a gateway that rejoins, or restarts with the revoke key gone, finds no grant to
   * reopen. The sequence, or undefined when the store did not take it.
   */
  async storeRevoke(id: string, text: string, ttlMs: number, scope: RevokeScope): Promise<number | undefined> {
    const keys = [
      entryKey(this.options.prefix, 'revoke', id),
      grantIndexKey(this.options.prefix, scope.ip),
      seqKey(this.options.prefix),
      revokedKey(this.options.prefix, scope.ip),
    ];
    return this.runScript('revoke', id, text, REVOKE_SCRIPT, keys, [Math.max(1, Math.floor(ttlMs)), scope.app ?? '']);
  }

  /** One script: the entry's key, its index change and its announcement, all or nothing. Its integer answer, or undefined. */
  private async runScript(
    kind: ClusterEntryKind,
    id: string,
    text: string,
    script: string,
    keys: string[],
    extra: Array<string | number>,
  ): Promise<number | undefined> {
    if (this.closed || !this.cmdReady) {
      this.counters.publishFailures++;
      return undefined;
    }
    const head = announcementHead({ gateway: this.options.gateway, kind, id, text, publishedAtMs: this.now() });
    try {
      const answer = await bounded(this.cmd.eval(script, keys.length, ...keys, text, this.channel, head, ...extra), this.commandMs, `publish ${kind}`);
      if (typeof answer !== 'number') throw new Error(`unexpected answer ${String(answer)}`);
      if (answer > 0) this.counters.published++;
      return answer;
    } catch (error) {
      this.counters.publishFailures++;
      this.recordError(`publish ${kind}: ${message(error)}`);
      return undefined;
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
    const oversized: Array<{ key: string; bytes: number }> = [];
    for (const slice of chunks([...keys], SNAPSHOT_BATCH)) {
      const values = await bounded(this.cmd.eval(FETCH_SCRIPT, slice.length, ...slice, MAX_VALUE_BYTES), remaining(), 'snapshot fetch');
      if (!Array.isArray(values)) throw new Error('snapshot: unexpected answer to the fetch script');
      slice.forEach((key, i) => {
        const value: unknown = values[i];
        const parsed = parseEntryKey(prefix, key);
        if (typeof value === 'number') oversized.push({ key, bytes: value });
        // null: expired (or deleted) between SCAN and the fetch.
        else if (parsed && typeof value === 'string') entries.push({ ...parsed, ...parseStoredValue(value) });
      });
    }
    if (oversized.length > 0) {
      this.counters.oversized += oversized.length;
      const largest = oversized.reduce((a, b) => (b.bytes > a.bytes ? b : a));
      this.log.warn(
        { oversized: oversized.length, largestKey: largest.key, largestBytes: largest.bytes, limit: MAX_VALUE_BYTES },
        'cluster store: values too large to be messages skipped unread (written by something other than a gateway)',
      );
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
      ...(this.clockOffsetMs !== undefined ? { clockOffsetMs: this.clockOffsetMs } : {}),
      ...this.counters,
    };
  }

  /** Drops both connections (no reconnect) and waits, bounded, until their sockets end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
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
