/**
 * Two real daemons sharing their grants through a real redis-server (`global.cluster`), seen
 * from a client the way a user would check it: is the service port open or closed? The
 * topology is cluster-rig.ts's; the client's route to the VIP goes via A by default, and
 * moving it to B is the failover case. Every case uses a client address of its own, so no case
 * sees another's grant.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { tcpProbe } from '../../helpers/scenario.js';
import { totpAt } from '../../../src/auth/totp.js';
import { base32Encode } from '../../../src/shared/otp-format.js';
import { CLUSTER_DISCONNECTED } from '../../../src/cluster/sync.js';
import type { HealthReport } from '../../../src/control/protocol.js';
import {
  ClusterRig,
  NET,
  PROBE_MS,
  PROPAGATE_MS,
  RECONNECT_MS,
  SVC_PORT,
  clientAddr,
  clientAddr6,
  ctl,
  health,
  sessions,
  within,
  type AppKeys,
  type Gateway,
} from './cluster-rig.js';

const FILE = 'cluster/gateways';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'redis-server', 'redis-cli', 'curl', 'openssl']));

/** A short-lived grant (`duration` SHORT_DURATION s), for expiry. */
const BRIEF: AppKeys = { app: 'brief', http: 'short-http-key-0123456789', https: 'short-https-key-0123456789' };
const SHORT_PORT = 2223;
const SHORT_DURATION = 3;
const OTP_PORT = 2224;
const OTP_HTTP_KEY = 'otp-http-key-0123456789';
const OTP_HTTPS_KEY = 'otp-https-key-0123456789';
/** carol's TOTP secret (step 2 `token`), fresh per run. */
const OTP_SECRET = base32Encode(randomBytes(20));

const rig = new ClusterRig({
  tag: 'c',
  clientAddresses: { count: 8, ipv6: true },
  moreApps: {
    ports: [SHORT_PORT, OTP_PORT],
    yaml: `${BRIEF.app}:
  port: ${SHORT_PORT}
  access_key_http: [${BRIEF.http}]
  access_key_https: [${BRIEF.https}]
  destination: local
  protocol: tcp
  duration: ${SHORT_DURATION}
  step2_https_duration: 20
otp:
  port: ${OTP_PORT}
  protocol: tcp
  destination: local
  duration: 60
  step2_https_duration: 20
  users:
    - name: carol
      access_key_http: ${OTP_HTTP_KEY}
      access_key_https: ${OTP_HTTPS_KEY}
      totp_secret: ${OTP_SECRET}
`,
  },
});
const { A, B } = rig;

function metrics(gw: Gateway): string {
  return gw.ns.tryExec('curl', ['-sS', '-m', '2', 'http://127.0.0.1:9464/metrics']).out;
}

