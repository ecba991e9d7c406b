/**
 * Revokes across two real daemons and a real redis-server (`global.cluster`), when the store is
 * down, when a gateway restarts, is cut off silently or runs a clock 60 s ahead, and when
 * something writes huge values into the store, seen from a client the way a user would check it:
 * is the service port closed on both gateways? The topology is cluster-rig.ts's (as in
 * gateways.test.ts):
 *
 *   client ── switch: br-ext ── gateway A (gw-a), gateway B (gw-b) ── switch: br-lan ── store
 *
 * Every case uses a client address of its own, so no case sees another's grant.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { CLI } from '../../helpers/sandbox.js';
import { CLOCK_SKEW, CLUSTER_DISCONNECTED, REVOKES_NOT_SHARED } from '../../../src/cluster/sync.js';
import { ClusterRig, NET, PROPAGATE_MS, RECONNECT_MS, SVC_PORT, clientAddr, ctl, health, sessions, within, type Gateway } from './cluster-rig.js';

const FILE = 'cluster/revokes';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'redis-server', 'redis-cli', 'curl', 'openssl', 'faketime']));

const rig = new ClusterRig({ tag: 'r', clientAddresses: { count: 7, ipv6: false } });
const { A, B } = rig;

/** A service grant made on A (through the route via A), open on both gateways. */
async function grantedOnBoth(from: string): Promise<void> {
  rig.routeVia(A);
  expect(await rig.knock(from)).toBe('200');
  expect(await rig.openOn(A, from)).toBe(true);
  expect(await within(() => rig.openOn(B, from), PROPAGATE_MS), 'the grant reaches B').toBeGreaterThanOrEqual(0);
}

/** Stops the store and waits (bounded) until B's health says it is unreachable. */
async function storeDown(): Promise<void> {
  await rig.killRedis();
  expect(await within(async () => health(B).cluster?.connected === false, 10_000), 'B sees the store down').toBeGreaterThanOrEqual(0);
}

