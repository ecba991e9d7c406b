/**
 * iptables + ipset backend. The base ruleset goes in through `iptables-restore --noflush`
 * (one transaction per family) and `ipset restore -exist`; grants are `add ... timeout N
 * -exist` lines (which also refresh a live entry's timeout) written to one long-lived
 * `ipset -` session (ipset-session.ts), batched per event-loop turn (grant-sets.ts): no fork
 * per grant. Every command runs in a child process that is awaited, never synchronously.
 * Works with iptables-nft and -legacy.
 */
import type { AppConfig, IpFamily, Protocol } from '../config/types.js';
import { FirewallCommandError, runCommand, type CommandRunner } from './command.js';
import { GrantSets, type GrantChange, type GrantEntry, type GrantKey, type GrantSetDriver } from './grant-sets.js';
import type { HostFirewall, HostFirewallReport } from './host-firewall.js';
import { IpsetSession } from './ipset-session.js';
import { IptablesRuleset, ipsetServiceEntry, type Jump } from './iptables-ruleset.js';
import { grantOf } from './nft-backend.js';
import { ALL_FAMILIES, checkServiceGrant, grantableFamily, sumWouldDrop, type FirewallPlan, type WouldDropCount } from './plan.js';
import type { FirewallBackend, FirewallCapabilities, Grant } from './types.js';
import type { CaptureKind, GrantKind } from '../shared/kinds.js';

/** Which iptables binaries: the system default, or explicitly the nf_tables or legacy ones. */
export type IptablesVariant = 'default' | 'nft' | 'legacy';

export function iptablesBinary(variant: IptablesVariant, family: IpFamily, tool: '' | '-restore' | '-save' = ''): string {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  return `${base}${variant === 'default' ? '' : `-${variant}`}${tool}`;
}

/** Entries of one set from `ipset list NAME -o save`: `add NAME ENTRY timeout N`. */
export function parseIpsetSave(text: string): Array<{ entry: string; timeout: number }> {
  const entries: Array<{ entry: string; timeout: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^add \S+ (\S+)(?: timeout (\d+))?/.exec(line);
    if (m) entries.push({ entry: m[1]!, timeout: Number(m[2] ?? 0) });
  }
  return entries;
}

/** An entry as ipset writes it: the address, or `address,protocol:port`. */
function ipsetEntry(key: GrantKey): string {
  return key.protocol && key.port !== undefined ? ipsetServiceEntry(key.address, key.protocol, key.port) : key.address;
}

/** An entry of `ipset list -o save` as a set entry. */
function entryOf(entry: string, expiresInSeconds: number): GrantEntry {
  const comma = entry.lastIndexOf(',');
  if (comma < 0) return { address: entry, expiresInSeconds };
  const [protocol, port] = entry.slice(comma + 1).split(':') as [Protocol, string];
  return { address: entry.slice(0, comma), protocol, port: Number(port), expiresInSeconds };
}

/** The ipset command line for one grant change (`-exist`: a repeat refreshes, an absent delete is fine). */
export function ipsetLine(ruleset: IptablesRuleset, change: GrantChange): string {
  const set = ruleset.setName(change.kind, change.family);
  return change.op === 'add' ? `add ${set} ${ipsetEntry(change.key)} timeout ${change.ttlSeconds} -exist` : `del ${set} ${ipsetEntry(change.key)} -exist`;
}

/** Grant sets in ipset: a batch is a run of lines to the session, each answered on its own. */
export class IpsetGrantDriver implements GrantSetDriver {
  constructor(
    private readonly session: IpsetSession,
    private readonly cmd: CommandRunner,
    private readonly ruleset: IptablesRuleset,
  ) {}

  async apply(changes: readonly GrantChange[]): Promise<Array<Error | undefined>> {
    const lines = changes.map((c) => ipsetLine(this.ruleset, c));
    const answers = await this.session.run(lines);
    return answers.map((said, i) => (said === '' ? undefined : new FirewallCommandError(`ipset ${lines[i]} failed: ${said}`, 'ipset', said)));
  }

  /** Not on the grant path: a listing is a child process of its own, awaited. */
  async list(kind: GrantKind, family: IpFamily): Promise<GrantEntry[]> {
    const saved = await runCommand(this.cmd, 'ipset', ['list', this.ruleset.setName(kind, family), '-o', 'save']);
    return parseIpsetSave(saved).map(({ entry, timeout }) => entryOf(entry, timeout));
  }

