/**
 * The step-1 rules for each setting that changes them: the in-kernel prefilter (cookie and
 * no-handshake modes, off with `step1_reply: reset`, long paths) and the fanout over several
 * workers (NFQUEUE ranges, NFLOG groups chosen by CPU). Goldens as in golden.test.ts; the
 * machine is given explicitly so they never depend on the host's core count.
 */
import { describe, expect, it } from 'vitest';
import type { Config, GlobalConfig } from '../../../src/config/types.js';
import { IptablesRuleset, u32PrefixMatch } from '../../../src/firewall/iptables/ruleset.js';
import { NftRuleset, cpusOfWorker, nftPrefixMatch } from '../../../src/firewall/nftables/ruleset.js';
import { describeStep1Queues } from '../../../src/config/workers.js';
import { planFirewall, type PlanMachine } from '../../../src/firewall/plan.js';
import type { CaptureKind } from '../../../src/shared/kinds.js';
import { PREFILTER_MAX_BYTES, prefilterPrefix } from '../../../src/step1/prefilter.js';
import { matchGolden } from './golden-files.js';
import { fixtureConfig } from './fixture.js';

function config(global: Partial<GlobalConfig>): Config {
  const base = fixtureConfig();
  return { ...base, global: { ...base.global, ...global } };
}

const MACHINE: PlanMachine = { cores: 6, cpus: 6 };

function nft(c: Config, capture: CaptureKind, machine = MACHINE): string {
  return new NftRuleset(planFirewall(c, machine), 'knockport').installScript(capture);
}

function iptables(c: Config, capture: CaptureKind, machine = MACHINE): string {
  return new IptablesRuleset(planFirewall(c, machine), 'knockport').render(capture);
}

/** Only the step-1 lines: the rest of the ruleset is covered by golden.test.ts. */
function step1Lines(text: string): string {
  return (
    text
      .split('\n')
      .filter((l) => /step1|STEP1|CAPTURE/.test(l) && !/^(add chain|flush chain|add set|:)/.test(l))
      .join('\n') + '\n'
  );
}

describe('step-1 rules per setting (goldens)', () => {
  const cases: Array<[string, Partial<GlobalConfig>, CaptureKind]> = [
    ['handshake-none', { step1Handshake: 'none' }, 'nflog'],
    ['reply-reset', { step1Reply: 'reset' }, 'nflog'],
    ['workers-4-nfqueue', { step1Workers: 4 }, 'nfqueue'],
    ['workers-4-nflog', { step1Workers: 4 }, 'nflog'],
    ['workers-auto-nflog', { step1Workers: 'auto' }, 'nflog'],
  ];
  for (const [name, global, capture] of cases) {
    it(`nftables and iptables: ${name}`, () => {
      matchGolden(`step1-nftables-${name}.txt`, step1Lines(nft(config(global), capture)));
      matchGolden(`step1-iptables-${name}.txt`, step1Lines(iptables(config(global), capture)));
    });
  }
});

describe('the prefilter match', () => {
  const long = prefilterPrefix(`/${'p'.repeat(700)}`);

  it('covers every prefix byte in nft compares of at most 128 bits, in one rule the kernel accepts', () => {
    const parts = [...nftPrefixMatch(long).matchAll(/@ih,(\d+),(\d+) 0x([0-9a-f]+)/g)];
    expect(parts.length).toBe(PREFILTER_MAX_BYTES / 16);
    // 2 expressions per compare, well under NFT_RULE_MAXEXPRS (128) with the flags match and the goto.
    expect(parts.length * 2 + 8).toBeLessThanOrEqual(128);
    const bytes = Buffer.concat(
      parts.map(([, , bits, hex]) => {
        expect(Number(bits)).toBeLessThanOrEqual(128);
        return Buffer.from(hex!, 'hex');
      }),
    );
    expect(bytes.equals(long)).toBe(true);
  });

  it('covers every prefix byte in u32 words anchored at the payload, at most 10 tests per match', () => {
    for (const family of [4, 6] as const) {
      const matches = u32PrefixMatch(family, long).split(' -m u32 ');
      for (const m of matches) expect(m.split('&&').length).toBeLessThanOrEqual(10);
      const bytes = Buffer.alloc(long.length);
      for (const [, offset, word] of u32PrefixMatch(family, long).matchAll(/@(\d+)=0x([0-9A-F]{8})/g)) {
        bytes.writeUInt32BE(parseInt(word!, 16), Number(offset) - (family === 6 ? 40 : 0));
      }
      expect(bytes.equals(long)).toBe(true);
    }
  });

  it('nft and iptables compare the same bytes, the ones prefilterPrefix gives', () => {
    const text = nft(fixtureConfig(), 'nflog') + iptables(fixtureConfig(), 'nflog');
    const prefix = prefilterPrefix('/step-1-abc');
    expect(text).toContain(nftPrefixMatch(prefix));
    expect(text).toContain(u32PrefixMatch(4, prefix));
    expect(text).toContain(u32PrefixMatch(6, prefix));
  });
});

