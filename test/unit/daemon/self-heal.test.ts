/** The maintenance tick's firewall self-heal: re-install, re-grant through the Granter, report. */
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import type { HostFirewallReport } from '../../../src/firewall/host-firewall.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { ProblemMemory } from '../../../src/metrics/health-problems.js';
import { FirewallSelfHeal, SELF_HEAL_FAILED } from '../../../src/daemon/self-heal.js';
import { capturedLogger } from '../sessions/log-capture.js';

function setup(ensureInstalled: () => Promise<boolean>, host: HostFirewallReport = { chains: [], inserted: [], problems: [] }) {
  const logs = capturedLogger('info');
  const problems = new ProblemMemory(logs.logger);
  const reapplied: Array<readonly AppConfig[]> = [];
  const apps = [{ name: 'vpn' }] as AppConfig[];
  const firewall = { type: 'nftables', ensureInstalled, hostFirewall: () => host } as unknown as FirewallBackend;
  const heal = new FirewallSelfHeal({
    firewall: () => firewall,
    capture: 'nfqueue',
    granter: { reapplyLive: async (running) => void reapplied.push(running) },
    apps: () => apps,
    problems,
    logger: logs.logger,
  });
  return { heal, logs, problems, reapplied, apps };
}

describe('FirewallSelfHeal', () => {
  it('re-applies the live grants only when the ruleset had to be re-installed', async () => {
    let missing = false;
    const { heal, logs, reapplied, apps } = setup(async () => missing);
    await heal.run();
    expect(reapplied).toEqual([]);
    missing = true;
    await heal.run();
    expect(reapplied).toEqual([apps]);
    expect(logs.lines().filter((l) => String(l.msg).includes('re-installed; restoring live grants'))).toHaveLength(1);
  });

  it('reports a failure in health until a tick succeeds', async () => {
    let fail = true;
    const { heal, logs, problems } = setup(async () => {
      if (fail) throw new Error('nft: no such table');
      return false;
    });
    await heal.run();
    expect(problems.recent()).toEqual([SELF_HEAL_FAILED]);
    expect(logs.lines().some((l) => l.msg === SELF_HEAL_FAILED && l.level === 50)).toBe(true);
    fail = false;
    await heal.run();
    expect(problems.recent()).toEqual([]);
  });

  it('logs a host firewall problem once while it lasts', async () => {
    const { heal, logs } = setup(async () => false, { chains: [], inserted: [], problems: ['chain input drops granted connections'] });
    await heal.run();
    await heal.run();
    expect(logs.lines().filter((l) => l.msg === 'host firewall: chain input drops granted connections')).toHaveLength(1);
  });
});
