/**
 * `gate_mode: report`: validated in the config, said by check, and in every backend's rules: the
 * apps' ports counted and logged where the gate would drop, nothing dropped there, step 1 and the
 * HTTPS port as in enforce mode; the kernel's counters read back per port.
 */
import { describe, expect, it } from 'vitest';
import { summarizeConfig } from '../../../src/config/summary.js';
import { createFirewall } from '../../../src/firewall/index.js';
import { parseSavedCounters } from '../../../src/firewall/iptables/backend.js';
import { parseRuleCounters } from '../../../src/firewall/nftables/backend.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { sumWouldDrop } from '../../../src/firewall/report-mode.js';
import { expectRefusedOnce, load, VALID } from '../config/helpers.js';

const FORWARDED = `rdp:
  port: 3389
  destination: 192.168.1.10
  access_key_http: [7c1e9a3f5d0b2846]
  access_key_https: [1f5b9d3a7e0c4862]
  duration: 60
  step2_https_duration: 5
`;

const withGate = (line: string) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n${line}`) + FORWARDED;

describe('gate_mode in the config', () => {
  it('defaults to enforce, with no warning', () => {
    const config = load(withGate(''));
    expect(config.global.gateMode).toBe('enforce');
    expect(config.warnings ?? []).toEqual([]);
    expect(summarizeConfig(config)).toContain('gate: enforce;');
  });

  it('report: check says the gate protects nothing, as a warning naming the key', () => {
    const config = load(withGate('  gate_mode: report\n'));
    expect(config.global.gateMode).toBe('report');
    expect(config.warnings).toEqual([expect.stringMatching(/:\d+:\d+: global\.gate_mode: report: the gate protects nothing/)]);
    expect(summarizeConfig(config)).toContain("gate: report (drops nothing at the apps' ports");
  });

  it('refuses any other value', () => {
    expectRefusedOnce(withGate('  gate_mode: audit\n'), 'global.gate_mode', 'gate_mode', /enforce.*report|report.*enforce/);
  });
});

describe('report-mode rules', () => {
  const enforce = load(withGate(''));
  const report = load(withGate('  gate_mode: report\n'));

  it('nftables (and VyOS, the same table): counted and logged in the mark chain, nothing dropped at the apps, every source forwarded', () => {
    for (const type of ['nftables', 'vyos'] as const) {
      const rules = createFirewall(report, { type }).render('nflog');
      const unmarked =
        'fib daddr type local ct mark & 0x10000000 != 0x10000000 counter limit rate 10/minute burst 5 packets log prefix "knock-port would drop: "';
      expect(rules).toContain(`prerouting_mark iifname "eth0" udp dport 1194 ${unmarked} level warn comment "knock-port would drop udp/1194"`);
      expect(rules).toContain(`prerouting_mark iifname "eth0" tcp dport 3389 ${unmarked} level warn comment "knock-port would drop tcp/3389"`);
      expect(rules).toContain('add rule inet knockport service accept');
      expect(rules).not.toContain('add rule inet knockport service drop');
      expect(rules).not.toMatch(/input_filter .*dport 3389 drop/);
      expect(rules).toContain('prerouting_nat iifname "eth0" tcp dport 3389 fib daddr type local dnat ip to 192.168.1.10:3389');
      expect(rules).toMatch(/forward_filter .*ip daddr 192\.168\.1\.10 tcp dport 3389 counter .*comment "knock-port would drop tcp\/3389"/);
      // Step 1 and step 2 are the same as in enforce mode.
      const gateOf = (text: string) => text.split('\n').filter((line) => / (step1|step1_budget|step1_capture|step2) /.test(line));
      expect(gateOf(rules)).toEqual(gateOf(createFirewall(enforce, { type }).render('nflog')));
    }
  });

  it('iptables: a counting rule and a rate-limited LOG per app port, in both families, no DROP at the apps', () => {
    const rules = createFirewall(report, { type: 'iptables' }).render('nfqueue');
    const [v4, v6] = rules.split('# ip6tables-restore');
    for (const family of [v4!, v6!]) {
      expect(family).toContain(
        '-A KNOCKPORT-MARK -i eth0 -p udp --dport 1194 -m addrtype --dst-type LOCAL -m connmark ! --mark 0x10000000/0x10000000 -m comment --comment "knock-port would drop udp/1194"',
      );
      expect(family).toMatch(/-A KNOCKPORT-MARK .*--dport 1194 .* -m limit --limit 10\/min --limit-burst 5 -j LOG --log-prefix "knock-port would drop: "/);
      expect(family).toContain('-A KNOCKPORT-SERVICE -j ACCEPT');
      expect(family).not.toContain('-A KNOCKPORT-SERVICE -j DROP');
    }
    expect(v4).toContain('-A KNOCKPORT-PREROUTING -i eth0 -p tcp --dport 3389 -m addrtype --dst-type LOCAL -j DNAT --to-destination 192.168.1.10:3389');
    expect(v4).not.toMatch(/-A KNOCKPORT-INPUT .*--dport 3389 -j DROP/);
    expect(v4).not.toMatch(/-A KNOCKPORT-FORWARD .*-j DROP/);
  });

  it('enforce mode has none of it', () => {
    for (const type of ['nftables', 'iptables'] as const) expect(createFirewall(enforce, { type }).render('nflog')).not.toContain('would drop');
  });
});

describe('reading the counts back', () => {
  const plan = planFirewall(load(withGate('  gate_mode: report\n')));

  it('nft: each commented rule with its counter', () => {
    const listing = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { rule: { chain: 'prerouting_mark', expr: [{ match: {} }, { counter: { packets: 3, bytes: 180 } }], comment: 'knock-port would drop tcp/3389' } },
        { rule: { chain: 'prerouting_mark', expr: [{ mangle: {} }] } },
        { rule: { chain: 'forward_filter', expr: [{ counter: { packets: 2, bytes: 120 } }], comment: 'knock-port would drop tcp/3389' } },
      ],
    });
    expect(parseRuleCounters(listing)).toEqual([
      { comment: 'knock-port would drop tcp/3389', packets: 3 },
      { comment: 'knock-port would drop tcp/3389', packets: 2 },
    ]);
  });

  it('iptables-save -c: each commented rule with its packet count', () => {
    const saved = [
      '*mangle',
      '[12:720] -A KNOCKPORT-MARK -i eth0 -p udp -m udp --dport 1194 -m addrtype --dst-type LOCAL -m connmark ! --mark 0x10000000/0x10000000 -m comment --comment "knock-port would drop udp/1194"',
      '[12:720] -A KNOCKPORT-MARK -i eth0 -p udp -m udp --dport 1194 -m limit --limit 10/min -j LOG --log-prefix "knock-port would drop: "',
      'COMMIT',
    ].join('\n');
    expect(parseSavedCounters(saved)).toEqual([{ comment: 'knock-port would drop udp/1194', packets: 12 }]);
  });

  it('summed per protocol and port, every app port listed, other comments ignored', () => {
    const counted = [
      { comment: 'knock-port would drop udp/1194', packets: 12 },
      { comment: 'knock-port would drop udp/1194', packets: 1 },
      { comment: 'knock-port would drop tcp/3389', packets: 2 },
      { comment: 'knock-port step-1 prefilter', packets: 99 },
      { comment: 'knock-port would drop tcp/9999', packets: 5 },
    ];
    expect(sumWouldDrop(plan, counted)).toEqual([
      { protocol: 'udp', port: 1194, packets: 13 },
      { protocol: 'tcp', port: 3389, packets: 2 },
    ]);
  });
});
