// ClusterSync with a fake store and a recording firewall: what is published, what is applied, what is refused.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { UsedCode } from '../../../src/auth/used-codes.js';
import { clusterSigningKey, decodeClusterMessage, encodeClusterMessage, type ClusterMessage } from '../../../src/cluster/message.js';
import type { ClaimResult, ClusterEntryKind, ClusterStoreState, GrantPublish, RevokeScope, SequencedGrantScope } from '../../../src/cluster/store.js';
import { REVOKE_JOURNAL_FILE, RevokeJournal } from '../../../src/cluster/revoke-journal.js';
import type { AppConfig } from '../../../src/config/types.js';
import { createClusterMetrics } from '../../../src/metrics/cluster-metrics.js';
import { MetricsRegistry } from '../../../src/metrics/registry.js';
import {
  ClusterSync,
  CLOCK_SKEW,
  CLUSTER_DISCONNECTED,
  CONFIRM_WAIT_MS,
  REVOKES_NOT_SHARED,
  REVOKE_RETRY_MS,
  type ClusterSyncStore,
} from '../../../src/cluster/sync.js';
import { Granter, type GrantingFirewall } from '../../../src/sessions/grants.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { testConfig } from '../step2/fixtures.js';
import { valueOf } from '../metrics/values.js';
import { capturedLogger } from '../sessions/log-capture.js';

const CLUSTER_KEY = Buffer.from('a'.repeat(64), 'hex');
const NAME = 'site-a';
/** What the sync signs with: the cluster key bound to the cluster name. */
const KEY = clusterSigningKey(CLUSTER_KEY, NAME);
const OTHER_KEY = clusterSigningKey(Buffer.from('b'.repeat(64), 'hex'), NAME);
/** The same cluster key under another cluster name (another site). */
const OTHER_SITE = clusterSigningKey(CLUSTER_KEY, 'site-b');

/** The store's sequence, shared by the fake store and by deliveries made in a test: their order is the store's. */
let sequence = 1000;
const nextSeq = (): number => ++sequence;

class RecordingFirewall implements GrantingFirewall {
  calls: string[] = [];
  /** While true, service grants stay pending until release(): how many the sync has in flight at once. */
  hold = false;
  inFlight = 0;
  maxInFlight = 0;
  finished = 0;
  private held: Array<() => void> = [];
  async grantStep2(ip: string, ttl: number): Promise<void> {
    this.calls.push(`step2 ${ip} ${ttl}`);
  }
  async grantService(ip: string, app: AppConfig, ttl: number): Promise<void> {
    this.calls.push(`service ${ip} ${app.name} ${ttl}`);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    this.inFlight--;
    this.finished++;
  }
  release(): void {
    this.hold = false;
    for (const resolve of this.held.splice(0)) resolve();
  }
  async revoke(ip: string, app?: AppConfig): Promise<void> {
    this.calls.push(`revoke ${ip} ${app?.name ?? '*'}`);
  }
}

class FakeStore implements ClusterSyncStore {
  up = true;
  /** What a claim answers while up; 'never' leaves it pending (a store that does not answer). */
  claimAnswer: ClaimResult | 'never' = 'claimed';
  health: Partial<ClusterStoreState> = {};
  grants: Array<{ id: string; text: string; expiresAtMs: number; scope: SequencedGrantScope; seq: number }> = [];
  revokes: Array<{ id: string; text: string; ttlMs: number; scope?: RevokeScope; seq: number }> = [];
  claims: Array<{ id: string; text: string; expiresAtMs: number }> = [];
  /** As the grant script's revoked hash: (ip, app or '*') -> latest revoke's sequence. */
  revoked = new Map<string, number>();
  async storeGrant(id: string, text: string, expiresAtMs: number, scope: SequencedGrantScope): Promise<GrantPublish> {
    if (!this.up) return { outcome: 'failed' };
    const revokedSeq = Math.max(this.revoked.get(`${scope.ip} ${scope.app}`) ?? 0, this.revoked.get(`${scope.ip} *`) ?? 0);
    if (revokedSeq > scope.order) return { outcome: 'revoked' };
    const seq = scope.own ? scope.order : nextSeq();
    this.grants.push({ id, text, expiresAtMs, scope, seq });
    return { outcome: 'stored', seq };
  }
  async storeRevoke(id: string, text: string, ttlMs: number, scope: RevokeScope): Promise<number | undefined> {
    if (!this.up) return undefined;
    const seq = nextSeq();
    this.revoked.set(`${scope.ip} ${scope.app ?? '*'}`, seq);
    this.revokes.push({ id, text, ttlMs, scope, seq });
    return seq;
  }
  async claimUsedCode(id: string, text: string, expiresAtMs: number): Promise<ClaimResult> {
    if (!this.up) return 'unavailable';
    this.claims.push({ id, text, expiresAtMs });
    const answer = this.claimAnswer;
    if (answer === 'never') return new Promise<ClaimResult>(() => undefined);
    return answer;
  }
  state(): ClusterStoreState {
    return {
      connected: this.up,
      synced: this.up,
      reconnects: 0,
      published: 0,
      publishFailures: 0,
      received: 0,
      snapshots: 0,
      oversized: 0,
      ...(this.up ? {} : { lastError: 'ECONNREFUSED' }),
      ...this.health,
    };
  }
}

