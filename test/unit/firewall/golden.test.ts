/**
 * Golden files of every ruleset knock-port installs; a missing one fails (golden-files.ts says
 * how to regenerate them after an intended change).
 */
import { describe, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { CaptureKind } from '../../../src/shared/kinds.js';
import type { FirewallType } from '../../../src/config/types.js';
import { matchGolden } from './golden-files.js';
import { fixtureConfig, proxyFrontConfig } from './fixture.js';

describe('generated rulesets match the reviewed golden files', () => {
  for (const type of ['nftables', 'iptables', 'vyos'] as FirewallType[]) {
    for (const capture of ['nflog', 'nfqueue'] as CaptureKind[]) {
      it(`${type} with ${capture}`, () => {
        matchGolden(`${type}-${capture}.txt`, createFirewall(fixtureConfig(), { type }).render(capture));
      });
    }
    it(`${type} with IPv6 grants off still drops IPv6 on every protected port`, () => {
      matchGolden(`${type}-ipv4-only.txt`, createFirewall(fixtureConfig({ ipv6: false }), { type }).render('nflog'));
    });
    it(`${type} with a proxy in front of step 2 gates the public port and drops knock-port's own on the external interface`, () => {
      matchGolden(`${type}-proxy-front.txt`, createFirewall(proxyFrontConfig(), { type }).render('nflog'));
    });
  }
});
