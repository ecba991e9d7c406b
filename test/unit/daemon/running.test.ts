import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/types.js';
import { RunningConfig } from '../../../src/daemon/running.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { Granter } from '../../../src/sessions/grants.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { testConfig } from '../step2/fixtures.js';
import { capturedLogger } from '../sessions/log-capture.js';

/** A backend that only records the grants and revokes it is asked for, under its name. */
function recordingFirewall(name: string, calls: string[]): FirewallBackend {
  const granting: Pick<FirewallBackend, 'grantStep2' | 'grantService' | 'revoke'> = {
    grantStep2: async (ip) => void calls.push(`${name} step2 ${ip}`),
    grantService: async (ip, app) => void calls.push(`${name} service ${ip} ${app.name}`),
    revoke: async (ip, app) => void calls.push(`${name} revoke ${ip} ${app?.name ?? '*'}`),
  };
  return granting as FirewallBackend;
}

describe('RunningConfig: what every part reads, swapped by a reload', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-running-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('after a reload, a part built at start grants on the new backend and ends flows over the new ports', async () => {
    const start = testConfig('JBSWY3DPEHPK3PXP');
    const calls: string[] = [];
    const running = new RunningConfig(start, recordingFirewall('first', calls));
    const logs = capturedLogger('info');
    const sessions = await SessionStore.open({ stateDir: dir, logger: logs.logger }, []);
    const closed: string[] = [];
    const closer = { close: async (ip: string, targets: readonly { port: number }[]) => closed.push(`${ip} ${targets.map((t) => t.port).join(',')}`) };
    const granter = new Granter({ firewall: running.granting, sessions, logger: logs.logger, flows: { closer, scope: running.flowScope } });
    const ssh = start.apps[1]!;
    await granter.openService('10.0.0.1', ssh, ssh.users[0]!);

    const moved: Config = { ...start, apps: [{ ...ssh, port: 2222 }] };
    const replaced = running.swap(moved, recordingFirewall('second', calls));
    await granter.openService('10.0.0.2', moved.apps[0]!, ssh.users[0]!);
    await granter.revoke('10.0.0.2');

    expect(replaced).not.toBe(running.firewall);
    expect(running.config).toBe(moved);
    expect(calls).toEqual(['first service 10.0.0.1 ssh', 'second service 10.0.0.2 ssh', 'second revoke 10.0.0.2 *']);
    expect(closed).toEqual([`10.0.0.2 ${start.global.step2Port},2222`]);
    granter.close();
    await sessions.close();
  });
});
