/**
 * No kernel budget is keyed on a source address before the cookie proves it, and what a step-1
 * segment spends never depends on its payload: one budget for every source, spent by every SYN
 * and data segment before the prefilter looks at the path.
 */
import { describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import { fixtureConfig } from './fixture.js';

function render(type: 'nftables' | 'iptables' | 'vyos', step1RatePerSecond = 20_000): string {
  const config = fixtureConfig();
  return createFirewall({ ...config, global: { ...config.global, step1RatePerSecond } }, { type }).render('nfqueue');
}

const lines = (text: string, pattern: RegExp): string[] => text.split('\n').filter((l) => pattern.test(l));

describe('the kernel step-1 budget', () => {
  it.each(['nftables', 'vyos'] as const)('%s: one limit for all sources, spent before the prefilter, no per-source meter', (type) => {
    const text = render(type, 1234);
    expect(text).not.toMatch(/saddr (& \S+ )?limit|update @|meter|dynamic/);
    expect(lines(text, /step1_budget limit/)).toEqual(['add rule inet knockport step1_budget limit rate over 1234/second burst 2468 packets drop']);
    const step1 = lines(text, /add rule inet knockport step1 /);
    const firstBudget = step1.findIndex((l) => l.includes('jump step1_budget'));
    const firstPrefilter = step1.findIndex((l) => l.includes('@ih,0,128'));
    expect(step1.filter((l) => l.includes('jump step1_budget'))).toHaveLength(2);
    expect(firstBudget).toBeGreaterThanOrEqual(0);
    expect(firstBudget).toBeLessThan(firstPrefilter);
    // The budget is the last word before the capture: the capture chain limits nothing per source.
    expect(lines(text, /add rule inet knockport step1_capture/).every((l) => !/limit|update/.test(l))).toBe(true);
  });

  it('iptables: one hashlimit keyed by destination port, spent before the prefilter, in both families', () => {
    const text = render('iptables', 1234);
    const limits = lines(text, /-m hashlimit/);
    expect(limits).toHaveLength(2);
    for (const rule of limits) {
      expect(rule).toMatch(
        /^-A KNOCKPORT-BUDGET -m hashlimit --hashlimit-above 1234\/sec --hashlimit-burst 2468 --hashlimit-mode dstport --hashlimit-name kp-step1-[0-9a-f]{6} -j DROP$/,
      );
      expect(rule).not.toMatch(/srcip|srcmask/);
    }
    for (const family of text.split('# ip6tables-restore')) {
      const step1 = lines(family, /^-A KNOCKPORT-STEP1 /);
      const firstBudget = step1.findIndex((l) => l.endsWith('-j KNOCKPORT-BUDGET'));
      expect(firstBudget).toBe(0);
      expect(step1.filter((l) => l.endsWith('-j KNOCKPORT-BUDGET'))).toHaveLength(2);
    }
  });

  it('iptables: the highest rate the config accepts renders a burst iptables takes (at most 1,000,000)', () => {
    const limits = lines(render('iptables', 1_000_000), /-m hashlimit/);
    expect(limits).toHaveLength(2);
    for (const rule of limits) expect(rule).toContain('--hashlimit-above 1000000/sec --hashlimit-burst 1000000 ');
  });

  it('names the iptables table after its settings, so a changed rate takes effect (the kernel keeps a name first settings)', () => {
    const name = (text: string) => /--hashlimit-name (\S+)/.exec(text)?.[1];
    expect(name(render('iptables', 1000))).not.toBe(name(render('iptables', 2000)));
    expect(name(render('iptables', 1000))!.length).toBeLessThanOrEqual(15);
  });
});

describe('the grant mark', () => {
  it.each(['nftables', 'vyos'] as const)('%s: set only on packets addressed to this host; established needs it; DNAT only to this host', (type) => {
    const text = render(type);
    const marks = lines(text, /ct mark set/);
    expect(marks.length).toBeGreaterThan(0);
    for (const rule of marks) expect(rule).toContain('fib daddr type local');
    for (const rule of lines(text, /ct state established/)) expect(rule).toContain('ct mark & 0x10000000 == 0x10000000');
    for (const rule of lines(text, / dnat (ip6? )?to /)) expect(rule).toContain('fib daddr type local');
  });

  it('iptables: the same, with addrtype and connmark', () => {
    const text = render('iptables');
    const marks = lines(text, /CONNMARK --set-mark/);
    expect(marks.length).toBeGreaterThan(0);
    for (const rule of marks) expect(rule).toContain('-m addrtype --dst-type LOCAL');
    for (const rule of lines(text, /--ctstate RELATED,ESTABLISHED/)) expect(rule).toContain('-m connmark --mark 0x10000000/0x10000000');
    for (const rule of lines(text, /-j DNAT/)) expect(rule).toContain('-m addrtype --dst-type LOCAL');
  });
});
