/** Configured interface names that match nothing on the host are reported, never silent. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/types.js';
import { ConfigError } from '../../../src/config/issues.js';
import { checkInterfaces, closestInterfaces, InterfaceWatch, missingInterfaces, requireInterfaces } from '../../../src/firewall/interface-presence.js';
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
    const config = fixtureConfig({ interfaceExt: 'eht0?', interfaceInt: 'eth1' });
    expect(checkInterfaces(config, sysClassNet('check', ['lo', 'eth0', 'eth1']))).toEqual({
      errors: [],
      warnings: [expect.stringMatching(/^gate matches no interface: interface_ext 'eht0\?' on this host: until an interface of that name exists/)],
    });
    expect(checkInterfaces(config, join(root, 'nowhere'))).toEqual({
      errors: [],
      warnings: [expect.stringMatching(/cannot list the network interfaces .*; interface names not checked/)],
    });
  });
});

describe('an exact name that matches no interface is an error', () => {
  const dir = () => sysClassNet('exact', ['lo', 'eth0', 'eth1', 'wlan0']);

  it('names the key and the name, suggests the closest interface, and says how to mark one that comes later', () => {
    const { errors, warnings } = checkInterfaces(fixtureConfig({ interfaceExt: 'eht0', interfaceInt: 'eth1' }), dir());
    expect(warnings).toEqual([]);
    expect(errors).toEqual([
      {
        path: 'global.interface_ext',
        message:
          "no interface 'eht0' on this host (did you mean 'eth0'?): knock-port's rules would match no traffic, leaving the protected ports as open as the host's other rules leave them. Fix the name (ip link lists the interfaces); for an interface that comes later (ppp, wg) write 'eht0?' or a wildcard such as ppp+",
      },
    ]);
  });

  it("lists the host's interfaces when none is close, never lo", () => {
    const { errors } = checkInterfaces(fixtureConfig({ interfaceExt: 'uplink', interfaceInt: 'eth1' }), dir());
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/^no interface 'uplink' on this host \(this host's interfaces: eth0, eth1, wlan0\)/)]);
  });

  it('refuses a per-app name at its key, and a forwarded LAN side with its own consequence', () => {
    const config = withAppOverride(fixtureConfig({ interfaceExt: 'eth0', interfaceInt: 'lan9' }), 'ssh', 'wg0');
    expect(checkInterfaces(config, dir()).errors).toEqual([
      { path: 'ssh.interface_ext', message: expect.stringMatching(/^no interface 'wg0' on this host .*write 'wg0\?'/) },
      {
        path: 'global.interface_int',
        message: expect.stringMatching(/^no interface 'lan9' on this host .*: forwarded apps could not reach their LAN hosts\./),
      },
    ]);
  });

  it('requireInterfaces throws a ConfigError for the config file, listing every missing exact name', () => {
    const config = { ...fixtureConfig({ interfaceExt: 'eht0', interfaceInt: 'eth1' }), source: '/etc/knock-port/config.yaml' };
    expect(() => requireInterfaces(config, dir())).toThrow(ConfigError);
    expect(() => requireInterfaces(config, dir())).toThrow(
      /^invalid config \/etc\/knock-port\/config\.yaml \(1 problem\):\n {2}\/etc\/knock-port\/config\.yaml: global\.interface_ext: no interface 'eht0'/,
    );
    expect(requireInterfaces({ ...fixtureConfig({ interfaceExt: 'ppp+', interfaceInt: 'eth1' }), source: config.source }, dir())).toEqual([
      expect.stringMatching(/^gate matches no interface: interface_ext 'ppp\+'/),
    ]);
  });

  it('suggests by edit distance, closest first, at most three', () => {
    expect(closestInterfaces('eht0', ['lo', 'eth0', 'eth1', 'wlan0'])).toEqual(['eth0']);
    expect(closestInterfaces('eth2', ['lo', 'eth1', 'eth0', 'wlan0'])).toEqual(['eth0', 'eth1']);
    expect(closestInterfaces('enp3s0', ['lo', 'enp2s0', 'enp3s1', 'enp4s0', 'enp5s0', 'wg0'])).toEqual(['enp2s0', 'enp3s1', 'enp4s0']);
    expect(closestInterfaces('wg0?', ['lo', 'wg1'])).toEqual(['wg1']);
    expect(closestInterfaces('xyz', ['lo', 'eth0'])).toEqual([]);
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
