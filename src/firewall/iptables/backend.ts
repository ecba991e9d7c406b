/**
 * The iptables + ipset backend. The base ruleset (ruleset.ts) goes in through
 * `iptables-restore --noflush` (one transaction per family) and `ipset restore -exist`; grants
 * go to one long-lived `ipset -` session (grant-sets.ts, ipset-session.ts). Every command runs
 * in a child process that is awaited, never synchronously. Works with iptables-nft and -legacy.
 */
import type { IpFamily } from '../../config/types.js';
import type { CaptureKind } from '../../shared/kinds.js';
import { runCommand, type CommandRunner } from '../command.js';
import { ALL_FAMILIES, type FirewallPlan } from '../plan.js';
import type { FirewallCapabilities, FirewallDriver } from '../types.js';
import { IpsetGrantDriver } from './grant-sets.js';
import { IpsetSession } from './ipset-session.js';
import { IptablesRuleset, type Jump } from './ruleset.js';

/** Which iptables binaries: the system default, or explicitly the nf_tables or legacy ones. */
export type IptablesVariant = 'default' | 'nft' | 'legacy';

export function iptablesBinary(variant: IptablesVariant, family: IpFamily, tool: '' | '-restore' | '-save' = ''): string {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  return `${base}${variant === 'default' ? '' : `-${variant}`}${tool}`;
}

/** What one `iptables-save` says about knock-port's rules in one family. */
export interface SavedRules {
  /** `table from to` of every jump present as a rule of its own (`-A FROM -j TO`). */
  jumps: Set<string>;
  /** Rules in knock-port's step-1 chain. */
  step1Rules: number;
}

/** Every commented rule's packet counter from `iptables-save -c` output. */
export function parseSavedCounters(text: string): Array<{ comment: string; packets: number }> {
  const counted: Array<{ comment: string; packets: number }> = [];
  for (const line of text.split('\n')) {
    const match = /^\[(\d+):\d+\] -A .*--comment "([^"]*)"/.exec(line);
    if (match) counted.push({ comment: match[2]!, packets: Number(match[1]) });
  }
  return counted;
}

const jumpKey = (j: Jump): string => `${j.table} ${j.from} ${j.to}`;

/** Reads knock-port's jumps and step-1 rules from `iptables-save` output (all tables). */
export function parseSavedRules(text: string, jumps: readonly Jump[], step1Chain: string): SavedRules {
  const found = new Set<string>();
  let table = '';
  let step1Rules = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith(`-A ${step1Chain} `)) step1Rules++;
    else {
      for (const j of jumps) if (j.table === table && line.trim() === `-A ${j.from} -j ${j.to}`) found.add(jumpKey(j));
    }
  }
  return { jumps: found, step1Rules };
}

export class IptablesDriver implements FirewallDriver {
  readonly type = 'iptables' as const;
  readonly ruleset: IptablesRuleset;
  readonly grantSets: IpsetGrantDriver;
  // A batch is lines in one pipe write, each answered by ipset. 128 lines keep what this thread does
  // per batch (writing them, settling their callers' promises) well under a millisecond.
  readonly maxGrantBatch = 128;

  constructor(
    readonly plan: FirewallPlan,
    name: string,
    private readonly cmd: CommandRunner,
    private readonly variant: IptablesVariant = 'default',
    private readonly session: IpsetSession = new IpsetSession({ prefix: cmd.prefix ?? [] }),
  ) {
    this.ruleset = new IptablesRuleset(plan, name);
    this.grantSets = new IpsetGrantDriver(this.session, cmd, this.ruleset);
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- the probes are synchronous here; the interface is async for backends whose are not
  async capabilities(): Promise<FirewallCapabilities> {
    const notes: string[] = [];
    try {
      this.cmd.run(iptablesBinary(this.variant, 4), ['-V']);
    } catch (e) {
      notes.push((e as Error).message);
    }
    const ok = notes.length === 0;
    return { nfqueue: ok, nflog: ok, notes };
  }

  describe(capture: CaptureKind): string {
    return this.ruleset.render(capture);
  }

  async install(capture: CaptureKind): Promise<void> {
    await runCommand(this.cmd, 'ipset', ['restore', '-exist'], this.ruleset.ipsetScript());
    for (const family of ALL_FAMILIES) {
      const saved = await this.saved(family);
      const missing = this.ruleset.jumps().filter((j) => !saved.jumps.has(jumpKey(j)));
      await runCommand(this.cmd, iptablesBinary(this.variant, family, '-restore'), ['-w', '--noflush'], this.ruleset.restoreScript(family, capture, missing));
    }
    this.session.start();
  }

  /** One `iptables-save` per family, awaited (it used to be a fork per jump, every tick). */
  async isInstalled(): Promise<boolean> {
    for (const family of ALL_FAMILIES) {
      let saved: SavedRules;
      try {
        saved = await this.saved(family);
      } catch {
        return false;
      }
      if (saved.step1Rules === 0 || !this.ruleset.jumps().every((j) => saved.jumps.has(jumpKey(j)))) return false;
    }
    return true;
  }

  private async saved(family: IpFamily): Promise<SavedRules> {
    const text = await runCommand(this.cmd, iptablesBinary(this.variant, family, '-save'), []);
    return parseSavedRules(text, this.ruleset.jumps(), this.ruleset.chain('STEP1'));
  }

  private iptables(family: IpFamily, args: string[]): Promise<string> {
    return runCommand(this.cmd, iptablesBinary(this.variant, family), ['-w', ...args]);
  }

  private async hasJump(family: IpFamily, j: Jump): Promise<boolean> {
    try {
      await this.iptables(family, ['-t', j.table, '-C', j.from, '-j', j.to]);
      return true;
    } catch {
      return false;
    }
  }

  /** The report-mode rules live in the mangle mark chain and the filter forward chain (ruleset.ts). */
  async ruleCounters(): Promise<Array<{ comment: string; packets: number }>> {
    const saves = ALL_FAMILIES.flatMap((family) =>
      (['mangle', 'filter'] as const).map((table) => runCommand(this.cmd, iptablesBinary(this.variant, family, '-save'), ['-c', '-t', table])),
    );
    return (await Promise.all(saves)).flatMap(parseSavedCounters);
  }

  /** Removes the jumps, own chains and own sets; each step tolerates a partial install. */
  async uninstall(): Promise<void> {
    for (const family of ALL_FAMILIES) {
      for (const j of this.ruleset.jumps()) {
        for (let i = 0; i < 10 && (await this.hasJump(family, j)); i++) await this.iptables(family, ['-t', j.table, '-D', j.from, '-j', j.to]);
      }
      const chains = this.ruleset.chains(family, 'nflog');
      for (const table of ['raw', 'mangle', 'filter', 'nat'] as const) {
        for (const op of ['-F', '-X']) {
          for (const c of chains[table]) await tolerate(this.iptables(family, ['-t', table, op, c.name]));
        }
      }
    }
    for (const set of this.ruleset.sets()) await tolerate(runCommand(this.cmd, 'ipset', ['destroy', set.name]));
  }
}

/** Missing objects are fine when removing. */
async function tolerate(step: Promise<unknown>): Promise<void> {
  try {
    await step;
  } catch {
    // already absent
  }
}
