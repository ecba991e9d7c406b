/** Flows around a ruleset install: the self-heal ends what a gap let in without a grant; a first install keeps what was established. */
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import { FlowCloseError, type FlowTarget } from '../../../src/firewall/conntrack.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { ProblemMemory } from '../../../src/metrics/health-problems.js';
import type { SessionRecord } from '../../../src/sessions/record.js';
import { FirewallSelfHeal, GAP_FLOWS_NOT_ENDED, holdsGrantFor, installAtStart } from '../../../src/daemon/self-heal.js';
import { capturedLogger } from '../sessions/log-capture.js';

const vpn = { name: 'vpn', protocol: 'udp', port: 1194, destination: { kind: 'local' } } as AppConfig;
const ssh = { name: 'ssh', protocol: 'tcp', port: 22, destination: { kind: 'local' } } as AppConfig;
const scope = { step2Port: 443, apps: [vpn, ssh], grantMark: 0x10000000 };
const https: FlowTarget = { protocol: 'tcp', port: 443, local: true };
const sshTarget: FlowTarget = { protocol: 'tcp', port: 22, local: true };

const record = (step: SessionRecord['step'], app: string | null): SessionRecord => ({
  ip: '10.0.0.1',
  app,
  user: 'alice',
  step,
  expiresAt: Date.now() + 60_000,
});

describe('holdsGrantFor', () => {
  it('HTTPS: any live step-2 window or service grant', () => {
    expect(holdsGrantFor([], https, scope)).toBe(false);
    expect(holdsGrantFor([record('step2', 'vpn')], https, scope)).toBe(true);
    expect(holdsGrantFor([record('service', 'vpn')], https, scope)).toBe(true);
  });

  it("an app's port: a service grant for an app on that port and protocol, nothing else", () => {
    expect(holdsGrantFor([record('service', 'ssh')], sshTarget, scope)).toBe(true);
    expect(holdsGrantFor([record('step2', 'ssh')], sshTarget, scope)).toBe(false);
    expect(holdsGrantFor([record('service', 'vpn')], sshTarget, scope)).toBe(false);
    expect(holdsGrantFor([record('service', null)], sshTarget, scope)).toBe(false);
  });
});

function selfHeal(options: { missing: boolean; endFails?: boolean; records?: SessionRecord[] }) {
  const logs = capturedLogger('info');
  const problems = new ProblemMemory(logs.logger);
  const steps: string[] = [];
  const asked: Array<{ targets: string[]; mark: number; granted: string[] }> = [];
  const firewall = { type: 'nftables', ensureInstalled: async () => options.missing, hostFirewall: () => ({ chains: [], inserted: [], problems: [] }) };
  const heal = new FirewallSelfHeal({
    firewall: () => firewall as unknown as FirewallBackend,
    capture: 'nfqueue',
    granter: { reapplyLive: async () => void steps.push('reapply') },
    apps: () => scope.apps,
    problems,
    logger: logs.logger,
    flows: {
      scope: () => scope,
      sessions: { listOf: (ip) => (ip === '10.0.0.1' ? (options.records ?? []) : []) },
      ender: {
        endUngranted: async (targets, mark, holdsGrant) => {
          steps.push('end');
          const granted = targets.flatMap((t) => ['10.0.0.1', '10.0.0.2'].filter((ip) => holdsGrant(ip, t)).map((ip) => `${ip} ${t.port}`));
          asked.push({ targets: targets.map((t) => `${t.protocol}/${t.port}`), mark, granted });
          if (options.endFails) throw new FlowCloseError('simulated');
          return 3;
        },
      },
    },
  });
  return { heal, logs, problems, steps, asked };
}

describe('FirewallSelfHeal: flows opened while the ruleset was missing', () => {
  it('after a re-install and the re-grant, ends the unmarked flows of sources without a grant on every protected port', async () => {
    const { heal, logs, steps, asked } = selfHeal({ missing: true, records: [record('service', 'ssh')] });
    await heal.run();
    expect(steps).toEqual(['reapply', 'end']);
    expect(asked).toEqual([{ targets: ['tcp/443', 'udp/1194', 'tcp/22'], mark: 0x10000000, granted: ['10.0.0.1 443', '10.0.0.1 22'] }]);
    expect(logs.lines().find((l) => String(l.msg).startsWith('flows opened without a grant'))).toMatchObject({ ended: 3 });
  });

  it('nothing when the ruleset was in place', async () => {
    const { heal, steps } = selfHeal({ missing: false });
    await heal.run();
    expect(steps).toEqual([]);
  });

  it('a failure is logged and reported, and the self-heal itself stands', async () => {
    const { heal, problems } = selfHeal({ missing: true, endFails: true });
    await heal.run();
    expect(problems.recent()).toEqual([GAP_FLOWS_NOT_ENDED]);
  });
});

function startFirewall(installed: boolean | undefined, steps: string[]) {
  return {
    ...(installed === undefined ? {} : { isInstalled: async () => installed }),
    install: async () => void steps.push('install'),
  } as unknown as FirewallBackend;
}

describe('installAtStart', () => {
  function adopter(steps: string[], fails = false) {
    return {
      adopt: async (targets: readonly FlowTarget[], mark: number) => {
        steps.push(`adopt ${targets.map((t) => `${t.protocol}/${t.port}`).join(',')} ${mark.toString(16)}`);
        if (fails) throw new FlowCloseError('simulated');
        return 2;
      },
    };
  }

  it('a first install marks the established flows to protected ports first, then installs', async () => {
    const steps: string[] = [];
    const logs = capturedLogger('info');
    await installAtStart(startFirewall(false, steps), 'nfqueue', { adopter: adopter(steps), scope, logger: logs.logger });
    expect(steps).toEqual(['adopt tcp/443,udp/1194,tcp/22 10000000', 'install']);
    expect(logs.lines().find((l) => String(l.msg).startsWith('first install'))).toMatchObject({ kept: 2 });
  });

  it('a restart (ruleset in place) and a backend that cannot tell never adopt', async () => {
    for (const installed of [true, undefined]) {
      const steps: string[] = [];
      await installAtStart(startFirewall(installed, steps), 'nfqueue', { adopter: adopter(steps), scope, logger: capturedLogger('info').logger });
      expect(steps).toEqual(['install']);
    }
  });

  it('a failure to adopt is a warning; the install goes on', async () => {
    const steps: string[] = [];
    const logs = capturedLogger('info');
    await installAtStart(startFirewall(false, steps), 'nflog', { adopter: adopter(steps, true), scope, logger: logs.logger });
    expect(steps.at(-1)).toBe('install');
    expect(logs.lines().some((l) => l.level === 40 && String(l.msg).includes('could not all be kept'))).toBe(true);
  });
});
