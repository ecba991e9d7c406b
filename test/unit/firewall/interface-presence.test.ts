/** Configured interface names that match nothing on the host are reported, never silent. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/types.js';
import { InterfaceWatch, interfaceWarnings, missingInterfaces } from '../../../src/firewall/interface-presence.js';
import { capturedLogger } from '../sessions/log-capture.js';
import { fixtureConfig } from './fixture.js';

const root = mkdtempSync(join(tmpdir(), 'kp-ifaces-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A stand-in for /sys/class/net holding these interfaces. */
function sysClassNet(name: string, interfaces: string[]): string {
  const dir = join(root, name);
  for (const ifname of interfaces) mkdirSync(join(dir, ifname), { recursive: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function withAppOverride(config: Config, app: string, interfaceExt: string): Config {
  return { ...config, apps: config.apps.map((a) => (a.name === app ? { ...a, interfaceExt } : a)) };
}

describe('missing interfaces', () => {
  it('names a mistyped interface_ext as the gate matching nothing', () => {
    const missing = missingInterfaces(fixtureConfig({ interfaceExt: 'eht0', interfaceInt: 'eth1' }), ['lo', 'eth0', 'eth1']);
    expect(missing.map((m) => m.problem)).toEqual(["gate matches no interface: interface_ext 'eht0'"]);
    expect(missing[0]!.hint).toMatch(/as open as the host's other rules leave them/);
  });

  it('matches wildcards as the firewall does', () => {
    expect(missingInterfaces(fixtureConfig({ interfaceExt: 'ppp*', interfaceInt: 'eth1' }), ['lo', 'eth1', 'ppp0'])).toEqual([]);
    expect(missingInterfaces(fixtureConfig({ interfaceExt: 'ppp*', interfaceInt: 'eth1' }), ['lo', 'eth1']).map((m) => m.problem)).toEqual([
      "gate matches no interface: interface_ext 'ppp*'",
    ]);
  });

  it('reports per-app overrides under their key, and the LAN side only for forwarded apps', () => {
    const config = withAppOverride(fixtureConfig({ interfaceExt: 'eth0', interfaceInt: 'lan9' }), 'ssh', 'wg0');
    expect(missingInterfaces(config, ['lo', 'eth0']).map((m) => m.problem)).toEqual([
      "gate matches no interface: ssh.interface_ext 'wg0'",
      "LAN side matches no interface: interface_int 'lan9'",
    ]);
    const localOnly = { ...config, apps: config.apps.filter((a) => a.destination.kind === 'local') };
    expect(missingInterfaces(localOnly, ['lo', 'eth0', 'wg0'])).toEqual([]);
  });

  it('never reports any', () => {
    expect(missingInterfaces(fixtureConfig({ interfaceExt: 'any', interfaceInt: 'any' }), ['lo'])).toEqual([]);
  });

  it('check: a warning per missing name, or why the names could not be checked', () => {
    const config = fixtureConfig({ interfaceExt: 'eht0', interfaceInt: 'eth1' });
    expect(interfaceWarnings(config, sysClassNet('check', ['lo', 'eth0', 'eth1']))).toEqual([
      expect.stringMatching(/^gate matches no interface: interface_ext 'eht0' on this host: until an interface of that name exists/),
    ]);
    expect(interfaceWarnings(config, join(root, 'nowhere'))).toEqual([
      expect.stringMatching(/cannot list the network interfaces .*; interface names not checked/),
    ]);
  });
});

describe('the daemon watch', () => {
  it('warns when a name goes missing, reports it while it lasts, and says when it is resolved', () => {
    const dir = sysClassNet('watch', ['lo', 'eth1']);
    const { logger, lines } = capturedLogger('info');
    const watch = new InterfaceWatch(logger, dir);
    // Built without the config loader, so the name is kept as written; the watch matches it all the same.
    const config = fixtureConfig({ interfaceExt: 'ppp+', interfaceInt: 'eth1' });

    watch.refresh(config);
    watch.refresh(config);
    expect(watch.problems()).toEqual(["gate matches no interface: interface_ext 'ppp+'"]);
    const warnings = lines().filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ setting: 'interface_ext', interface: 'ppp+' });

    mkdirSync(join(dir, 'ppp0'));
    watch.refresh(config);
    expect(watch.problems()).toEqual([]);
    expect(lines().at(-1)).toMatchObject({ level: 30, msg: "resolved: gate matches no interface: interface_ext 'ppp+'" });
  });
});
