/**
 * `uninstall` refuses while a daemon holds the control socket: its self-heal would undo it.
 * `--from-state` removes what the daemon recorded as installed, whatever the config says now.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { probeDaemon, type FirewallFactory } from '../../../src/cli/actions/uninstall.js';
import { registerUninstall } from '../../../src/cli/commands/uninstall.js';
import type { Config } from '../../../src/config/types.js';
import type { FirewallBackend, FirewallOptions } from '../../../src/firewall/index.js';
import { installRecordPath, readInstallRecord, recordInstall, type InstalledFirewall } from '../../../src/firewall/install-record.js';
import { runCli } from '../client/cli-harness.js';
import { VALID } from '../config/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-uninstall-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function listen(path: string): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer((socket) => socket.end());
    server.listen(path, () => resolve(server));
  });
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('daemon detection', () => {
  it('running while something accepts on the socket; stopped when there is none or a stale one', async () => {
    const path = join(dir, 'probe.sock');
    expect(await probeDaemon(path)).toEqual({ state: 'stopped' });
    const server = await listen(path);
    expect(await probeDaemon(path)).toEqual({ state: 'running' });
    await close(server);

    // A socket file left behind by a daemon that died: it exists, but nothing accepts.
    const stale = join(dir, 'stale.sock');
    execFileSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    expect(statSync(stale).isSocket()).toBe(true);
    expect(await probeDaemon(stale)).toEqual({ state: 'stopped' });
  });

  it('refuses to uninstall while the daemon runs, before touching the firewall', async () => {
    const socket = join(dir, 'control.sock');
    const config = join(dir, 'config.yaml');
    writeFileSync(config, VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  control_socket: ${socket}\n`));
    const server = await listen(socket);
    try {
      const run = await runCli((program) => registerUninstall(program), ['uninstall', '-c', config]);
      expect(run.exitCode).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        /knock-port is running \(its control socket .*control\.sock accepts connections\).*Stop it first \(systemctl stop knock-port\)/,
      );
    } finally {
      await close(server);
    }
  });
});

/** A firewall factory that touches no firewall: it notes what it was asked to remove, and can fail for one table. */
function fakeFirewalls(failTable?: string): { factory: FirewallFactory; removed: string[] } {
  const removed: string[] = [];
  const factory: FirewallFactory = (config: Config, options: FirewallOptions) =>
    ({
      type: config.global.firewallType,
      uninstall: () => {
        if (config.global.tableName === failTable) return Promise.reject(new Error('iptables: Resource busy'));
        removed.push(`${config.global.firewallType} ${config.global.tableName} ${options.iptablesVariant ?? 'default'}`);
        return Promise.resolve();
      },
    }) as unknown as FirewallBackend;
  return { factory, removed };
}

describe('uninstall --from-state', () => {
  let count = 0;
  /** A state directory holding these installs, next to a config that no longer loads. */
  function state(installs: InstalledFirewall[]): { stateDir: string; config: string } {
    const stateDir = join(dir, `state-${++count}`);
    for (const install of installs) recordInstall(stateDir, install);
    const config = join(dir, `broken-${count}.yaml`);
    writeFileSync(config, 'global: [this is not a config\n');
    return { stateDir, config };
  }
  const nft = (socket: string): InstalledFirewall => ({ firewallType: 'nftables', tableName: 'knockport', iptablesVariant: 'default', controlSocket: socket });
  const uninstall = (args: string[], factory: FirewallFactory) =>
    runCli((program, terminal) => registerUninstall(program, terminal, factory), ['uninstall', ...args]);

  it('removes every recorded install though the config no longer loads, then forgets them', async () => {
    const socket = join(dir, 'absent.sock');
    const { stateDir, config } = state([nft(socket), { firewallType: 'iptables', tableName: 'oldname', iptablesVariant: 'legacy', controlSocket: socket }]);
    const broken = await runCli((program, terminal) => registerUninstall(program, terminal, fakeFirewalls().factory), ['uninstall', '-c', config]);
    expect(broken.exitCode).toBe(1);
    expect(broken.stderr).toMatch(/invalid config/);

    const { factory, removed } = fakeFirewalls();
    const run = await uninstall(['--from-state', stateDir], factory);
    expect([run.exitCode, run.stderr]).toEqual([0, '']);
    expect(removed).toEqual(['nftables knockport default', 'iptables oldname legacy']);
    expect(run.stdout).toBe(
      "removed knock-port's nftables rules and sets of table knockport; its protected ports are no longer filtered by knock-port\n" +
        "removed knock-port's iptables (iptables-legacy) rules and sets of table oldname; its protected ports are no longer filtered by knock-port\n",
    );
    expect(existsSync(installRecordPath(stateDir))).toBe(false);
  });

  it('says so, and succeeds, when nothing is recorded', async () => {
    const { factory, removed } = fakeFirewalls();
    const run = await uninstall(['--from-state', join(dir, 'never-ran')], factory);
    expect([run.exitCode, removed]).toEqual([0, []]);
    expect(run.stdout).toMatch(/^no firewall install is recorded in .*never-ran .*; nothing removed\n$/);
  });

  it('refuses while the recorded daemon runs, touching nothing and keeping the record', async () => {
    const socket = join(dir, 'recorded.sock');
    const { stateDir } = state([nft(socket)]);
    const server = await listen(socket);
    try {
      const { factory, removed } = fakeFirewalls();
      const run = await uninstall(['--from-state', stateDir], factory);
      expect([run.exitCode, removed]).toEqual([1, []]);
      expect(run.stderr).toMatch(/knock-port is running \(its control socket .*recorded\.sock accepts connections\)/);
      expect(readInstallRecord(stateDir)).toEqual([nft(socket)]);
    } finally {
      await close(server);
    }
  });

  it('removes what it can, fails, and keeps only what is left in the record', async () => {
    const socket = join(dir, 'absent.sock');
    const stuck: InstalledFirewall = { firewallType: 'iptables', tableName: 'stuck', iptablesVariant: 'default', controlSocket: socket };
    const { stateDir } = state([stuck, nft(socket)]);
    const { factory, removed } = fakeFirewalls('stuck');
    const run = await uninstall(['--from-state', stateDir], factory);
    expect(run.exitCode).toBe(1);
    expect(removed).toEqual(['nftables knockport default']);
    expect(run.stderr).toMatch(/could not remove every recorded install \(kept in .*\):\n {2}iptables rules and sets of table stuck: iptables: Resource busy/);
    expect(readInstallRecord(stateDir)).toEqual([stuck]);
  });

  it('is not combined with -c or the flags that change what is removed', async () => {
    const { factory } = fakeFirewalls();
    for (const flags of [
      ['-c', '/etc/knock-port/config.yaml'],
      ['--iptables-variant', 'legacy'],
      ['--firewall-type', 'iptables'],
    ]) {
      const run = await uninstall(['--from-state', dir, ...flags], factory);
      expect(run.exitCode).toBe(2);
      expect(run.stderr).toMatch(/cannot be used with option/);
    }
  });
});