/** Sum of every series of a counter (all label sets). */
function counterSum(text: string, name: string): number {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm');
  return [...text.matchAll(re)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe.skipIf(skip)('cluster: two gateways, one store', () => {
  rig.useInSuite();

  it('the service is closed on both gateways before any knock', async () => {
    expect(await Promise.all([rig.openOn(A, NET.client4), rig.openOn(B, NET.client4)])).toEqual([false, false]);
  });

  it('1. a grant made on A lets the client in through B (route moved) without a new knock', async () => {
    for (const [from, vip] of [
      [clientAddr(0), NET.vip4],
      [clientAddr6(0), NET.vip6],
    ] as const) {
      rig.routeVia(A);
      expect(await rig.banner(from, vip)).toBeUndefined();
      expect(await rig.knock(from)).toBe('200');
      expect(await rig.banner(from, vip)).toBe('gw-a');
      rig.routeVia(B);
      // The failover: the same client, now routed through B, gets in without knocking again.
      expect(await within(async () => (await rig.banner(from, vip)) === 'gw-b', PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    }
    const listed = sessions(B).filter((s) => s.ip === clientAddr(0) && s.app === 'svc' && s.step === 'service');
    expect(listed, JSON.stringify(sessions(B))).toHaveLength(1);
    expect(listed[0]!.gateway).toBe('gw-a');
    // The table an operator reads says which gateway made the grant.
    const table = ctl(B, ['sessions']).out.split('\n');
    expect(table[0]).toMatch(/GATEWAY$/);
    expect(table.find((line) => line.startsWith(`${clientAddr(0)} `) && / service /.test(line))).toMatch(/ gw-a$/);
    rig.routeVia(A);
  }, 30_000);

  it('2. step 1 on A, step 2 on B: B accepts (the step-2 window is shared) and the service opens on both', async () => {
    const from = clientAddr(1);
    rig.routeVia(A);
    await rig.step1(from);
    rig.routeVia(B);
    // The step-2 window opened on A reaches B: B's HTTPS port answers this client...
    const httpsOpen = async () => (await tcpProbe(rig.client, from, NET.vip4, 443, PROBE_MS)).kind === 'open';
    expect(await within(httpsOpen, PROPAGATE_MS), "B's HTTPS port opens for the client").toBeGreaterThanOrEqual(0);
    // ...and B accepts step 2.
    expect(await rig.step2(from)).toBe('200');
    expect(await rig.openOn(B, from)).toBe(true);
    expect(await within(() => rig.openOn(A, from), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    rig.routeVia(A);
  }, 30_000);

  it('3. a revoke on B closes A too', async () => {
    const from = clientAddr(2);
    rig.routeVia(A);
    expect(await rig.knock(from)).toBe('200');
    expect(await rig.openOn(A, from)).toBe(true);
    expect(await within(() => rig.openOn(B, from), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    const revoked = ctl(B, ['revoke', from]);
    expect(revoked.ok, revoked.err).toBe(true);
    expect(await rig.openOn(B, from)).toBe(false);
    expect(await within(async () => !(await rig.openOn(A, from)), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it('4. store down: each gateway works alone, A reports the cluster degraded; store back: the grant made meanwhile reaches B', async () => {
    const from = clientAddr(3);
    const fromB = clientAddr(4);
    await rig.killRedis();
    try {
      rig.routeVia(A);
      expect(await rig.knock(from)).toBe('200');
      expect(await rig.openOn(A, from)).toBe(true);
      // B alone still works too.
      rig.routeVia(B);
      expect(await rig.knock(fromB)).toBe('200');
      expect(await rig.openOn(B, fromB)).toBe(true);
      rig.routeVia(A);

      // Degraded, as `knock-port health --json` reports it: the store link down, the problem named.
      let report: HealthReport | undefined;
      const degraded = await within(async () => {
        report = health(A);
        return report.cluster?.connected === false;
      }, 10_000);
      expect(degraded, `health on A: ${JSON.stringify(report)}`).toBeGreaterThanOrEqual(0);
      expect(report!.cluster).toMatchObject({ gateway: 'gw-a', connected: false, synced: false });
      expect(report!.healthy).toBe(false);
      expect(report!.problems.filter((problem) => problem.startsWith(CLUSTER_DISCONNECTED))).toHaveLength(1);
      // The grant made during the outage is not on B yet (nothing could carry it).
      expect(await rig.openOn(B, from)).toBe(false);
    } finally {
      await rig.startRedis();
    }
    expect(await within(() => rig.openOn(B, from), RECONNECT_MS), 'the grant made on A during the outage reaches B').toBeGreaterThanOrEqual(0);
    expect(await within(() => rig.openOn(A, fromB), RECONNECT_MS), 'and the one made on B reaches A').toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('5. a forged grant written straight into the store opens nothing and is counted', async () => {
    const from = clientAddr(5);
    // Make sure both are connected again (case 4 may have left a reconnect pending).
    expect(await within(async () => rig.redisCli('PING').trim() === 'PONG', 5000)).toBeGreaterThanOrEqual(0);
    const before = { a: counterSum(metrics(A), 'knockport_cluster_rejected_total'), b: counterSum(metrics(B), 'knockport_cluster_rejected_total') };
    const now = Date.now();
    const body = { kind: 'service', ip: from, app: 'svc', user: 'default', expiresAt: now + 60_000, gateway: 'gw-a', issuedAt: now };
    const forgeries = [
      { id: `forged-unsigned-${now}`, text: JSON.stringify({ v: 1, type: 'grant', body }) },
      { id: `forged-badsig-${now}`, text: JSON.stringify({ v: 1, type: 'grant', body, sig: randomBytes(32).toString('hex') }) },
    ];
    for (const { id, text } of forgeries) {
      rig.redisCli('SET', `${rig.prefix}grant:${id}`, text, 'PX', '60000');
      const announcement = JSON.stringify({ v: 1, g: 'gw-x', k: 'grant', i: id, t: text, p: Date.now() });
      rig.redisCli('PUBLISH', `${rig.prefix}announce`, announcement);
    }
    expect(await Promise.all([rig.staysClosed(A, from, SVC_PORT, 1500), rig.staysClosed(B, from, SVC_PORT, 500)])).toEqual([true, true]);
    const after = { a: counterSum(metrics(A), 'knockport_cluster_rejected_total'), b: counterSum(metrics(B), 'knockport_cluster_rejected_total') };
    const exposed = /knockport_cluster_rejected_total/.test(metrics(A) + metrics(B));
    expect(exposed, 'knockport_cluster_rejected_total is exposed').toBe(true);
    expect(after.a - before.a, 'rejections counted on A').toBeGreaterThanOrEqual(2);
    expect(after.b - before.b, 'rejections counted on B').toBeGreaterThanOrEqual(2);
    // Back in the cluster, health says so in a line of its own.
    const healthy = await within(async () => /^cluster: gateway gw-a, store connected, in sync/m.test(ctl(A, ['health']).out), RECONNECT_MS);
    expect(healthy, ctl(A, ['health']).out).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it('6. an expired grant never comes back after a restart', async () => {
    const from = clientAddr(6);
    rig.routeVia(A);
    expect(await rig.knock(from, BRIEF)).toBe('200');
    expect(await rig.openOn(A, from, SHORT_PORT)).toBe(true);
    expect(await within(() => rig.openOn(B, from, SHORT_PORT), PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    // Closed on both once `duration` is over.
    expect(
      await within(async () => !(await rig.openOn(A, from, SHORT_PORT)) && !(await rig.openOn(B, from, SHORT_PORT)), (SHORT_DURATION + 3) * 1000),
    ).toBeGreaterThanOrEqual(0);

    await B.daemon!.stop('SIGTERM');
    await rig.startGateway(B);
    // After its start (state file, snapshot of the store), B keeps it closed.
    expect(await rig.staysClosed(B, from, SHORT_PORT, 3000)).toBe(true);
    // Only the step-2 window (20 s) may still be listed; the service grant is gone.
    const service = sessions(B).filter((s) => s.ip === from && s.step === 'service');
    expect(service, JSON.stringify(service)).toHaveLength(0);
    expect(await rig.openOn(A, from, SHORT_PORT)).toBe(false);
  }, 60_000);

  it('7. a one-time code used in step 2 on A is refused on B: a sniffed or replayed token opens nothing', async () => {
    const user = clientAddr(7);
    const replayer = clientAddr6(7);
    rig.routeVia(A);
    await rig.step1(user, OTP_HTTP_KEY, 'otp');
    const token = totpAt(OTP_SECRET, Date.now() / 1000);
    expect(await rig.step2(user, OTP_HTTPS_KEY, 'otp', NET.vip4, token)).toBe('200');
    expect(await rig.openOn(A, user, OTP_PORT)).toBe(true);
    // Another client holding both keys and the same token, through B: step 1 opens B's HTTPS
    // port, step 2 is refused, and the service stays closed to it on both gateways.
    rig.routeVia(B);
    await new Promise((r) => setTimeout(r, 300)); // the code's claim reaches B (p99 of a grant is ms)
    await rig.step1(replayer, OTP_HTTP_KEY, 'otp');
    expect(await within(async () => (await tcpProbe(rig.client, replayer, NET.vip6, 443, PROBE_MS)).kind === 'open', PROPAGATE_MS)).toBeGreaterThanOrEqual(0);
    expect(await rig.step2(replayer, OTP_HTTPS_KEY, 'otp', NET.vip6, token)).toBe('403');
    expect(await Promise.all([rig.staysClosed(B, replayer, OTP_PORT, 1000), rig.openOn(A, replayer, OTP_PORT)])).toEqual([true, false]);
    rig.routeVia(A);
  }, 30_000);
});
