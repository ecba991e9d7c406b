import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../src/config/types.js';
import { FlowCloseError, type FlowTarget } from '../../../src/firewall/conntrack.js';
import { FLOWS_NOT_CLOSED, Granter, VOIDED_NOT_REVOKED, voidedAtStart, voidedByReload, type GrantingFirewall } from '../../../src/sessions/grants.js';
import type { SessionRecord } from '../../../src/sessions/record.js';
import { SessionStore } from '../../../src/sessions/store.js';
import { testConfig, user } from '../step2/fixtures.js';
import { capturedLogger } from './log-capture.js';

const config = testConfig('JBSWY3DPEHPK3PXP');
const vpn = config.apps[0]!;
const ssh = config.apps[1]!;
const [alice, bob] = vpn.users as [(typeof vpn.users)[0], (typeof vpn.users)[0]];

/** A live session record (a minute left). */
const record = (ip: string, app: string | null, userName: string | null, step: SessionRecord['step'] = 'service'): SessionRecord => ({
  ip,
  app,
  user: userName,
  step,
  expiresAt: Date.now() + 60_000,
});

/** One ordered log of what the firewall and the flow closer were asked to do. */
function recorder(options: { closeFails?: boolean | 'bug'; revokeFails?: (ip: string) => boolean } = {}) {
  const calls: string[] = [];
  const firewall: GrantingFirewall = {
    grantStep2: async (ip) => void calls.push(`step2 ${ip}`),
    grantService: async (ip, app) => void calls.push(`service ${ip} ${app.name}`),
    revoke: async (ip, app) => {
      if (options.revokeFails?.(ip)) throw new Error('nft: no such set');
      calls.push(`revoke ${ip} ${app?.name ?? '*'}`);
    },
  };
  const closer = {
    close: async (ip: string, targets: readonly FlowTarget[]) => {
      calls.push(`close ${ip} ${targets.map((t) => `${t.protocol}/${t.port}`).join(',')}`);
      if (options.closeFails === 'bug') return (undefined as unknown as { length: number }).length;
      if (options.closeFails) throw new FlowCloseError(`established flows of ${ip} may still be open: tcp/22 conntrack: 'conntrack' not found`);
      return targets.length;
    },
  };
  return { calls, firewall, closer };
}