/** The revoke on B while the store is down: closed on B, its output warns, health says "not yet shared". */
function revokeOnBUnshared(from: string): void {
  // stdout and stderr both (the warning goes to stderr on success).
  const result = spawnSync('ip', ['netns', 'exec', B.ns.name, process.execPath, CLI, 'revoke', from, '--socket', join(B.dir, 'control.sock')], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  const revoked = { out: result.stdout, err: result.stderr };
  expect(result.status, revoked.err).toBe(0);
  // The service grant and the step-2 window, both shared from A.
  expect(revoked.out).toMatch(new RegExp(`^revoked ${from.replace(/\./g, '\\.')}: [12] grant\\(s\\) closed\n$`));
  expect(revoked.err).toMatch(/^warning: closed here, not yet shared/);
}

function expectUnsharedOnB(count: number): void {
  const report = health(B);
  expect(report.cluster?.unsharedRevokes, JSON.stringify(report)).toBe(count);
  expect(report.problems.some((p) => p.startsWith(REVOKES_NOT_SHARED))).toBe(count > 0);
  expect(report.healthy).toBe(false);
}

/** A silent partition: the gateway's packets to and from the store dropped (its own namespace only), no reset. */
function partition(gw: Gateway): void {
  gw.ns.exec(
    'nft',
    ['-f', '-'],
    `table inet kpt_partition {
  chain out { type filter hook output priority 0; ip daddr ${NET.store} drop; }
  chain in { type filter hook input priority 0; ip saddr ${NET.store} drop; }
}
`,
  );
}

function heal(gw: Gateway): void {
  gw.ns.tryExec('nft', ['delete', 'table', 'inet', 'kpt_partition']);
}

/** The value of one metric series on `gw` (its metrics endpoint, inside its namespace); 0 when absent. */
function metric(gw: Gateway, series: string): number {
  const text = gw.ns.exec('curl', ['-sS', '-m', '3', 'http://127.0.0.1:9464/metrics']);
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Ends the gateway's connections to the store: it reconnects, takes a snapshot and publishes its grants again. */
function dropStoreConnections(gw: Gateway): void {
  for (const role of ['cmd', 'sub']) rig.redisCli('CLIENT', 'KILL', 'ID', ...clientIds(`knock-port:${gw.name}:${role}`));
}

function clientIds(name: string): string[] {
  return rig
    .redisCli('CLIENT', 'LIST')
    .split('\n')
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /^id=(\d+) /.exec(line)?.[1] ?? '')
    .filter((id) => id !== '');
}

/** Debian's libfaketime (package faketime), for the architecture's library directory. */
function libfaketime(): string {
  const found = readdirSync('/usr/lib')
    .map((dir) => join('/usr/lib', dir, 'faketime', 'libfaketime.so.1'))
    .find((path) => existsSync(path));
  if (!found) throw new Error('libfaketime.so.1 not found under /usr/lib/*/faketime (apt-get install faketime)');
  return found;
}

/** The daemon's resident memory, in MiB. */
function rssMiB(gw: Gateway): number {
  const status = readFileSync(`/proc/${gw.daemon!.proc.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** No grant key for `from` is left in the store: the revoke deleted them. */
function grantKeysInStore(from: string): string[] {
  return rig
    .redisCli('--scan', '--pattern', `${rig.prefix}grant:*`)
    .split('\n')
    .filter((key) => key.includes(`:${from}:`));
}

describe.skipIf(skip)('cluster: revokes are never lost', () => {
  rig.useInSuite();

  it('1. a revoke on B while the store is down is kept, shared once the store is back, and A closes the grant', async () => {
    const from = clientAddr(0);
    await grantedOnBoth(from);
    await storeDown();
    try {
      revokeOnBUnshared(from);
      expect(await rig.openOn(B, from)).toBe(false);
      expectUnsharedOnB(1);
      // Nothing can carry it to A yet: A still has the grant (the limit this case documents).
      expect(await rig.openOn(A, from)).toBe(true);
    } finally {
      await rig.startRedis();
    }
    expect(await within(async () => !(await rig.openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 2000), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);

  it('2. ... then B restarted before the store is back: B keeps it closed and still shares it, and A closes it', async () => {
    const from = clientAddr(1);
    await grantedOnBoth(from);
    await storeDown();
    try {
      revokeOnBUnshared(from);
      await B.daemon!.stop('SIGTERM');
      await rig.startGateway(B);
      // The journal in B's state directory brought the revoke back.
      expect(await within(async () => health(B).cluster?.unsharedRevokes === 1, 5000), JSON.stringify(health(B))).toBeGreaterThanOrEqual(0);
      expectUnsharedOnB(1);
      expect(await rig.openOn(B, from)).toBe(false);
    } finally {
      await rig.startRedis();
    }
    expect(await within(async () => !(await rig.openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    // A's republished grants (every resync) do not reopen it on B.
    expect(await Promise.all([rig.staysClosed(B, from, SVC_PORT, 3000), rig.staysClosed(A, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(sessions(B).filter((s) => s.ip === from && s.step === 'service')).toEqual([]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 120_000);

  it('3. the revoke keys deleted in the store, then a gateway restarted: the revoked grant stays closed', async () => {
    const from = clientAddr(2);
    await grantedOnBoth(from);
    const revoked = ctl(B, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await within(async () => !(await rig.openOn(A, from)), PROPAGATE_MS), 'A closes the grant').toBeGreaterThanOrEqual(0);
    const revokeKeys = rig
      .redisCli('--scan', '--pattern', `${rig.prefix}revoke:*`)
      .split('\n')
      .filter((key) => key !== '');
    expect(revokeKeys.length).toBeGreaterThanOrEqual(1);
    rig.redisCli('DEL', ...revokeKeys);
    for (const gw of [A, B]) {
      await gw.daemon!.stop('SIGTERM');
      await rig.startGateway(gw);
    }
    expect(await within(async () => health(A).cluster?.synced === true && health(B).cluster?.synced === true, RECONNECT_MS)).toBeGreaterThanOrEqual(0);
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 3000), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 120_000);

  it('4. (the table’s row 3) a revoke delayed by a partition while the client knocks again: it still closes the earlier grant', async () => {
    const from = clientAddr(3);
    await grantedOnBoth(from);
    partition(B);
    try {
      expect(await within(async () => health(B).cluster?.connected === false, 5000), 'B sees the partition').toBeGreaterThanOrEqual(0);
      revokeOnBUnshared(from);
      // Meanwhile the client knocks step 1 again through A: a step-2 window signed after the revoke, stored before it.
      rig.routeVia(A);
      await rig.step1(from);
      expect(await rig.openOn(A, from)).toBe(true);
    } finally {
      heal(B);
    }
    expect(await within(async () => !(await rig.openOn(A, from)), RECONNECT_MS), 'A closes the grant once the store has the revoke').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(B).cluster?.unsharedRevokes === 0, RECONNECT_MS), 'B says the revoke is shared').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 2000), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    expect(sessions(A).filter((s) => s.ip === from)).toEqual([]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);

  it('5. (row 7) a silent partition from the store is a health problem within a few seconds; the revoke missed meanwhile closes on return', async () => {
    const from = clientAddr(4);
    await grantedOnBoth(from);
    partition(A);
    try {
      const seen = await within(async () => health(A).cluster?.connected === false, 5000);
      expect(seen, 'A reports the silent partition within 5 s').toBeGreaterThanOrEqual(0);
      expect(health(A).problems.some((p) => p.startsWith(CLUSTER_DISCONNECTED))).toBe(true);
      const revoked = ctl(B, ['revoke', from]);
      expect([revoked.ok, revoked.err]).toEqual([true, '']);
      expect(await rig.openOn(B, from)).toBe(false);
      // Nothing reaches A while it is cut off.
      expect(await rig.openOn(A, from)).toBe(true);
    } finally {
      heal(A);
    }
    expect(await within(async () => !(await rig.openOn(A, from)), RECONNECT_MS), 'A closes the grant from the snapshot').toBeGreaterThanOrEqual(0);
    expect(await within(async () => health(A).healthy, RECONNECT_MS), JSON.stringify(health(A).problems)).toBeGreaterThanOrEqual(0);
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 1000), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
  }, 90_000);

  it('6. (row 6) three huge values under the prefix: never fetched (memory stays flat), counted, and sharing goes on', async () => {
    const from = clientAddr(5);
    await grantedOnBoth(from);
    const HUGE_MIB = 32;
    const keys = ['grant', 'revoke', 'used-code'].map((kind) => `${rig.prefix}${kind}:huge`);
    const before = rssMiB(A);
    const oversized = metric(A, 'knockport_cluster_oversized_total');
    try {
      for (const key of keys) rig.redisCli('SETRANGE', key, String(HUGE_MIB * 1024 * 1024 - 1), 'x');
      dropStoreConnections(A);
      expect(
        await within(async () => metric(A, 'knockport_cluster_oversized_total') >= oversized + 3, RECONNECT_MS),
        'A skips the three',
      ).toBeGreaterThanOrEqual(0);
      expect(await within(async () => health(A).cluster?.synced === true, RECONNECT_MS), 'A in sync again').toBeGreaterThanOrEqual(0);
      // Reading one of them alone would take HUGE_MIB.
      expect(rssMiB(A) - before).toBeLessThan(HUGE_MIB / 2);
      const revoked = ctl(B, ['revoke', from]);
      expect(revoked.ok, revoked.err).toBe(true);
      expect(await within(async () => !(await rig.openOn(A, from)), PROPAGATE_MS), 'A closes the grant').toBeGreaterThanOrEqual(0);
    } finally {
      rig.redisCli('DEL', ...keys);
    }
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 500), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
  }, 90_000);

  it('7. (row 4) B’s clock 60 s ahead: health says so, A refuses its grants as from the future, A’s revoke closes B’s grant and B’s republish reopens nothing', async () => {
    const from = clientAddr(6);
    await B.daemon!.stop('SIGTERM');
    // libfaketime preloaded into B's process itself (the faketime wrapper would stand between the signal and the daemon).
    await rig.startGateway(B, ['env', 'FAKETIME=+60s', 'FAKETIME_DONT_FAKE_MONOTONIC=1', `LD_PRELOAD=${libfaketime()}`]);
    // The last case: B stays under faketime until afterAll stops it.
    expect(await within(async () => health(B).problems.some((p) => p.startsWith(CLOCK_SKEW)), 5000), JSON.stringify(health(B))).toBeGreaterThanOrEqual(0);
    const refused = metric(A, 'knockport_cluster_rejected_total{reason="from-the-future"}');
    rig.routeVia(B);
    expect(await rig.knock(from)).toBe('200');
    expect(await rig.openOn(B, from)).toBe(true);
    expect(await within(async () => metric(A, 'knockport_cluster_rejected_total{reason="from-the-future"}') > refused, PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    expect(await rig.openOn(A, from)).toBe(false);
    // A's revoke is signed 60 s "before" B's grant by the clocks; the store ordered it after.
    const revoked = ctl(A, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await within(async () => !(await rig.openOn(B, from)), PROPAGATE_MS), 'B closes its grant').toBeGreaterThanOrEqual(0);
    // B resyncs: publishes its live grants again; none of them is the revoked one.
    const snapshots = metric(B, 'knockport_cluster_snapshots_total');
    dropStoreConnections(B);
    expect(await within(async () => metric(B, 'knockport_cluster_snapshots_total') > snapshots, RECONNECT_MS), 'B resynced').toBeGreaterThanOrEqual(0);
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 2000), rig.staysClosed(B, from, SVC_PORT, 2000)])).toEqual([true, true]);
    expect(grantKeysInStore(from)).toEqual([]);
  }, 90_000);
});