describe('ClusterSync', () => {
  const config = testConfig('JBSWY3DPEHPK3PXP');
  const vpn = config.apps[0]!;
  const alice = vpn.users[0]!;
  let dir: string;
  const closers: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-sync-'));
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(extra: { journal?: RevokeJournal } = {}) {
    const logs = capturedLogger('debug');
    const sessions = await SessionStore.open({ stateDir: dir, logger: logs.logger }, []);
    closers.push(() => sessions.close());
    const firewall = new RecordingFirewall();
    const granter = new Granter({ firewall, sessions, logger: logs.logger, gateway: 'gw-a' });
    const store = new FakeStore();
    const marked: UsedCode[] = [];
    // The gauges read the sync, which needs the metrics first.
    const live: { sync?: ClusterSync } = {};
    const registry = new MetricsRegistry();
    const metrics = createClusterMetrics(registry, {
      connected: () => store.up,
      synced: () => store.up,
      lagSeconds: () => undefined,
      reconnects: () => 0,
      snapshots: () => 0,
      oversized: () => 0,
      clockOffsetSeconds: () => undefined,
      backlog: () => live.sync?.backlog() ?? 0,
    });
    const sync = new ClusterSync({
      cluster: { gateway: 'gw-a', key: CLUSTER_KEY, name: NAME },
      granter,
      sessions,
      markCodeUsed: (code) => marked.push(code),
      apps: () => config.apps,
      connect: () => store,
      logger: logs.logger,
      metrics,
      ...extra,
    });
    live.sync = sync;
    closers.push(async () => sync.stop());
    granter.on('granted', (record) => sync.grantedLocally(record));
    return { logs, sessions, firewall, granter, store, sync, marked, metrics, registry };
  }

  const signed = (message: ClusterMessage, key = KEY): string => encodeClusterMessage(key, message);
  const remoteGrant = (
    over: Partial<{ expiresAt: number; issuedAt: number; gateway: string; kind: 'step2' | 'service'; ip: string; app: string; user: string }> = {},
  ) =>
    signed({
      type: 'grant',
      body: {
        kind: over.kind ?? 'service',
        ip: over.ip ?? '203.0.113.9',
        app: over.app ?? 'vpn',
        user: over.user ?? 'alice',
        expiresAt: over.expiresAt ?? Date.now() + 30_500,
        gateway: over.gateway ?? 'gw-b',
        issuedAt: over.issuedAt ?? Date.now() - 1000,
      },
    });
  /** An entry from the store, ordered after every one before it unless `seq` says otherwise. */
  const deliver = async (sync: ClusterSync, kind: ClusterEntryKind, text: string, seq = nextSeq()) => {
    sync.onEntry(kind, 'id', text, seq);
    await sync.idle();
  };
  const revokeOf = (ip: string, over: Partial<{ app: string; gateway: string; issuedAt: number }> = {}) =>
    signed({
      type: 'revoke',
      body: { ip, ...(over.app !== undefined ? { app: over.app } : {}), gateway: over.gateway ?? 'gw-b', issuedAt: over.issuedAt ?? Date.now() },
    });

  it('publishes a local grant, signed, with this gateway and its absolute expiry', async () => {
    const { store, sync, granter, sessions } = await setup();
    const before = Date.now();
    await granter.openService('10.0.0.1', vpn, alice);
    await sync.idle();
    expect(store.grants).toHaveLength(1);
    const decoded = decodeClusterMessage(KEY, store.grants[0]!.text, Date.now());
    expect(decoded.ok).toBe(true);
    if (!decoded.ok || decoded.message.type !== 'grant') throw new Error('not a grant');
    const body = decoded.message.body;
    expect(body).toMatchObject({ kind: 'service', ip: '10.0.0.1', app: 'vpn', user: 'alice', gateway: 'gw-a' });
    expect(body.expiresAt).toBe(sessions.list()[0]!.expiresAt);
    expect(body.issuedAt).toBeGreaterThanOrEqual(before);
    expect(store.grants[0]!.expiresAtMs).toBe(body.expiresAt);
    expect(sessions.list()[0]!.gateway).toBe('gw-a');
  });

  it('applies another gateway’s grant with the remaining time and records its gateway', async () => {
    const { firewall, sync, sessions, metrics } = await setup();
    await deliver(sync, 'grant', remoteGrant({ expiresAt: Date.now() + 30_500 }));
    expect(firewall.calls).toEqual(['service 203.0.113.9 vpn 31']);
    expect(sessions.list()).toMatchObject([{ ip: '203.0.113.9', app: 'vpn', user: 'alice', step: 'service', gateway: 'gw-b' }]);
    expect(await valueOf(metrics.received, { kind: 'grant' })).toBe(1);
    // The same entry again (snapshot and live overlap): nothing more.
    await deliver(sync, 'grant', remoteGrant({ expiresAt: sessions.list()[0]!.expiresAt }));
    expect(firewall.calls).toHaveLength(1);
  });

  it('keeps a longer local grant in the kernel', async () => {
    const { firewall, granter, sync, sessions } = await setup();
    await granter.openService('203.0.113.9', vpn, alice); // 60 s
    firewall.calls = [];
    await deliver(sync, 'grant', remoteGrant({ expiresAt: Date.now() + 20_000 }));
    expect(firewall.calls).toEqual([]);
    expect(sessions.list()).toHaveLength(1);
  });

  it('counts and ignores expired, unsigned, badly signed and forged entries', async () => {
    const { firewall, sync, metrics, sessions } = await setup();
    const expired = remoteGrant({ expiresAt: Date.now() - 1, issuedAt: Date.now() - 10_000 });
    const good = JSON.parse(remoteGrant()) as { sig: string; body: { expiresAt: number } };
    const unsigned = JSON.stringify({ ...good, sig: '' });
    // One hex digit of the signature changed (always changed: a fixed "00" would leave 1 in 256 signatures intact).
    const badSignature = remoteGrant({}).replace(/"sig":"([0-9a-f])/, (_, digit: string) => `"sig":"${digit === '0' ? '1' : '0'}`);
    const forged = JSON.stringify({ ...good, body: { ...good.body, expiresAt: good.body.expiresAt + 3_600_000 } });
    const otherKey = signed(JSON.parse(remoteGrant()) as ClusterMessage, OTHER_KEY);
    for (const text of [expired, unsigned, badSignature, forged, otherKey, 'not json']) await deliver(sync, 'grant', text);
    expect(firewall.calls).toEqual([]);
    expect(sessions.list()).toEqual([]);
    expect(await valueOf(metrics.rejected, { reason: 'expired' })).toBe(1);
    expect(await valueOf(metrics.rejected, { reason: 'unsigned' })).toBe(1);
    expect(await valueOf(metrics.rejected, { reason: 'bad-signature' })).toBe(3);
    expect(await valueOf(metrics.rejected, { reason: 'malformed' })).toBe(1);
  });

  it('ignores its own entries (from a snapshot)', async () => {
    const { firewall, sync, sessions } = await setup();
    await deliver(sync, 'grant', remoteGrant({ gateway: 'gw-a' }));
    expect(firewall.calls).toEqual([]);
    expect(sessions.list()).toEqual([]);
  });

  it('publishes an operator revoke and applies another gateway’s without echo', async () => {
    const { firewall, granter, store, sync, sessions } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    expect(await sync.revoke('10.0.0.1', vpn)).toEqual({ closed: 1, shared: true });
    await sync.idle();
    expect(store.revokes).toHaveLength(1);
    const revoke = decodeClusterMessage(KEY, store.revokes[0]!.text, Date.now());
    expect(revoke).toMatchObject({ ok: true, message: { type: 'revoke', body: { ip: '10.0.0.1', app: 'vpn', gateway: 'gw-a' } } });

    await deliver(sync, 'grant', remoteGrant());
    firewall.calls = [];
    const text = revokeOf('203.0.113.9');
    const seq = nextSeq();
    await deliver(sync, 'revoke', text, seq);
    expect(firewall.calls).toEqual(['revoke 203.0.113.9 *']);
    expect(sessions.list()).toEqual([]);
    expect(store.revokes).toHaveLength(1); // not published again
    await deliver(sync, 'revoke', text, seq); // seen already
    expect(firewall.calls).toHaveLength(1);
  });

  it('ignores a grant the store ordered before a revoke, and a replay whose signed time is older than the revoke by more than the skew', async () => {
    const { firewall, sync, sessions, metrics } = await setup();
    const before = nextSeq();
    await deliver(sync, 'revoke', revokeOf('203.0.113.9', { app: 'vpn' }));
    await deliver(sync, 'grant', remoteGrant(), before);
    expect(firewall.calls).toEqual([]);
    expect(sessions.list()).toEqual([]);
    // A sequence is not signed: a grant signed long before the revoke stays out whatever sequence it comes with.
    await deliver(sync, 'grant', remoteGrant({ issuedAt: Date.now() - 31_000 }));
    expect(firewall.calls).toEqual([]);
    expect([await valueOf(metrics.ignored, { reason: 'revoked' }), await valueOf(metrics.ignored, { reason: 'revoked-replay' })]).toEqual([1, 1]);
    await deliver(sync, 'grant', remoteGrant());
    expect(firewall.calls).toHaveLength(1);
  });

  it('closes every grant of the address and app the store ordered before a revoke, whatever the gateways’ clocks', async () => {
    const { firewall, sync, sessions, granter, logs } = await setup();
    const now = Date.now();
    // Made here (this gateway's clock 60 s ahead of the revoking one's): the store gives it its sequence.
    await granter.openService('203.0.113.30', vpn, alice);
    // Another gateway's service grant, then the client knocks step 1 again: a step-2 window signed after the revoke.
    await deliver(sync, 'grant', remoteGrant({ ip: '203.0.113.31' }));
    await deliver(sync, 'grant', remoteGrant({ ip: '203.0.113.31', kind: 'step2', issuedAt: now, expiresAt: now + 20_500 }));
    firewall.calls = [];
    // Both revokes were issued (by their gateways' clocks) before those grants, and reached the store after them.
    await deliver(sync, 'revoke', revokeOf('203.0.113.30', { app: 'vpn', issuedAt: now - 60_000 }));
    await deliver(sync, 'revoke', revokeOf('203.0.113.31', { app: 'vpn', issuedAt: now - 5_000 }));
    expect(firewall.calls).toEqual(['revoke 203.0.113.30 vpn', 'revoke 203.0.113.31 vpn']);
    expect(sessions.list()).toEqual([]);
    sync.stop(); // writes the summary of what was ignored
    expect(logs.text()).not.toContain('cluster entries not applied here');
  });

  it('refuses a message signed for another cluster name (another site sharing the key) as badly signed', async () => {
    const { firewall, sync, metrics } = await setup();
    await deliver(sync, 'grant', signed(JSON.parse(remoteGrant()) as ClusterMessage, OTHER_SITE));
    expect(firewall.calls).toEqual([]);
    expect(await valueOf(metrics.rejected, { reason: 'bad-signature' })).toBe(1);
  });

  it('refuses a grant or revoke the store gave no sequence (not written by a gateway), and sums what it ignores in one warning', async () => {
    const { firewall, sync, metrics, logs } = await setup();
    sync.onEntry('grant', 'x', remoteGrant());
    sync.onEntry('revoke', 'y', revokeOf('203.0.113.9'));
    await sync.idle();
    await deliver(sync, 'grant', remoteGrant({ app: 'mail' }));
    await deliver(sync, 'grant', remoteGrant({ app: 'mail', ip: '203.0.113.40' }));
    expect(firewall.calls).toEqual([]);
    expect(await valueOf(metrics.rejected, { reason: 'unsequenced' })).toBe(2);
    sync.stop();
    const warning = logs
      .text()
      .split('\n')
      .find((line) => line.includes('cluster entries not applied here'));
    expect(warning).toContain('"refused:unsequenced":{"count":2');
    expect(warning).toContain('"ignored:unknown-app":{"count":2');
  });

  it('shares used one-time codes both ways', async () => {
    const { store, sync, marked } = await setup();
    const scope = 'c'.repeat(32);
    const expiresAt = Math.floor(Date.now() / 1000) + 60;
    sync.codeClaimed({ scope, counter: 1234, expiresAt }, 'step2');
    await sync.idle();
    expect(store.claims).toHaveLength(1);
    expect(store.claims[0]!.id).toBe(`${scope}:1234`);
    expect(decodeClusterMessage(KEY, store.claims[0]!.text, Date.now())).toMatchObject({
      ok: true,
      message: { type: 'used-code', body: { scope, counter: 1234, expiresAt: expiresAt * 1000, gateway: 'gw-a' } },
    });
    await deliver(
      sync,
      'used-code',
      signed({ type: 'used-code', body: { scope, counter: 99, expiresAt: expiresAt * 1000, gateway: 'gw-b', issuedAt: Date.now() } }),
    );
    expect(marked).toEqual([{ scope, counter: 99, expiresAt }]);
  });

  it('grants locally when the store is down, counts the failures and reports degraded health', async () => {
    const { store, sync, granter, firewall, metrics } = await setup();
    store.up = false;
    await granter.openStep2Window('10.0.0.1', vpn, alice);
    expect(await sync.revoke('10.0.0.1')).toEqual({ closed: 1, shared: false });
    sync.codeClaimed({ scope: 'd'.repeat(32), counter: 1, expiresAt: Math.floor(Date.now() / 1000) + 60 }, 'step1');
    await sync.idle();
    expect(firewall.calls).toEqual(['step2 10.0.0.1 10', 'revoke 10.0.0.1 *']);
    expect(await valueOf(metrics.publishFailures, { kind: 'grant' })).toBe(1);
    expect(await valueOf(metrics.publishFailures, { kind: 'revoke' })).toBe(1);
    expect(await valueOf(metrics.publishFailures, { kind: 'used-code' })).toBe(1);
    expect(sync.problems()[0]).toContain(CLUSTER_DISCONNECTED);
    expect(sync.problems()[1]).toContain(REVOKES_NOT_SHARED);
    store.up = true;
    // The store is back: the revoke is still only here until the retry publishes it.
    expect(sync.problems()).toEqual([expect.stringContaining(REVOKES_NOT_SHARED)]);
    await sync.flushRevokes();
    expect(store.revokes).toHaveLength(1);
    expect(sync.problems()).toEqual([]);
  });

  describe('durable revokes', () => {
    const openJournal = () => RevokeJournal.open(dir, (reason) => expect.fail(`journal unreadable: ${reason}`));

    it('journals a revoke the store does not take, retries it until it does, and health says so meanwhile', async () => {
      const { store, sync, granter } = await setup({ journal: openJournal() });
      await granter.openStep2Window('10.0.0.1', vpn, alice);
      store.up = false;
      expect(await sync.revoke('10.0.0.1', vpn)).toEqual({ closed: 1, shared: false });
      expect(openJournal().pending()).toHaveLength(1);
      expect(sync.health().unsharedRevokes).toBe(1);
      expect(sync.problems()).toContainEqual(expect.stringContaining(REVOKES_NOT_SHARED));
      await sync.flushRevokes(); // still down: kept
      expect([store.revokes.length, openJournal().pending().length]).toEqual([0, 1]);
      store.up = true;
      await sync.flushRevokes();
      expect(store.revokes).toEqual([expect.objectContaining({ scope: { ip: '10.0.0.1', app: 'vpn' } })]);
      expect(decodeClusterMessage(KEY, store.revokes[0]!.text, Date.now())).toMatchObject({
        ok: true,
        message: { type: 'revoke', body: { ip: '10.0.0.1', app: 'vpn', gateway: 'gw-a' } },
      });
      expect(store.revokes[0]!.ttlMs).toBeGreaterThan(0);
      expect([openJournal().pending().length, openJournal().list().length]).toEqual([0, 1]);
      expect(sync.problems()).toEqual([]);
    });

    it('on a resync, does not publish again a grant that a revoke the snapshot brought covers', async () => {
      const { store, sync, granter, firewall } = await setup();
      await granter.openStep2Window('10.0.0.1', vpn, alice);
      await granter.openStep2Window('10.0.0.3', vpn, alice);
      await sync.idle();
      store.grants = [];
      const state = store.state();
      sync.onState({ ...state, synced: false });
      // The snapshot's revoke arrives before the sync reports itself synced, and is applied after.
      sync.onEntry('revoke', 'gw-b:10.0.0.1:*:1', revokeOf('10.0.0.1'), nextSeq());
      sync.onState({ ...state, synced: true });
      await sync.idle();
      expect(
        store.grants.map((g) => decodeClusterMessage(KEY, g.text, Date.now())).map((d) => d.ok && d.message.type === 'grant' && d.message.body.ip),
      ).toEqual(['10.0.0.3']);
      expect(firewall.calls).toContain('revoke 10.0.0.1 *');
    });

    it('counts and logs a revoke of an app this gateway does not have', async () => {
      const { sync, firewall, metrics, logs } = await setup();
      await deliver(sync, 'revoke', signed({ type: 'revoke', body: { ip: '10.0.0.4', app: 'elsewhere', gateway: 'gw-b', issuedAt: Date.now() } }));
      expect(firewall.calls).toEqual([]);
      expect(await valueOf(metrics.ignored, { reason: 'revoke-unknown-app' })).toBe(1);
      expect(logs.text()).toContain('cluster revoke for an app this gateway does not have');
    });

    it('logs once, and does not publish, a journaled revoke signed with a key it no longer has', async () => {
      const journal = openJournal();
      const text = signed({ type: 'revoke', body: { ip: '10.0.0.5', gateway: 'gw-a', issuedAt: Date.now() } }, OTHER_KEY);
      await journal.record({ id: 'gw-a:10.0.0.5:*:1', text, keepUntil: Date.now() + 60_000, shared: false });
      const { store, sync, logs } = await setup({ journal });
      await sync.flushRevokes();
      await sync.flushRevokes();
      expect(store.revokes).toEqual([]);
      expect(logs.text().split('journaled revoke cannot be shared')).toHaveLength(2);
      expect(sync.unsharedRevokes()).toBe(1);
    });

    it('retries on its own, on a timer', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        const { store, sync } = await setup({ journal: openJournal() });
        store.up = false;
        await sync.revoke('10.0.0.2');
        store.up = true;
        await vi.advanceTimersByTimeAsync(REVOKE_RETRY_MS + 10);
        await sync.idle();
        expect(store.revokes).toHaveLength(1);
        expect(sync.unsharedRevokes()).toBe(0);
      } finally {
        vi.useRealTimers();
      }
    });

    it('after a restart, still refuses a grant made before a revoke, its own or another gateway’s, and retries the unshared one', async () => {
      const first = await setup({ journal: openJournal() });
      first.store.up = false;
      await first.sync.revoke('203.0.113.9', vpn);
      const grantSeq = nextSeq(); // a grant the store ordered before the revoke, delivered after the restart
      first.sync.onEntry('revoke', 'gw-b:198.51.100.7:*:1', revokeOf('198.51.100.7'), nextSeq());
      await first.sync.idle();
      first.sync.stop();
      const second = await setup({ journal: openJournal() });
      // Its own unshared revoke covers every grant of the scope, whatever its sequence, until the store orders it.
      await deliver(second.sync, 'grant', remoteGrant());
      await deliver(second.sync, 'grant', remoteGrant({ ip: '198.51.100.7' }), grantSeq);
      expect(second.firewall.calls).toEqual([]);
      expect(await valueOf(second.metrics.ignored, { reason: 'revoked-not-shared' })).toBe(1);
      expect(await valueOf(second.metrics.ignored, { reason: 'revoked' })).toBe(1);
      expect(second.sync.unsharedRevokes()).toBe(1);
      await second.sync.flushRevokes();
      expect(second.store.revokes.map((r) => r.scope)).toEqual([{ ip: '203.0.113.9', app: 'vpn' }]);
    });

    it('shares first a revoke made while the store was away, then a grant made here after it, which the store then keeps', async () => {
      const { store, sync, granter, metrics } = await setup();
      await granter.openService('10.0.0.6', vpn, alice);
      await sync.idle();
      store.up = false;
      const state = store.state();
      sync.onState({ ...state, synced: false });
      await sync.revoke('10.0.0.6', vpn);
      await granter.openService('10.0.0.6', vpn, alice); // the client knocks again, here
      store.up = true;
      sync.onState({ ...store.state(), synced: true });
      await sync.idle();
      const [revoke] = store.revokes;
      const republished = store.grants.at(-1)!;
      expect(revoke).toBeDefined();
      expect(republished.seq).toBeGreaterThan(revoke!.seq);
      expect(await valueOf(metrics.ignored, { reason: 'revoked-in-store' })).toBe(0);
    });

    it('counts a grant the store refuses to share because it has a later revoke of it', async () => {
      const { store, sync, granter, metrics } = await setup();
      store.revoked.set('10.0.0.7 *', nextSeq()); // another gateway's revoke, not announced here yet
      await granter.openService('10.0.0.7', vpn, alice);
      await sync.idle();
      expect(store.grants).toEqual([]);
      expect(await valueOf(metrics.ignored, { reason: 'revoked-in-store' })).toBe(1);
    });

    it('starts empty, with the reason reported, when the journal is corrupt', async () => {
      await writeFile(join(dir, REVOKE_JOURNAL_FILE), '{not json');
      const reasons: string[] = [];
      const journal = RevokeJournal.open(dir, (reason) => reasons.push(reason));
      expect([journal.list(), reasons.length]).toEqual([[], 1]);
    });
  });

  describe('applying other gateways’ entries in batches', () => {
    it('applies a snapshot’s grants together: every firewall call starts before any finishes', async () => {
      const { firewall, sync, sessions } = await setup();
      firewall.hold = true;
      const ips = Array.from({ length: 500 }, (_, i) => `198.51.${100 + Math.floor(i / 250)}.${i % 250}`);
      for (const ip of ips) sync.onEntry('grant', ip, remoteGrant({ ip }), nextSeq());
      // A few turns for the drain to reach the firewall; a grant awaiting the previous one would stop at one.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      expect([firewall.inFlight, firewall.finished]).toEqual([500, 0]);
      firewall.release();
      await sync.idle();
      expect(firewall.maxInFlight).toBe(500);
      expect(firewall.calls).toHaveLength(500);
      const records = sessions.list();
      expect(new Set(records.map((r) => r.ip))).toEqual(new Set(ips));
      expect(records.every((r) => r.gateway === 'gw-b' && r.app === 'vpn' && r.user === 'alice' && r.step === 'service')).toBe(true);
    });

    it('applies duplicates of one grant once, with the latest expiry', async () => {
      const { firewall, sync, sessions } = await setup();
      const now = Date.now();
      const latest = now + 50_500;
      for (const expiresAt of [now + 20_500, latest, now + 30_500]) sync.onEntry('grant', 'id', remoteGrant({ expiresAt }), nextSeq());
      await sync.idle();
      expect(firewall.calls).toEqual(['service 203.0.113.9 vpn 51']);
      expect(sessions.list()).toMatchObject([{ ip: '203.0.113.9', expiresAt: latest, gateway: 'gw-b' }]);
    });

    it('never opens a grant a revoke later in the same delivery covers; a grant made after the revoke stands', async () => {
      const { firewall, sync, sessions, metrics } = await setup();
      // A snapshot lists grants first and revokes last: the revoke is known before any grant is applied.
      sync.onEntry('grant', 'x', remoteGrant({ ip: '203.0.113.9' }), nextSeq());
      sync.onEntry('grant', 'y', remoteGrant({ ip: '203.0.113.10' }), nextSeq());
      sync.onEntry('revoke', 'r', revokeOf('203.0.113.9', { app: 'vpn' }), nextSeq());
      await sync.idle();
      expect(firewall.calls).toEqual(['service 203.0.113.10 vpn 31']);
      expect(sessions.list()).toMatchObject([{ ip: '203.0.113.10', app: 'vpn', gateway: 'gw-b' }]);
      expect(await valueOf(metrics.ignored, { reason: 'revoked' })).toBe(1);
      // The same address granted again after the revoke: it opens.
      await deliver(sync, 'grant', remoteGrant({ ip: '203.0.113.9' }));
      expect(firewall.calls).toEqual(['service 203.0.113.10 vpn 31', 'service 203.0.113.9 vpn 31']);
    });

    it('applies a revoke after the grants before it in the queue (a barrier)', async () => {
      const { firewall, sync, granter } = await setup();
      await granter.openService('203.0.113.11', vpn, alice);
      await sync.idle(); // the store has the local grant: the revoke comes after it
      sync.onEntry('grant', 'y', remoteGrant({ ip: '203.0.113.12' }), nextSeq());
      sync.onEntry('revoke', 'r', revokeOf('203.0.113.11'), nextSeq());
      await sync.idle();
      expect(firewall.calls).toEqual(['service 203.0.113.11 vpn 60', 'service 203.0.113.12 vpn 31', 'revoke 203.0.113.11 *']);
    });

    it('keeps a grant restored from the state file that the store still has after a replayed revoke, closes one it lost', async () => {
      const { firewall, sync, sessions } = await setup();
      const now = Date.now();
      // As restored at start: no sequence known here.
      sessions.recordUntil('203.0.113.13', 'vpn', 'alice', 'service', now + 50_000);
      sessions.recordUntil('203.0.113.14', 'vpn', 'alice', 'service', now + 5_000);
      const revokes = [nextSeq(), nextSeq()];
      // The snapshot: the first one's own grant key, stored (republished) after the revokes; the other's was deleted by its revoke.
      sync.onEntry('grant', 'own', remoteGrant({ ip: '203.0.113.13', gateway: 'gw-a', expiresAt: now + 50_000 }), nextSeq());
      ['203.0.113.13', '203.0.113.14'].forEach((ip, i) => sync.onEntry('revoke', ip, revokeOf(ip, { issuedAt: now - 30_000 }), revokes[i]));
      await sync.idle();
      expect(firewall.calls).toEqual(['revoke 203.0.113.14 *']);
      expect(sessions.list().map((r) => r.ip)).toEqual(['203.0.113.13']);
    });

    it('counts grants it does not apply: an app or user this gateway lacks, or issued before a known revoke', async () => {
      const { firewall, sync, sessions, metrics } = await setup();
      const before = [nextSeq(), nextSeq()];
      await deliver(sync, 'revoke', revokeOf('203.0.113.9'));
      sync.onEntry('grant', 'a', remoteGrant({ app: 'mail' }), nextSeq());
      sync.onEntry('grant', 'b', remoteGrant({ ip: '203.0.113.9' }), before[0]);
      sync.onEntry('grant', 'c', remoteGrant({ ip: '203.0.113.9', app: 'ssh' }), before[1]);
      sync.onEntry('grant', 'd', remoteGrant({ ip: '203.0.113.20', user: 'mallory' }), nextSeq());
      await sync.idle();
      expect(firewall.calls).toEqual([]);
      expect(sessions.list()).toEqual([]);
      expect(await valueOf(metrics.ignored, { reason: 'unknown-app' })).toBe(1);
      expect(await valueOf(metrics.ignored, { reason: 'unknown-user' })).toBe(1);
      expect(await valueOf(metrics.ignored, { reason: 'revoked' })).toBe(2);
      expect(await valueOf(metrics.received, { kind: 'grant' })).toBe(4);
    });
  });

  describe('step 2 waiting for the store’s word on its one-time code', () => {
    const code = (counter: number): UsedCode => ({ scope: 'e'.repeat(32), counter, expiresAt: Math.floor(Date.now() / 1000) + 60 });

    it('refuses a code another gateway claimed first, and counts the conflict for its step', async () => {
      const { store, sync, metrics } = await setup();
      store.claimAnswer = 'already-used';
      sync.codeClaimed(code(1), 'step2');
      expect(await sync.confirmCode(code(1))).toBe(false);
      await sync.idle();
      expect(await valueOf(metrics.codeConflicts, { step: 'step2' })).toBe(1);
      expect(await valueOf(metrics.codeConflicts, { step: 'step1' })).toBe(0);
    });

    it('confirms a code this gateway claimed first, and counts no conflict', async () => {
      const { store, sync, metrics } = await setup();
      store.claimAnswer = 'claimed';
      sync.codeClaimed(code(2), 'step2');
      expect(await sync.confirmCode(code(2))).toBe(true);
      await sync.idle();
      expect(await valueOf(metrics.codeConflicts, { step: 'step2' })).toBe(0);
    });

    it('still knows the store’s answer when step 2 asks after it came', async () => {
      const { store, sync } = await setup();
      store.claimAnswer = 'already-used';
      sync.codeClaimed(code(6), 'step2');
      await sync.idle();
      expect(await sync.confirmCode(code(6))).toBe(false);
    });

    it('decides alone when the store cannot answer, or nothing was claimed', async () => {
      const { store, sync } = await setup();
      expect(await sync.confirmCode(code(3))).toBe(true); // never claimed here
      store.up = false;
      sync.codeClaimed(code(4), 'step2');
      expect(await sync.confirmCode(code(4))).toBe(true); // store down: 'unavailable'
    });

    it('waits at most CONFIRM_WAIT_MS for a store that does not answer, then confirms', async () => {
      const { store, sync } = await setup();
      store.claimAnswer = 'never';
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        sync.codeClaimed(code(5), 'step2');
        let answer: boolean | undefined;
        void sync.confirmCode(code(5)).then((ok) => (answer = ok));
        await vi.advanceTimersByTimeAsync(CONFIRM_WAIT_MS - 1);
        expect(answer).toBeUndefined();
        await vi.advanceTimersByTimeAsync(1);
        expect(answer).toBe(true);
      } finally {
        vi.useRealTimers();
      }
      expect(CONFIRM_WAIT_MS).toBe(250);
    });
  });

  it('reports a clock that differs from the store’s by more than the accepted skew', async () => {
    const { store, sync } = await setup();
    store.health = { clockOffsetMs: 25_000 };
    expect(sync.problems()).toEqual([]);
    store.health = { clockOffsetMs: 60_400 };
    expect(sync.problems()).toEqual([expect.stringContaining(`${CLOCK_SKEW} by 60 s (accepted: 30 s)`)]);
    expect(sync.health().clockOffsetMs).toBe(60_400);
  });

  it('reports its health and backlog: store link, lag, reconnects and entries not applied yet', async () => {
    const { store, sync, firewall, registry } = await setup();
    store.health = { synced: false, lagMs: 42, reconnects: 3 };
    expect(sync.health()).toEqual({ gateway: 'gw-a', connected: true, synced: false, lagMs: 42, backlog: 0, reconnects: 3, unsharedRevokes: 0 });
    firewall.hold = true;
    for (let i = 0; i < 3; i++) sync.onEntry('grant', 'id', remoteGrant({ ip: `198.51.100.${i}` }), nextSeq());
    // Received, not applied: the figure an operator reads while a snapshot is being applied.
    expect(sync.backlog()).toBe(3);
    expect(sync.health().backlog).toBe(3);
    expect(await registry.metrics()).toContain('\nknockport_cluster_backlog 3\n');
    firewall.release();
    await sync.idle();
    expect(sync.backlog()).toBe(0);
    store.up = false;
    store.health = {};
    expect(sync.health()).toEqual({ gateway: 'gw-a', connected: false, synced: false, backlog: 0, reconnects: 0, unsharedRevokes: 0 });
  });
});