describe('Granter: revoke ends flows', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knock-port-revoke-flows-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(options: Parameters<typeof recorder>[0] = {}) {
    const logs = capturedLogger('info');
    const sessions = await SessionStore.open({ stateDir: dir, logger: logs.logger }, []);
    const { calls, firewall, closer } = recorder(options);
    const problems: string[] = [];
    const scope = () => ({ step2Port: 443, apps: config.apps });
    const granter = new Granter({ firewall, sessions, logger: logs.logger, flows: { closer, scope }, onProblem: (p) => problems.push(p) });
    return { logs, sessions, calls, problems, granter };
  }

  it('removes the grant first, then ends the flows of that app, or of HTTPS and every app', async () => {
    const { sessions, calls, granter, logs } = await setup();
    await granter.openService('10.0.0.1', ssh, alice);
    await granter.revoke('10.0.0.1', ssh);
    await granter.revoke('10.0.0.1');
    expect(calls.slice(1)).toEqual(['revoke 10.0.0.1 ssh', 'close 10.0.0.1 tcp/22', 'revoke 10.0.0.1 *', 'close 10.0.0.1 tcp/443,tcp/1194,tcp/22']);
    expect(logs.lines().filter((l) => l.msg === 'revoked')).toMatchObject([
      { app: 'ssh', flowsClosed: 1 },
      { app: '*', flowsClosed: 3 },
    ]);
    await sessions.close();
  });

  it('a flow closer failure keeps the revoke, logs an error and reports a problem', async () => {
    const { sessions, calls, problems, granter, logs } = await setup({ closeFails: true });
    await granter.openService('10.0.0.1', ssh, alice);
    expect(await granter.revoke('10.0.0.1', ssh)).toBe(1);
    expect(sessions.list()).toEqual([]);
    expect(calls).toContain('revoke 10.0.0.1 ssh');
    expect(problems).toEqual([FLOWS_NOT_CLOSED]);
    const error = logs.lines().find((l) => l.level === 50);
    expect(error).toMatchObject({ ip: '10.0.0.1', app: 'ssh', msg: 'grant revoked, but established flows could not be closed' });
    expect(String(error?.err)).toMatch(/'conntrack' not found/);
    expect(error).not.toHaveProperty('stack'); // an operator error: its message says it all
    await sessions.close();
  });

  it('a bug in the flow closer is logged once, with the stack that says where', async () => {
    const { sessions, granter, logs } = await setup({ closeFails: 'bug' });
    await granter.openService('10.0.0.1', ssh, alice);
    expect(await granter.revoke('10.0.0.1', ssh)).toBe(1);
    const errors = logs.lines().filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: 'grant revoked, but established flows could not be closed' });
    expect(String(errors[0]?.stack)).toMatch(/TypeError[\s\S]*revoke-flows\.test\.ts:\d+/);
    await sessions.close();
  });

  it('no flows are touched when the grant itself could not be removed', async () => {
    const { sessions, calls, granter } = await setup({ revokeFails: () => true });
    await granter.openService('10.0.0.1', ssh, alice);
    await expect(granter.revoke('10.0.0.1', ssh)).rejects.toThrow(/no such set/);
    expect(calls.filter((c) => c.startsWith('close'))).toEqual([]);
    await sessions.close();
  });

  it('revokeVoided: a reload that drops an app or a user revokes their grants, flows included', async () => {
    const { sessions, calls, problems, granter, logs } = await setup({ revokeFails: (ip) => ip === '10.0.0.9' });
    await granter.openService('10.0.0.1', ssh, alice);
    await granter.openService('10.0.0.2', vpn, bob);
    await granter.openService('10.0.0.3', vpn, alice);
    await granter.openService('10.0.0.9', ssh, alice);
    const next = [{ ...vpn, users: [alice] }]; // ssh removed, bob removed
    calls.length = 0;
    // Three voided, two revoked: the one whose revoke failed is not counted.
    expect(await granter.revokeVoided(config.apps, next)).toBe(2);
    expect(calls).toEqual(['revoke 10.0.0.1 ssh', 'close 10.0.0.1 tcp/22', 'revoke 10.0.0.2 vpn', 'close 10.0.0.2 tcp/1194']);
    expect(
      sessions
        .list()
        .map((r) => `${r.ip} ${r.app}`)
        .sort(),
    ).toEqual(['10.0.0.3 vpn', '10.0.0.9 ssh']);
    expect(problems).toEqual([VOIDED_NOT_REVOKED]);
    expect(
      logs
        .lines()
        .filter((l) => l.msg === 'config reload voids a grant')
        .map((l) => l.reason),
    ).toEqual(['app removed', 'user removed', 'app removed']);
    await sessions.close();
  });
  it('revokeVoidedAtStart: restored grants of a user the config no longer has are revoked, flows included; the others stay', async () => {
    const { sessions, calls, granter, logs } = await setup();
    await granter.openService('10.0.0.1', vpn, bob);
    await granter.openService('10.0.0.2', vpn, alice);
    await granter.openService('10.0.0.3', ssh, alice);
    calls.length = 0;
    // bob removed from vpn while the daemon was stopped.
    expect(await granter.revokeVoidedAtStart([{ ...vpn, users: [alice] }, ssh])).toBe(1);
    expect(calls).toEqual(['revoke 10.0.0.1 vpn', 'close 10.0.0.1 tcp/1194']);
    expect(
      sessions
        .list()
        .map((r) => `${r.ip} ${r.app} ${r.user}`)
        .sort(),
    ).toEqual(['10.0.0.2 vpn alice', '10.0.0.3 ssh alice']);
    expect(logs.lines().filter((l) => l.msg === 'restored grant of a user the config no longer has')).toHaveLength(1);
    await sessions.close();
  });
});

