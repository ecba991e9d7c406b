/**
 * Golden files of every ruleset knock-port installs. Regenerate after an intended change
 * with `KNOCKPORT_UPDATE_GOLDEN=1 npx vitest run test/unit/firewall`, then review the diff.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { CaptureKind } from '../../../src/shared/kinds.js';
import type { FirewallType } from '../../../src/config/types.js';
import { fixtureConfig, proxyFrontConfig } from './fixture.js';

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden');
const update = process.env.KNOCKPORT_UPDATE_GOLDEN === '1';

function matchGolden(name: string, actual: string): void {
  const file = join(goldenDir, name);
  if (update || !existsSync(file)) writeFileSync(file, actual);
  expect(actual).toBe(readFileSync(file, 'utf8'));
}

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
