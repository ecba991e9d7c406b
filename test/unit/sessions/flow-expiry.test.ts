/** end_flows_on_expiry: an expired service grant ends the address's flows to the app, a renewed one does not. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import { FlowCloseError, type FlowTarget } from '../../../src/firewall/conntrack.js';
import { FLOWS_NOT_ENDED_AT_EXPIRY, FlowExpiry, WHOLE_SECOND_GRACE_MS } from '../../../src/sessions/flow-expiry.js';
import { Granter, type GrantingFirewall } from '../../../src/sessions/grants.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { testConfig } from '../step2/fixtures.js';
import { capturedLogger } from './log-capture.js';

const config = testConfig('JBSWY3DPEHPK3PXP');
/** 60 s grants; vpn (UDP) ends its flows at expiry, ssh does not. */
const vpn: AppConfig = { ...config.apps[0]!, protocol: 'udp', endFlowsOnExpiry: true };
const ssh: AppConfig = config.apps[1]!;
const alice = vpn.users[0]!;
const T0 = Date.UTC(2030, 0, 1);

describe('end_flows_on_expiry', () => {
  let dir: string;
  let sessions: SessionStore;
  let granter: Granter;

  beforeEach(async () => {
    vi.useFakeTimers({ now: T0 });
    dir = await mkdtemp(join(tmpdir(), 'knock-port-flow-expiry-'));
  });
  afterEach(async () => {
    granter?.close();
    await sessions?.close();
    vi.useRealTimers();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(options: { apps?: () => readonly AppConfig[]; closeFails?: boolean; beforeFlows?: (s: SessionStore) => void } = {}) {
    const logs = capturedLogger('info');
    sessions = await SessionStore.open({ stateDir: dir, logger: logs.logger }, []);
    options.beforeFlows?.(sessions);
    const closed: string[] = [];
    const problems: string[] = [];
    const firewall: GrantingFirewall = { grantStep2: async () => {}, grantService: async () => {}, revoke: async () => {} };
    const closer = {
      close: async (ip: string, targets: readonly FlowTarget[]) => {
        closed.push(`${(Date.now() - T0) / 1000}s ${ip} ${targets.map((t) => `${t.protocol}/${t.port}`).join(',')}`);
        if (options.closeFails) throw new FlowCloseError('simulated');
        return 2;
      },
    };
    const apps = options.apps ?? (() => [vpn, ssh]);
    const scope = () => ({ step2Port: 443, apps: apps() });
    granter = new Granter({ firewall, sessions, logger: logs.logger, flows: { closer, scope }, onProblem: (p) => problems.push(p) });
    return { closed, problems, logs };
  }

  it('ends the flows of the expired grant within a second, for that app only', async () => {
    const { closed, logs } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    await granter.openService('10.0.0.1', ssh, alice);
    await vi.advanceTimersByTimeAsync(59_900);
    expect(closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(closed).toEqual(['60s 10.0.0.1 udp/1194']);
    expect(logs.lines().find((l) => l.msg === 'service grant expired: its flows ended')).toMatchObject({ ip: '10.0.0.1', app: 'vpn', flowsClosed: 2 });
    // ssh's grant expired too: its flows outlive it (the default).
    await vi.advanceTimersByTimeAsync(60_000);
    expect(closed).toHaveLength(1);
  });

  it('a re-knock that renewed the grant before expiry keeps the flows until the new expiry', async () => {
    const { closed } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    await vi.advanceTimersByTimeAsync(50_000);
    await granter.openService('10.0.0.1', vpn, alice);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(40_000);
    expect(closed).toEqual(['110s 10.0.0.1 udp/1194']);
  });

  it("another user's later grant for the same address and app keeps the flows", async () => {
    const { closed } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    await vi.advanceTimersByTimeAsync(30_000);
    await granter.openService('10.0.0.1', vpn, vpn.users[1]!);
    await vi.advanceTimersByTimeAsync(31_000);
    expect(closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(closed).toEqual(['90s 10.0.0.1 udp/1194']);
  });

  it('a revoke ends the flows once; the expiry that follows does nothing more', async () => {
    const { closed } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    await granter.revoke('10.0.0.1', vpn);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(closed).toEqual(['0s 10.0.0.1 udp/1194']);
  });

  it("a grant from another gateway ends once the kernel's rounded-up grant is gone, not at the record's expiry", async () => {
    const { closed } = await setup();
    // 59.3 s left: the kernel gets 60 s.
    await granter.applyRemote({ ip: '10.0.0.2', app: vpn, user: 'alice', step: 'service', expiresAt: T0 + 59_300, gateway: 'b' }, 60);
    await vi.advanceTimersByTimeAsync(59_500);
    expect(closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(600);
    expect(closed).toEqual(['60s 10.0.0.2 udp/1194']);
  });

  it('grants restored at start are watched, with a second of grace for the kernel rounding', async () => {
    const { closed } = await setup({ beforeFlows: (s) => void s.record('10.0.0.3', 'vpn', 'alice', 'service', 30) });
    await vi.advanceTimersByTimeAsync(30_500);
    expect(closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(WHOLE_SECOND_GRACE_MS);
    expect(closed).toEqual(['31s 10.0.0.3 udp/1194']);
  });

  it('the setting applies as it is when the grant expires (a reload may turn it on or off)', async () => {
    let apps: readonly AppConfig[] = [vpn, ssh];
    const { closed } = await setup({ apps: () => apps });
    await granter.openService('10.0.0.1', vpn, alice);
    await granter.openService('10.0.0.1', ssh, alice);
    apps = [
      { ...vpn, endFlowsOnExpiry: false },
      { ...ssh, endFlowsOnExpiry: true },
    ];
    await vi.advanceTimersByTimeAsync(61_000);
    expect(closed).toEqual(['60s 10.0.0.1 tcp/22']);
  });

  it('a failure is logged and reported to health', async () => {
    const { problems, logs } = await setup({ closeFails: true });
    await granter.openService('10.0.0.1', vpn, alice);
    await vi.advanceTimersByTimeAsync(61_000);
    expect(problems).toEqual([FLOWS_NOT_ENDED_AT_EXPIRY]);
    expect(logs.lines().some((l) => l.level === 50 && l.msg === 'service grant expired, but its flows could not be ended')).toBe(true);
  });
});

describe('FlowExpiry deadlines', () => {
  beforeEach(() => vi.useFakeTimers({ now: T0 }));
  afterEach(() => vi.useRealTimers());

  function expiry() {
    const ended: string[] = [];
    const closer = {
      close: async (ip: string) => {
        ended.push(ip);
        return 1;
      },
    };
    const watch = new FlowExpiry({
      sessions: { kernelExpiry: () => undefined },
      closer,
      scope: () => ({ step2Port: 443, apps: [vpn] }),
      logger: capturedLogger('info').logger,
    });
    return { watch, ended };
  }

  it('every grant ends once, in deadline order, whatever order they were given in', async () => {
    const { watch, ended } = expiry();
    const seconds = Array.from({ length: 300 }, (_, i) => (i * 7919) % 300);
    for (const [i, s] of seconds.entries()) watch.watch(`10.1.${i >> 8}.${i & 255}`, 'vpn', T0 + (s + 1) * 1000);
    await vi.advanceTimersByTimeAsync(301_000);
    expect(ended).toHaveLength(300);
    const order = ended.map(
      (ip) =>
        seconds[
          ip
            .split('.')
            .slice(2)
            .reduce((n, part) => n * 256 + Number(part), 0)
        ]!,
    );
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(watch.count()).toBe(0);
    watch.close();
  });

  it('renewals replace deadlines without piling up: one end at the last deadline', async () => {
    const { watch, ended } = expiry();
    for (let i = 1; i <= 5000; i++) watch.watch('10.0.0.1', 'vpn', T0 + 60_000 + i);
    expect(watch.count()).toBe(1);
    await vi.advanceTimersByTimeAsync(64_000);
    expect(ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(ended).toEqual(['10.0.0.1']);
    watch.close();
  });

  it('an earlier deadline does not shorten a known later one', async () => {
    const { watch, ended } = expiry();
    watch.watch('10.0.0.1', 'vpn', T0 + 10_000);
    watch.watch('10.0.0.1', 'vpn', T0 + 5_000);
    await vi.advanceTimersByTimeAsync(9_000);
    expect(ended).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(ended).toEqual(['10.0.0.1']);
    watch.close();
  });
});