describe('voidedAtStart', () => {
  it('voids service grants of users the app no longer names, once per address; step-2 windows, unattributed records and unknown apps are left', () => {
    const records = [
      record('10.0.0.1', 'vpn', 'bob'),
      record('10.0.0.1', 'vpn', 'bob'),
      record('10.0.0.2', 'vpn', 'bob', 'step2'),
      record('10.0.0.3', 'vpn', 'alice'),
      record('10.0.0.4', 'vpn', null),
      record('10.0.0.5', 'gone', 'bob'),
    ];
    expect(voidedAtStart(records, [{ ...vpn, users: [alice] }, ssh])).toEqual([{ ip: '10.0.0.1', app: { ...vpn, users: [alice] }, reason: 'user removed' }]);
    expect(voidedAtStart(records, config.apps)).toEqual([]);
  });
});

describe('voidedByReload', () => {
  const with_ = (app: AppConfig, changes: Partial<AppConfig>): AppConfig => ({ ...app, ...changes });

  it('an unchanged config voids nothing', () => {
    expect(voidedByReload([record('10.0.0.1', 'vpn', 'alice'), record('10.0.0.1', null, null)], config.apps, testConfig('JBSWY3DPEHPK3PXP').apps)).toEqual([]);
  });

  it('a removed app voids every grant of it, once per address, with the app as it was', () => {
    const voided = voidedByReload(
      [record('10.0.0.1', 'ssh', 'alice'), record('10.0.0.1', 'ssh', 'alice', 'step2'), record('10.0.0.2', 'ssh', null)],
      config.apps,
      [vpn],
    );
    expect(voided).toEqual([
      { ip: '10.0.0.1', app: ssh, reason: 'app removed' },
      { ip: '10.0.0.2', app: ssh, reason: 'app removed' },
    ]);
  });

  it('a new port or protocol voids the grant of the old one', () => {
    expect(voidedByReload([record('10.0.0.1', 'ssh', 'alice')], config.apps, [vpn, with_(ssh, { port: 2222 })])).toMatchObject([
      { app: { port: 22 }, reason: 'app port changed' },
    ]);
    expect(voidedByReload([record('10.0.0.1', 'ssh', 'alice')], config.apps, [vpn, with_(ssh, { protocol: 'udp' })])).toMatchObject([
      { reason: 'app port changed' },
    ]);
  });

  it('a removed user, or one whose keys changed, voids service grants; step-2 windows expire alone', () => {
    const records = [record('10.0.0.1', 'vpn', 'bob'), record('10.0.0.2', 'vpn', 'bob', 'step2'), record('10.0.0.3', 'vpn', 'alice')];
    expect(voidedByReload(records, config.apps, [with_(vpn, { users: [alice] }), ssh])).toEqual([{ ip: '10.0.0.1', app: vpn, reason: 'user removed' }]);
    const rekeyed = user('bob', 1, 'a-new-https-key-for-bob');
    expect(voidedByReload(records, config.apps, [with_(vpn, { users: [alice, rekeyed] }), ssh])).toEqual([
      { ip: '10.0.0.1', app: vpn, reason: 'user removed' },
    ]);
  });

  it('list-form users: removing the first key pair voids both grants (key1 becomes key0)', () => {
    const key0 = user('key0', 0, 'first-https-key');
    const key1 = user('key1', 1, 'second-https-key');
    const before = [with_(vpn, { users: [key0, key1] })];
    const after = [with_(vpn, { users: [{ ...key1, name: 'key0', index: 0 }] })];
    expect(voidedByReload([record('10.0.0.1', 'vpn', 'key0'), record('10.0.0.2', 'vpn', 'key1')], before, after).map((v) => v.ip)).toEqual([
      '10.0.0.1',
      '10.0.0.2',
    ]);
  });
});
