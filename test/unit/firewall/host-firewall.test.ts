import { describe, expect, it } from 'vitest';
import {
  HostFirewall,
  hostRules,
  iptablesRulesTouchingCtMark,
  iptablesSaveTable,
  isIptablesNftTable,
  nftCtMarkWriteTouches,
  nftRulesTouchingCtMark,
  parseIptablesSave,
  parseNftBaseChains,
  parseNftChainRules,
} from '../../../src/firewall/host-firewall.js';
import type { CommandRunner } from '../../../src/firewall/command.js';
import type { NftRunner } from '../../../src/firewall/nft-runner.js';
import { planFirewall } from '../../../src/firewall/plan.js';
import { fixtureConfig } from './fixture.js';

const plan = planFirewall(fixtureConfig());

const CHAINS = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6' } },
    { chain: { family: 'inet', table: 'filter', name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
    { chain: { family: 'inet', table: 'filter', name: 'helper' } },
    { chain: { family: 'inet', table: 'knockport', name: 'input_filter', type: 'filter', hook: 'input', prio: -10, policy: 'accept' } },
    { chain: { family: 'ip', table: 'filter', name: 'INPUT', type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
    { chain: { family: 'ip', table: 'nat', name: 'POSTROUTING', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
    { chain: { family: 'inet', table: 'filter', name: 'pre', type: 'filter', hook: 'prerouting', prio: 0, policy: 'drop' } },
    { chain: { family: 'bridge', table: 'br', name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
  ],
});

const rulesJson = (...rules: Array<{ comment?: string; expr: unknown[] }>) =>
  JSON.stringify({ nftables: rules.map((r, i) => ({ rule: { family: 'inet', table: 'filter', chain: 'input', handle: 10 + i, ...r } })) });

describe('host firewall: reading the host ruleset', () => {
  it('keeps only foreign filter base chains on input, forward and output (not its own table, not iptables-nft, not bridge)', () => {
    const chains = parseNftBaseChains(CHAINS, (family, table) => family === 'inet' && table === 'knockport');
    expect(chains.map((c) => `${c.family} ${c.table} ${c.name}`)).toEqual(['inet filter input']);
    expect(isIptablesNftTable('ip', 'filter', 'INPUT')).toBe(true);
    expect(isIptablesNftTable('inet', 'filter', 'INPUT')).toBe(false);
    expect(isIptablesNftTable('ip', 'filter', 'input')).toBe(false);
  });

  it('a chain can drop when a rule drops, rejects or jumps; its own rules are recognized by comment', () => {
    const accepting = parseNftChainRules(rulesJson({ expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'lo' } }, { accept: null }] }));
    expect(accepting.canDrop).toBe(false);
    expect(parseNftChainRules(rulesJson({ expr: [{ reject: null }] })).canDrop).toBe(true);
    expect(parseNftChainRules(rulesJson({ expr: [{ jump: { target: 'zones' } }] })).canDrop).toBe(true);
    const withOurs = parseNftChainRules(
      rulesJson({ comment: 'knock-port: granted connections 0x10000000', expr: [{ accept: null }] }, { expr: [{ drop: null }] }),
    );
    expect(withOurs.ours).toEqual([{ comment: 'knock-port: granted connections 0x10000000', handle: 10 }]);
    expect(withOurs.canDrop).toBe(true);
  });

  it('reads iptables-save: policies, drops anywhere in the table (but in its own chains), its own rules by comment', () => {
    const saved = [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':KNOCKPORT-INPUT - [0:0]',
      '-A INPUT -m connmark --mark 0x10000000/0x10000000 -m comment --comment "knock-port: granted connections 0x10000000" -j ACCEPT',
      '-A INPUT -j KNOCKPORT-INPUT',
      '-A KNOCKPORT-INPUT -p tcp --dport 2222 -j DROP',
      'COMMIT',
    ].join('\n');
    const chains = parseIptablesSave(saved, 'KNOCKPORT-');
    expect(chains.map((c) => [c.chain, c.policy, c.canDrop])).toEqual([
      ['INPUT', 'accept', false],
      ['FORWARD', 'drop', true],
      ['OUTPUT', 'accept', false],
    ]);
    expect(chains[0]!.ours).toEqual([{ comment: 'knock-port: granted connections 0x10000000' }]);
    // Without its own prefix the KNOCKPORT chain's DROP counts: every chain can drop.
    expect(parseIptablesSave(saved, '').every((c) => c.canDrop)).toBe(true);
  });

  it('recognizes an operator rule equivalent to its own, in either syntax', () => {
    const [granted] = hostRules(plan, 'input');
    const nftExpr = JSON.stringify([{ match: { op: '==', left: { '&': [{ ct: { key: 'mark' } }, 0x10000000] }, right: 0x10000000 } }, { accept: null }]);
    expect(granted!.equivalent(nftExpr)).toBe(true);
    expect(granted!.equivalent(nftExpr.replace('accept', 'drop'))).toBe(false);
    expect(granted!.equivalent('-m connmark --mark 0x10000000/0x10000000 -j ACCEPT')).toBe(true);
    expect(granted!.equivalent('-m connmark --mark 0x1/0x1 -j ACCEPT')).toBe(false);
    const replies = hostRules(plan, 'output')[1]!;
    expect(replies.equivalent('-p tcp --sport 80 -m mark --mark 0x4b50 -j ACCEPT')).toBe(true);
    expect(replies.equivalent('-p tcp --sport 80 -m mark --mark 0x4b500 -j ACCEPT')).toBe(false);
  });

  it('compares values, not text: a rule that merely contains the numbers is not equivalent', () => {
    const [granted] = hostRules({ ...plan, grantMark: 0x1 }, 'input');
    const ctMark = (left: unknown, right: unknown) => JSON.stringify([{ match: { op: '==', left, right } }, { accept: null }]);
    // `ct mark 0x10 accept`: text holding the ct mark key and the digit 1, yet it accepts other connections.
    expect(granted!.equivalent(ctMark({ ct: { key: 'mark' } }, 0x10))).toBe(false);
    expect(granted!.equivalent(ctMark({ '&': [{ ct: { key: 'mark' } }, 0x11] }, 0x11))).toBe(false);
    expect(granted!.equivalent(ctMark({ '&': [{ ct: { key: 'mark' } }, 0x1] }, 0x1))).toBe(true);
    // An extra test narrows the rule: it no longer accepts every granted connection.
    const narrowed = JSON.stringify([
      { match: { op: '==', left: { '&': [{ ct: { key: 'mark' } }, 0x1] }, right: 0x1 } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } },
      { accept: null },
    ]);
    expect(granted!.equivalent(narrowed)).toBe(false);
    expect(granted!.equivalent('-m connmark --mark 0x10/0x10 -j ACCEPT')).toBe(false);
    expect(granted!.equivalent('-m connmark --mark 0x1/0x1 -j ACCEPT')).toBe(true);
    expect(granted!.equivalent('-m connmark --mark 0x1/0x1 -p tcp --dport 22 -j ACCEPT')).toBe(false);
    expect(granted!.equivalent('-m mark --mark 0x1/0x1 -j ACCEPT')).toBe(false);
    const replies = hostRules(plan, 'output')[1]!;
    expect(replies.equivalent('-p tcp --sport 80 -m connmark --mark 0x4b50 -j ACCEPT')).toBe(false);
    expect(replies.equivalent('-p tcp --sport 8080 -m mark --mark 0x4b50 -j ACCEPT')).toBe(false);
  });

  it('finds host rules that write the grant bit of the conntrack mark, in either syntax', () => {
    const bit = 0x10000000;
    const or = (c: number) => ({ '|': [{ ct: { key: 'mark' } }, c] });
    expect(nftCtMarkWriteTouches(or(0x100), bit)).toBe(false);
    expect(nftCtMarkWriteTouches(or(0x10000100), bit)).toBe(true);
    expect(nftCtMarkWriteTouches({ '|': [{ '&': [{ ct: { key: 'mark' } }, 0xffff00ff] }, 0x100] }, bit)).toBe(false);
    expect(nftCtMarkWriteTouches({ '|': [{ '&': [{ ct: { key: 'mark' } }, 0x0000ffff] }, 0x100] }, bit)).toBe(true);
    expect(nftCtMarkWriteTouches({ meta: { key: 'mark' } }, bit)).toBe(true);
    expect(nftCtMarkWriteTouches(5, bit)).toBe(true);
    const listing = rulesJson({ expr: [{ mangle: { key: { ct: { key: 'mark' } }, value: { meta: { key: 'mark' } } } }] });
    expect(nftRulesTouchingCtMark(listing, bit)).toEqual(['handle 10']);
    const saved = [
      '*mangle',
      '-A PREROUTING -j CONNMARK --set-xmark 0x100/0xff00',
      '-A PREROUTING -j CONNMARK --set-xmark 0x1/0xffffffff',
      '-A KNOCKPORT-MARK -j CONNMARK --set-xmark 0x10000000/0x10000000',
      '-A POSTROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff',
      'COMMIT',
      '*filter',
      ':INPUT DROP [0:0]',
      'COMMIT',
    ].join('\n');
    expect(iptablesRulesTouchingCtMark(saved, bit, 'KNOCKPORT-')).toEqual(['mangle PREROUTING', 'mangle POSTROUTING']);
    expect(iptablesSaveTable(saved, 'filter')).toBe('*filter\n:INPUT DROP [0:0]');
  });
});

describe('host firewall: what it does', () => {
  /** A host with one nft chain (policy drop) and nothing else, recording what is run. */
  function fakeHost(mode: 'insert' | 'report', chainRules = rulesJson({ expr: [{ accept: null }] })) {
    const ran: string[] = [];
    const nft: NftRunner = {
      kind: 'cli',
      run(script) {
        ran.push(script.trim());
        if (script === 'list chains') return CHAINS;
        if (script.startsWith('list chain')) return chainRules;
        return '';
      },
    };
    const commands: CommandRunner = {
      run(command, args) {
        ran.push(`${command} ${args.join(' ')}`);
        return '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
      },
    };
    const host = new HostFirewall({
      plan,
      mode,
      nft,
      commands,
      isOwnTable: (family, table) => family === 'inet' && table === 'knockport',
      ownIptablesPrefix: '',
      readProc: () => '',
    });
    return { host, ran };
  }

  it('insert: puts the accept rule at the top of a chain that can drop, once, and says where', async () => {
    const { host, ran } = fakeHost('insert');
    const report = await host.reconcile();
    expect(report.inserted).toEqual(['nftables chain inet filter input (hook input, policy drop)']);
    expect(report.problems).toEqual([]);
    expect(ran).toContain('insert rule inet filter input ct mark & 0x10000000 == 0x10000000 accept comment "knock-port: granted connections 0x10000000"');
    // The iptables-nft filter table exists: it is read through iptables-nft-save, never edited with nft.
    expect(ran).toContain('iptables-nft-save ');
    expect(ran.some((l) => l.includes('insert rule ip filter'))).toBe(false);
  });

  it('insert: a rule already there (by comment) is not inserted again; a stale one is replaced', async () => {
    const present = fakeHost('insert', rulesJson({ comment: 'knock-port: granted connections 0x10000000', expr: [{ accept: null }] }));
    expect((await present.host.reconcile()).inserted).toEqual([]);
    const stale = fakeHost('insert', rulesJson({ comment: 'knock-port: granted connections 0x00000001', expr: [{ accept: null }] }));
    expect((await stale.host.reconcile()).inserted).toHaveLength(1);
    expect(stale.ran).toContain('delete rule inet filter input handle 10');
  });

  it('report: changes nothing and names the chain and the rule to add', async () => {
    const { host, ran } = fakeHost('report');
    const report = await host.reconcile();
    expect(ran.some((l) => l.startsWith('insert') || l.startsWith('delete'))).toBe(false);
    expect(report.problems).toEqual([
      "nftables chain inet filter input (hook input, policy drop) can drop connections knock-port grants: add at its top 'ct mark & 0x10000000 == 0x10000000 accept', or set host_firewall: insert",
    ]);
  });

  it('an unreadable ruleset is a problem, never silence', async () => {
    const host = new HostFirewall({
      plan,
      mode: 'insert',
      nft: {
        kind: 'cli',
        run() {
          throw new Error('nft: permission denied');
        },
      },
      commands: { run: () => '' },
      isOwnTable: () => false,
      ownIptablesPrefix: '',
      readProc: () => '',
    });
    expect((await host.reconcile()).problems).toEqual([expect.stringContaining("cannot read the host's nftables chains: nft: permission denied")]);
  });
});
