/**
 * One interface syntax in the config, translated per backend: a wildcard written in the other
 * firewall's spelling would silently match no interface and leave the ports ungated.
 */
import { describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import {
  checkInterfaceName,
  interfaceMatches,
  interfaceScopeIssues,
  iptablesInterfaceName,
  mayBeAbsent,
  nftInterfaceName,
} from '../../../src/config/interface-name.js';
import { IptablesRuleset } from '../../../src/firewall/iptables/ruleset.js';
import { NftRuleset } from '../../../src/firewall/nftables/ruleset.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { fixtureConfig } from '../firewall/fixture.js';

describe('interface names in the config', () => {
  it.each([
    ['eth0', 'eth0'],
    ['ppp+', 'ppp*'],
    ['ppp*', 'ppp*'],
    ['eth0.100', 'eth0.100'],
    ['br-lan', 'br-lan'],
    ['enx00e04c6801a2', 'enx00e04c6801a2'],
    ['any', 'any'],
    ['+', 'any'],
    ['*', 'any'],
    ['wg0?', 'wg0?'],
    ['enx00e04c6801a2?', 'enx00e04c6801a2?'],
  ])('accepts %s as %s', (text, canonical) => {
    expect(checkInterfaceName(text)).toEqual({ name: canonical });
  });

  it.each([
    ['p*p0', /may only end the name/],
    ['ppp+0', /may only end the name/],
    ['pp+*', /may only end the name/],
    ['eth0:1', /address label, not an interface; name the interface itself \(e\.g\. eth0\)/],
    ['eth 0', /not an interface name/],
    ['eth/0', /not an interface name/],
    ['eth"0', /not an interface name/],
    ['..', /not an interface name/],
    ['enx00e04c6801a2b', /has 16 characters; Linux interface names have at most 15/],
    ['enx00e04c6801a2*', /at most 15, a trailing wildcard included/],
    ['ppp+?', /only an exact name takes a final \? \(e\.g\. wg0\?\); a wildcard such as ppp\+ may match no interface for a while without it/],
    ['any?', /only an exact name takes a final \?/],
    ['?', /only an exact name takes a final \?/],
    ['wg0??', /not an interface name: .*or in \? for an interface that may come later/],
  ])('refuses %s', (text, message) => {
    const result = checkInterfaceName(text);
    expect('error' in result ? result.error : 'accepted').toMatch(message);
  });
});

describe('translation per backend', () => {
  it.each([
    ['ppp+', 'ppp*', 'ppp+'],
    ['ppp*', 'ppp*', 'ppp+'],
    ['eth0', 'eth0', 'eth0'],
    ['wg0?', 'wg0', 'wg0'],
  ])('%s is %s for nft and %s for iptables', (name, nft, iptables) => {
    expect(nftInterfaceName(name)).toBe(nft);
    expect(iptablesInterfaceName(name)).toBe(iptables);
  });

  it('any matches every interface: no interface match at all', () => {
    for (const name of ['any', '', '+', '*']) {
      expect(nftInterfaceName(name)).toBeUndefined();
      expect(iptablesInterfaceName(name)).toBeUndefined();
    }
  });

  it('matches interfaces as the firewalls do', () => {
    expect(interfaceMatches('ppp*', 'ppp0')).toBe(true);
    expect(interfaceMatches('ppp+', 'ppp12')).toBe(true);
    expect(interfaceMatches('ppp*', 'eth0')).toBe(false);
    expect(interfaceMatches('eth0', 'eth0')).toBe(true);
    expect(interfaceMatches('eth0', 'eth01')).toBe(false);
    expect(interfaceMatches('any', 'lo')).toBe(true);
    expect(interfaceMatches('wg0?', 'wg0')).toBe(true);
    expect(interfaceMatches('wg0?', 'wg01')).toBe(false);
  });

  it('only wildcards and names ending in ? may match no interface for a while', () => {
    expect(['ppp*', 'wg0?', 'eth0', 'any'].map(mayBeAbsent)).toEqual([true, true, false, false]);
  });

  for (const written of ['ppp+', 'ppp*']) {
    it(`a config's ${written} becomes "ppp*" in every nft rule and ppp+ in every iptables rule`, () => {
      const config = fixtureConfig({ interfaceExt: written, interfaceInt: 'br+' });
      const nft = createFirewall(config, { type: 'nftables' }).render('nflog');
      expect(nft).toContain('iifname "ppp*"');
      expect(nft).toContain('oifname "br*"');
      expect(nft).not.toMatch(/ifname "[^"]*\+"/);
      const iptables = createFirewall(config, { type: 'iptables' }).render('nflog');
      expect(iptables).toContain('-i ppp+ ');
      expect(iptables).toContain('-o br+ ');
      expect(iptables).not.toMatch(/-[io] \S*\*/);
    });
  }
});

describe('only the external side is touched', () => {
  const config = fixtureConfig({ interfaceExt: 'wan0', interfaceInt: 'lan0' });

  it('every nft rule that matches the step-1 port names the external interface', () => {
    const script = new NftRuleset(planFirewall(config), 'knockport').installScript('nflog');
    const step1Rules = script.split('\n').filter((line) => /^add rule .* tcp [sd]port 80 /.test(line));
    expect(step1Rules.length).toBeGreaterThanOrEqual(4);
    for (const rule of step1Rules) expect(rule).toMatch(/[io]ifname "wan0" /);
    expect(script).toContain('output_raw oifname "wan0" tcp sport 80 notrack');
    expect(script).toMatch(/output_filter oifname "wan0" tcp sport 80 meta mark != 0x00004b50 drop/);
  });

  it('every iptables rule that matches the step-1 port names the external interface', () => {
    const ruleset = new IptablesRuleset(planFirewall(config), 'knockport');
    for (const family of [4, 6] as const) {
      const rules = ruleset
        .restoreScript(family, 'nfqueue')
        .split('\n')
        .filter((line) => /--[sd]port 80 /.test(line));
      expect(rules.length).toBeGreaterThanOrEqual(4);
      for (const rule of rules) expect(rule).toMatch(/ -[io] wan0 /);
    }
  });

  it('with interface_ext any, the output rules match every interface (documented)', () => {
    const script = new NftRuleset(planFirewall(fixtureConfig({ interfaceExt: 'any' })), 'knockport').installScript('nflog');
    expect(script).toContain('output_raw tcp sport 80 notrack');
  });
});

describe('interface_ext that would also gate the LAN', () => {
  const app = (name: string, keys: { interface_ext?: string; interface_int?: string }) => ({ name, app: keys });

  it('refuses interface_ext any (every interface), globally and per app, with the reason', () => {
    const name = 'any';
    expect(interfaceScopeIssues({ interface_ext: name }, [])).toEqual([
      {
        path: ['global', 'interface_ext'],
        message: expect.stringMatching(/^matches every interface .*the gate would also catch LAN traffic and this host's own/),
      },
    ]);
    expect(interfaceScopeIssues({ interface_ext: 'eth0' }, [app('ssh', { interface_ext: name })]).map((i) => i.path)).toEqual([['ssh', 'interface_ext']]);
  });

  it('refuses a wildcard that also matches the LAN interface, naming it', () => {
    expect(interfaceScopeIssues({ interface_ext: 'eth*', interface_int: 'eth1' }, [])).toEqual([
      {
        path: ['global', 'interface_ext'],
        message:
          "'eth*' also matches the LAN interface 'eth1' (interface_int): the gate would catch LAN traffic too; make the wildcard narrower or name the external interface",
      },
    ]);
    // Wildcard against wildcard, an optional LAN name, and an app's own LAN side.
    expect(interfaceScopeIssues({ interface_ext: 'br*', interface_int: 'br-lan*' }, [])).toHaveLength(1);
    expect(interfaceScopeIssues({ interface_ext: 'wg*', interface_int: 'wg1?' }, [])).toHaveLength(1);
    expect(interfaceScopeIssues({ interface_ext: 'ppp*' }, [app('nas', { interface_int: 'ppp9' })]).map((i) => i.path)).toEqual([['global', 'interface_ext']]);
  });

  it('accepts wildcards apart from the LAN, exact names, a LAN side equal to the external one, and a LAN side of any', () => {
    expect(interfaceScopeIssues({ interface_ext: 'ppp*', interface_int: 'eth1' }, [app('ssh', { interface_ext: 'wg*' })])).toEqual([]);
    expect(interfaceScopeIssues({ interface_ext: 'eth0', interface_int: 'eth1' }, [app('ssh', { interface_ext: 'eth1' })])).toEqual([]);
    expect(interfaceScopeIssues({ interface_ext: 'ppp*', interface_int: 'ppp*' }, [])).toEqual([]);
    expect(interfaceScopeIssues({ interface_ext: 'ppp*' }, [app('vpn', { interface_ext: 'ppp*', interface_int: 'ppp*' })])).toEqual([]);
    expect(interfaceScopeIssues({ interface_ext: 'ppp*', interface_int: 'any' }, [])).toEqual([]);
  });
});