describe('fanout over step-1 workers', () => {
  it('one worker keeps a single queue or group', () => {
    const one = config({ step1Workers: 1 });
    expect(nft(one, 'nfqueue')).toContain('step1_capture queue num 7\n');
    expect(nft(one, 'nflog')).not.toContain('meta cpu');
    expect(iptables(one, 'nfqueue')).toContain('-j NFQUEUE --queue-num 7\n');
    expect(iptables(one, 'nflog')).not.toContain('-m cpu');
  });

  it('N workers: queues queue_num..queue_num+N-1 with fanout and never bypass', () => {
    const four = config({ step1Workers: 4 });
    expect(nft(four, 'nfqueue')).toContain('queue num 7-10 fanout\n');
    expect(iptables(four, 'nfqueue')).toContain('-j NFQUEUE --queue-balance 7:10 --queue-cpu-fanout\n');
    expect(nft(four, 'nfqueue') + iptables(four, 'nfqueue')).not.toMatch(/bypass/);
  });

  it('NFLOG: every CPU, and any CPU not named, reaches exactly one group, CPU c going to group nflog_group + c mod N', () => {
    for (const [workers, cpus] of [
      [4, 6],
      [3, 2],
      [2, 16],
      [16, 64],
    ] as const) {
      const machine = { cores: workers, cpus };
      const text = nft(config({ step1Workers: workers }), 'nflog', machine);
      const rules = text.split('\n').filter((l) => l.includes(' step1_capture log group') || l.includes(' step1_capture meta cpu'));
      expect(rules).toHaveLength(Math.min(workers, cpus + 1));
      // Each rule logs then drops; the unconditional last one takes whatever the others left.
      expect(rules.at(-1)).toBe(`add rule inet knockport step1_capture log group ${5 + workers - 1} queue-threshold 1 drop`);
      for (let cpu = 0; cpu < cpus; cpu++) {
        const worker = cpu % workers;
        const named = rules.filter((r) => new RegExp(`meta cpu \\{ ([0-9, ]+, )?${cpu}(, [0-9, ]+)? \\}`).test(r));
        if (worker === workers - 1) expect(named).toHaveLength(0);
        else
          expect(named).toEqual([
            `add rule inet knockport step1_capture meta cpu { ${cpusOfWorker(worker, workers, cpus).join(', ')} } log group ${5 + worker} queue-threshold 1 drop`,
          ]);
      }
      // The IPv4 script (the IPv6 one is the same): everything up to the first ip6tables header.
      const v4 = iptables(config({ step1Workers: workers }), 'nflog', machine).split('# ip6tables-restore')[0]!;
      const ipt = v4.split('\n').filter((l) => l.startsWith('-A KNOCKPORT-CAPTURE'));
      expect(ipt.at(-2)).toBe(`-A KNOCKPORT-CAPTURE -j NFLOG --nflog-group ${5 + workers - 1} --nflog-threshold 1`);
      expect(ipt.at(-1)).toBe('-A KNOCKPORT-CAPTURE -j DROP');
      for (let cpu = 0; cpu < cpus; cpu++) {
        const worker = cpu % workers;
        const mine = ipt.filter((l) => l.includes(`-m cpu --cpu ${cpu} `));
        expect(mine).toEqual(
          worker === workers - 1
            ? []
            : [
                `-A KNOCKPORT-CAPTURE -m cpu --cpu ${cpu} -j NFLOG --nflog-group ${5 + worker} --nflog-threshold 1`,
                `-A KNOCKPORT-CAPTURE -m cpu --cpu ${cpu} -j DROP`,
              ],
        );
      }
    }
  });

  it('names the queues and groups in use, for check and the start log', () => {
    expect(describeStep1Queues(planFirewall(config({ step1Workers: 4 }), MACHINE))).toBe('4 step-1 workers: NFQUEUE 7-10, or NFLOG groups 5-8');
    expect(describeStep1Queues(planFirewall(config({ step1Workers: 1 }), MACHINE))).toBe('1 step-1 worker: NFQUEUE 7, or NFLOG group 5');
  });

  it('step1_workers: auto resolves against the cores given, capped at 16', () => {
    expect(planFirewall(config({ step1Workers: 'auto' }), { cores: 2, cpus: 2 }).step1Workers).toBe(2);
    expect(planFirewall(config({ step1Workers: 'auto' }), { cores: 64, cpus: 64 }).step1Workers).toBe(16);
    expect(nft(config({ step1Workers: 'auto' }), 'nfqueue', { cores: 64, cpus: 64 })).toContain('queue num 7-22 fanout');
  });
});
