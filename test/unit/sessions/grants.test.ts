import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { valueOf } from '../metrics/values.js';
import { Granter, type GrantingFirewall } from '../../../src/sessions/grants.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { testConfig } from '../step2/fixtures.js';
import { capturedLogger } from './log-capture.js';

/** Records the calls a backend would turn into set elements; can be told to fail. */
class RecordingFirewall implements GrantingFirewall {
  calls: string[] = [];
  failing = false;
  async grantStep2(ip: string, ttl: number): Promise<void> {
    this.call(`step2 ${ip} ${ttl}`);
  }
  async grantService(ip: string, app: AppConfig, ttl: number): Promise<void> {
    this.call(`service ${ip} ${app.name} ${ttl}`);
  }
  async revoke(ip: string, app?: AppConfig): Promise<void> {
    this.call(`revoke ${ip} ${app?.name ?? '*'}`);
  }
  private call(text: string): void {
    if (this.failing) throw new Error('nft: transaction failed');
    this.calls.push(text);
  }
}

describe('Granter', () => {
  const config = testConfig('JBSWY3DPEHPK3PXP');
  const vpn = config.apps[0]!;
  const ssh = config.apps[1]!;
  const alice = vpn.users[0]!;
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-grants-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function setup() {
    const logs = capturedLogger('info');
    const sessions = await SessionStore.open({ stateDir: dir, logger: logs.logger }, []);
    const metrics = createDaemonMetrics(() => sessions.size);
    const firewall = new RecordingFirewall();
    return { logs, sessions, metrics, firewall, granter: new Granter({ firewall, sessions, logger: logs.logger, metrics, backend: 'nftables' }) };
  }

  it('grants in the firewall, records, logs one line and counts', async () => {
    const { logs, sessions, metrics, firewall, granter } = await setup();
    await granter.openStep2Window('10.0.0.1', vpn, alice);
    await granter.openService('10.0.0.1', vpn, alice);
    expect(firewall.calls).toEqual(['step2 10.0.0.1 10', 'service 10.0.0.1 vpn 60']);
    expect(sessions.step2Windows('10.0.0.1')).toMatchObject([{ app: 'vpn', user: 'alice' }]);
    expect(
      sessions
        .list()
        .map((r) => r.step)
        .sort(),
    ).toEqual(['service', 'step2']);
    const granted = logs.lines().filter((l) => l.msg === 'granted');
    expect(granted).toMatchObject([
      { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'step2', ttl: 10 },
      { ip: '10.0.0.1', app: 'vpn', user: 'alice', step: 'service', ttl: 60 },
    ]);
    expect(await valueOf(metrics.grants, { step: 'service' })).toBe(1);
    expect(await valueOf(metrics.appGrants, { app: 'vpn', step: 'step2' })).toBe(1);
    expect(await valueOf(metrics.appGrants, { app: 'vpn', step: 'service' })).toBe(1);
    expect(await metrics.registry.metrics()).toMatch(/knockport_knock_to_grant_seconds_count\{step="service"\} 1/);
    await sessions.close();
  });

  it('records nothing when the firewall refuses, and counts the failure by backend and step', async () => {
    const { sessions, metrics, firewall, granter } = await setup();
    firewall.failing = true;
    await expect(granter.openService('10.0.0.1', vpn, alice)).rejects.toThrow(/transaction failed/);
    await expect(granter.openStep2Window('10.0.0.1', vpn, alice)).rejects.toThrow(/transaction failed/);
    await expect(granter.openService('10.0.0.2', ssh, alice)).rejects.toThrow(/transaction failed/);
    expect(sessions.list()).toEqual([]);
    expect(await valueOf(metrics.grantFailures, { backend: 'nftables', step: 'service' })).toBe(2);
    expect(await valueOf(metrics.grantFailures, { backend: 'nftables', step: 'step2' })).toBe(1);
    expect(await valueOf(metrics.grants, { step: 'service' })).toBe(0);
    expect(await valueOf(metrics.appGrants, { app: 'vpn', step: 'service' })).toBe(0);
    await sessions.close();
  });

  it('re-applies live grants after a self-heal for the time they have left, without recording them again', async () => {
    const { logs, sessions, metrics, firewall, granter } = await setup();
    await granter.openStep2Window('10.0.0.1', vpn, alice);
    await granter.openService('10.0.0.2', vpn, alice);
    await granter.openService('10.0.0.3', ssh, alice);
    // When the last grant was recorded (expiry minus its ttl: 10 s for step 2, 60 s for the service).
    const now = Math.max(...sessions.list().map((r) => r.expiresAt - (r.step === 'step2' ? 10_000 : 60_000)));
    firewall.calls = [];
    const granted = logs.lines().length;
    // The running config no longer has ssh: its service grant stays out of the kernel.
    await granter.reapplyLive([vpn], now + 4_000);
    expect(firewall.calls.sort()).toEqual(['service 10.0.0.2 vpn 56', 'step2 10.0.0.1 6']);
    await granter.reapplyLive([vpn, ssh], now + 11_000);
    expect(firewall.calls.slice(2).sort()).toEqual(['service 10.0.0.2 vpn 49', 'service 10.0.0.3 ssh 49']);
    expect(sessions.list()).toHaveLength(3);
    expect(await valueOf(metrics.grants, { step: 'service' })).toBe(2);
    expect(logs.lines()).toHaveLength(granted);
    await sessions.close();
  });

  it('revokes one app or everything for an IP', async () => {
    const { logs, sessions, metrics, firewall, granter } = await setup();
    await granter.openService('10.0.0.1', vpn, alice);
    await granter.openService('10.0.0.1', ssh, alice);
    expect(await granter.revoke('10.0.0.1', ssh)).toBe(1);
    expect(sessions.list().map((r) => r.app)).toEqual(['vpn']);
    expect(await granter.revoke('10.0.0.1')).toBe(1);
    expect(sessions.list()).toEqual([]);
    expect(firewall.calls.slice(-2)).toEqual(['revoke 10.0.0.1 ssh', 'revoke 10.0.0.1 *']);
    expect(await valueOf(metrics.revokes)).toBe(2);
    expect(logs.lines().filter((l) => l.msg === 'revoked')).toHaveLength(2);
    await sessions.close();
  });
});