  close(): void {
    this.session.close();
  }
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

export class IptablesFirewall implements FirewallBackend {
  readonly type = 'iptables' as const;
  readonly ruleset: IptablesRuleset;
  /** Grant changes, batched per event-loop turn into the ipset session. */
  readonly grants: GrantSets;
  private lastCapture: CaptureKind | undefined;
  private healing: Promise<boolean> | undefined;

  constructor(
    plan: FirewallPlan,
    name: string,
    private readonly cmd: CommandRunner,
    private readonly apps: AppConfig[],
    private readonly host: HostFirewall,
    private readonly variant: IptablesVariant = 'default',
    private readonly session: IpsetSession = new IpsetSession({ prefix: cmd.prefix ?? [] }),
  ) {
    this.ruleset = new IptablesRuleset(plan, name);
    // A batch is lines in one pipe write, each answered by ipset. 128 lines keep what this thread does
    // per batch (writing them, settling their callers' promises) well under a millisecond.
    this.grants = new GrantSets(new IpsetGrantDriver(this.session, cmd, this.ruleset), { maxBatch: 128 });
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

  render(capture: CaptureKind): string {
    return this.ruleset.render(capture) + this.host.describeRules();
  }

  hostFirewall(): HostFirewallReport {
    return this.host.report();
  }

  async install(capture: CaptureKind): Promise<void> {
    await runCommand(this.cmd, 'ipset', ['restore', '-exist'], this.ruleset.ipsetScript());
    for (const family of ALL_FAMILIES) {
      const saved = await this.saved(family);
      const missing = this.ruleset.jumps().filter((j) => !saved.jumps.has(jumpKey(j)));
      await runCommand(this.cmd, iptablesBinary(this.variant, family, '-restore'), ['-w', '--noflush'], this.ruleset.restoreScript(family, capture, missing));
    }
    this.lastCapture = capture;
    this.session.start();
    await this.host.reconcile();
  }

  ensureInstalled(capture: CaptureKind | undefined = this.lastCapture): Promise<boolean> {
    // A slow check (a held xtables lock, a loaded host) must not pile up behind the next tick.
    this.healing ??= this.heal(capture).finally(() => (this.healing = undefined));
    return this.healing;
  }

  private async heal(capture: CaptureKind | undefined): Promise<boolean> {
    if (!capture) return false;
    if (await this.isInstalled()) {
      await this.host.reconcile();
      return false;
    }
    await this.install(capture);
    return true;
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

  async grantStep2(ip: string, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    await this.grants.add('step2', family, { address: ip }, ttlSeconds);
  }

  async grantService(ip: string, app: AppConfig, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    checkServiceGrant(ip, family, app);
    await this.grants.add('service', family, { address: ip, protocol: app.protocol, port: app.port }, ttlSeconds);
  }

  async revoke(ip: string, app?: AppConfig): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    if (app) return this.grants.delete('service', family, { address: ip, protocol: app.protocol, port: app.port });
    const services = (await this.grants.list('service', family)).filter((e) => e.address === ip);
    await Promise.all([this.grants.delete('step2', family, { address: ip }), ...services.map((e) => this.grants.delete('service', family, e))]);
  }

  async list(): Promise<Grant[]> {
    const sets = this.ruleset.plan.grantFamilies.flatMap((family) => (['step2', 'service'] as const).map((kind) => ({ kind, family })));
    const listed = await Promise.all(sets.map(({ kind, family }) => this.grants.list(kind, family)));
    return sets.flatMap(({ kind, family }, i) => listed[i]!.map((e) => grantOf(kind, family, e, this.apps)));
  }

  close(): void {
    this.grants.close();
  }

  /** The report-mode rules live in the mangle mark chain and the filter forward chain (iptables-ruleset.ts). */
  async wouldDrop(): Promise<WouldDropCount[]> {
    const plan = this.ruleset.plan;
    if (plan.gateMode !== 'report') return [];
    const saves = ALL_FAMILIES.flatMap((family) =>
      (['mangle', 'filter'] as const).map((table) => runCommand(this.cmd, iptablesBinary(this.variant, family, '-save'), ['-c', '-t', table])),
    );
    return sumWouldDrop(plan, (await Promise.all(saves)).flatMap(parseSavedCounters));
  }

  /** Removes the jumps, own chains and own sets; each step tolerates a partial install. */
  async uninstall(): Promise<void> {
    await this.host.remove();
    this.grants.close();
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
    this.lastCapture = undefined;
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
