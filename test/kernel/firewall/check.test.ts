/**
 * Every generated ruleset passes the tool's own check in a fresh namespace: `nft -c`
 * (which validates against the kernel) and `iptables-restore --test`. The one exception
 * is nft's `queue` statement on kernels built without CONFIG_NFT_QUEUE: there the check
 * must fail on exactly that statement, and capabilities() must say so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import { IptablesRuleset } from '../../../src/firewall/iptables/ruleset.js';
import { iptablesBinary } from '../../../src/firewall/iptables/backend.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { Netns, announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { fixtureConfig, proxyFrontConfig } from '../../unit/firewall/fixture.js';

const skip = announceSkip('test/kernel/firewall/check.test.ts', kernelSkipReason(['ip', 'nft', 'ipset', 'iptables-nft-restore', 'iptables-legacy-restore']));

describe.skipIf(skip)("generated rulesets pass the tools' own checks", () => {
  let ns: Netns;
  beforeAll(() => {
    ns = Netns.create('chk');
  });
  afterAll(() => ns?.destroy());

  for (const type of ['nftables', 'vyos'] as const) {
    for (const ipv6 of [true, false]) {
      it(`nft -c accepts the ${type} ruleset with nflog (ipv6 ${ipv6 ? 'on' : 'off'})`, () => {
        const script = createFirewall(fixtureConfig({ ipv6 }), { type }).render('nflog');
        const r = ns.tryExec('nft', ['-c', '-f', '-'], script);
        expect(r.err).toBe('');
      });
    }

    it(`nft -c on the ${type} nfqueue ruleset agrees with capabilities()`, async () => {
      const fw = createFirewall(fixtureConfig(), { type, netns: ns.name });
      const script = fw.render('nfqueue');
      const r = ns.tryExec('nft', ['-c', '-f', '-'], script);
      const caps = await fw.capabilities();
      expect(caps.nfqueue).toBe(r.ok);
      if (!r.ok) {
        // Only the queue statement is refused (CONFIG_NFT_QUEUE unset), and nflog is the way out.
        expect(r.err).toMatch(/queue num/);
        expect(r.err.match(/Error:/g)?.length).toBe(script.match(/ queue num /g)?.length);
        expect(caps.nflog).toBe(true);
        expect(caps.notes.join(' ')).toMatch(/cannot queue/);
      }
    });
  }

  for (const interfaceExt of ['eth0', 'any']) {
    it(`nft -c and iptables-restore --test accept the rules with a proxy in front of step 2 (interface ${interfaceExt})`, () => {
      const config = proxyFrontConfig({ interfaceExt });
      for (const type of ['nftables', 'vyos'] as const) {
        expect(ns.tryExec('nft', ['-c', '-f', '-'], createFirewall(config, { type }).render('nflog')).err).toBe('');
      }
      const ruleset = new IptablesRuleset(planFirewall(config), 'knockport');
      ns.exec('ipset', ['restore', '-exist'], ruleset.ipsetScript());
      for (const variant of ['nft', 'legacy'] as const) {
        for (const family of [4, 6] as const) {
          const r = ns.tryExec(iptablesBinary(variant, family, '-restore'), ['--test', '--noflush'], ruleset.restoreScript(family, 'nfqueue'));
          expect(r.err).toBe('');
        }
      }
    });
  }

  for (const variant of ['nft', 'legacy'] as const) {
    for (const capture of ['nfqueue', 'nflog'] as const) {
      it(`iptables-${variant}-restore --test accepts the ${capture} rules for both families`, () => {
        const ruleset = new IptablesRuleset(planFirewall(fixtureConfig()), 'knockport');
        // The set match needs the sets to exist, even in test mode.
        ns.exec('ipset', ['restore', '-exist'], ruleset.ipsetScript());
        for (const family of [4, 6] as const) {
          const r = ns.tryExec(iptablesBinary(variant, family, '-restore'), ['--test', '--noflush'], ruleset.restoreScript(family, capture));
          expect(r.err).toBe('');
        }
      });
    }
  }
});
