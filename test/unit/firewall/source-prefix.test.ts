/** The kernel's per-source meters count source prefixes, and the iptables step-1 table is sized against floods. */
import { describe, expect, it } from 'vitest';
import type { GlobalConfig } from '../../../src/config/types.js';
import { createFirewall } from '../../../src/firewall/index.js';
import { prefixMask } from '../../../src/firewall/nft-ruleset.js';
import { fixtureConfig } from './fixture.js';

function render(type: 'nftables' | 'iptables', global: Partial<GlobalConfig> = {}): string {
  const config = fixtureConfig();
  return createFirewall({ ...config, global: { ...config.global, ...global } }, { type }).render('nfqueue');
}

const lines = (text: string, pattern: RegExp): string[] => text.split('\n').filter((l) => pattern.test(l));

describe('nft meters key on the source prefix', () => {
  it('writes netmasks as nft does', () => {
    expect(prefixMask(6, 64)).toBe('ffff:ffff:ffff:ffff::');
    expect(prefixMask(6, 56)).toBe('ffff:ffff:ffff:ff00::');
    expect(prefixMask(6, 57)).toBe('ffff:ffff:ffff:ff80::');
    expect(prefixMask(4, 24)).toBe('255.255.255.0');
    expect(prefixMask(4, 20)).toBe('255.255.240.0');
  });

  it('masks IPv6 sources to /64 by default and leaves IPv4 per address', () => {
    const rules = lines(render('nftables'), /update @(step1|step2)_rate_/);
    expect(rules).toHaveLength(4);
    for (const rule of rules.filter((r) => r.includes('_rate_v6'))) expect(rule).toContain('{ ip6 saddr & ffff:ffff:ffff:ffff:: limit rate over');
    for (const rule of rules.filter((r) => r.includes('_rate_v4'))) expect(rule).toContain('{ ip saddr limit rate over');
  });

  it('follows source_prefix_v4 and source_prefix_v6', () => {
    const rules = lines(render('nftables', { sourcePrefixV4: 24, sourcePrefixV6: 128 }), /update @(step1|step2)_rate_/);
    for (const rule of rules.filter((r) => r.includes('_rate_v4'))) expect(rule).toContain('{ ip saddr & 255.255.255.0 limit rate over');
    for (const rule of rules.filter((r) => r.includes('_rate_v6'))) expect(rule).toContain('{ ip6 saddr limit rate over');
  });
});

describe('iptables hashlimit', () => {
  const hashlimits = (text: string) => lines(text, /-m hashlimit/);

  it('counts IPv6 sources per /64 (--hashlimit-srcmask) and IPv4 per address by default', () => {
    const text = render('iptables');
    const [v4, v6] = text.split('# ip6tables-restore');
    for (const rule of hashlimits(v4!)) expect(rule).not.toContain('--hashlimit-srcmask');
    expect(hashlimits(v6!).length).toBe(2);
    for (const rule of hashlimits(v6!)) expect(rule).toContain('--hashlimit-srcmask 64');
    const [v4b] = render('iptables', { sourcePrefixV4: 24 }).split('# ip6tables-restore');
    for (const rule of hashlimits(v4b!)) expect(rule).toContain('--hashlimit-srcmask 24');
  });

  it('sizes the step-1 table so a random-source flood at the daemon capacity cannot fill it', () => {
    const step1 = hashlimits(render('iptables')).filter((r) => r.startsWith('-A KNOCKPORT-CAPTURE'));
    expect(step1).toHaveLength(2);
    for (const rule of step1) {
      const option = (name: string) => Number(new RegExp(`--hashlimit-${name} (\\d+)`).exec(rule)?.[1]);
      const lifetimeSeconds = (option('htable-expire') + option('htable-gcinterval')) / 1000;
      // The daemon inspects about 150,000 packets a second (bench/RESULTS.md); keep well above that.
      expect(option('htable-max') / lifetimeSeconds).toBeGreaterThan(300_000);
      expect(option('htable-max')).toBeLessThanOrEqual(1_048_576); // the kernel's limit
      // An idle source is not forgotten before its bucket would have refilled halfway (rate 20/s, burst 40).
      expect(option('htable-expire')).toBeGreaterThanOrEqual(1000);
    }
  });

  it("names each table after its settings, so a changed setting takes effect (the kernel keeps a name's first settings)", () => {
    const names = (global: Partial<GlobalConfig> = {}) => hashlimits(render('iptables', global)).map((r) => /--hashlimit-name (\S+)/.exec(r)![1]!);
    const base = names();
    for (const name of base) expect(name.length).toBeLessThanOrEqual(15);
    expect(names()).toEqual(base);
    expect(names({ synRatePerSecond: 30 })).not.toEqual(base);
    expect(names({ sourcePrefixV6: 56 })).not.toEqual(base);
    expect(new Set(base).size).toBe(base.length);
  });
});
