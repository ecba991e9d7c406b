/**
 * I/O shared by the nft-based backends (nftables, VyOS): runs the scripts NftRuleset
 * generates, reads grants back from the kernel, probes which capture the kernel has.
 * Grants go through the shared batching queue (grant-sets.ts): the grants of one event-loop
 * turn become one nft script, one netlink transaction (libnftables in-process, or one
 * `nft` child process awaited when the addon is missing).
 *
 * Kernel 6.9+: knock-port's own table is owned by the daemon's libnftables thread (table flags
 * owner and persist, see nft-runner.ts): another process's `nft flush ruleset` leaves it in place,
 * `nft delete table` is refused, and after the daemon ends (even killed) the table stays, orphaned,
 * until the next daemon adopts it or `knock-port uninstall` deletes it. Older kernels: as before.
 */
import { constants as osConstants } from 'node:os';
import type { AppConfig, FirewallType, IpFamily, Protocol } from '../config/types.js';
import { GrantSets, type GrantChange, type GrantEntry, type GrantKey, type GrantSetDriver } from './grant-sets.js';
import type { HostFirewall, HostFirewallReport } from './host-firewall.js';
import { NftError, runNft, type NftRunner, type TableOwnershipSupport } from './nft-runner.js';
import { NftRuleset, grantSetName, serviceElement, tableRef, type NftLayout, type NftTable } from './nft-ruleset.js';
import { appForPort, checkServiceGrant, grantableFamily, sumWouldDrop, type FirewallPlan, type WouldDropCount } from './plan.js';
import type { FirewallBackend, FirewallCapabilities, Grant, TableOwnershipReport } from './types.js';
import type { CaptureKind, GrantKind } from '../shared/kinds.js';

const { EPERM } = osConstants.errno;

interface NftSetElement {
  val: string | { concat: [string, string, number] };
  expires?: number;
  timeout?: number;
}

interface NftListing {
  nftables: Array<{ set?: { elem?: Array<NftSetElement | { elem: NftSetElement } | string> } }>;
}

/** Elements of one set from `nft -j list set` output. */
export function parseSetElements(json: string): NftSetElement[] {
  const listing = JSON.parse(json) as NftListing;
  const elements: NftSetElement[] = [];
  for (const item of listing.nftables) {
    for (const e of item.set?.elem ?? []) {
      if (typeof e === 'string') elements.push({ val: e });
      else if ('elem' in e) elements.push(e.elem);
      else elements.push(e);
    }
  }
  return elements;
}

interface NftRuleListing {
  nftables: Array<{ rule?: { comment?: string; expr?: Array<{ counter?: { packets: number } }> } }>;
}

/** Every commented rule's counter from `nft -j list chain` output (rules without a counter count 0). */
export function parseRuleCounters(json: string): Array<{ comment: string; packets: number }> {
  const listing = JSON.parse(json) as NftRuleListing;
  return listing.nftables.flatMap(({ rule }) => {
    if (rule?.comment === undefined) return [];
    const packets = rule.expr?.find((e) => e.counter !== undefined)?.counter?.packets ?? 0;
    return [{ comment: rule.comment, packets }];
  });
}

/** An element as nft writes it: the address, or `address . protocol . port`. */
function nftElement(key: GrantKey): string {
  return key.protocol && key.port !== undefined ? serviceElement(key.address, key.protocol, key.port) : key.address;
}

/**
 * An install script without the declaration of `tables` (`add table inet knockport`): nft sends a
 * declaration with table flags 0, which the kernel refuses on an owned (or persist) table.
 */
export function withoutTableDeclarations(script: string, tables: readonly NftTable[]): string {
  const declarations = new Set(tables.map((table) => `add table ${tableRef(table)}`));
  return script
    .split('\n')
    .filter((line) => !declarations.has(line.trim()))
    .join('\n');
}

/**
 * The tables of `layout` that exist now, from `nft list tables` as text: nft before 1.1 reads past
 * its table flag names when it writes the flag persist as JSON, so no table is listed as JSON.
 */
export function presentTables(listing: string, layout: NftLayout): NftTable[] {
  const present = new Set(listing.split('\n').flatMap((line) => /^table (\S+ \S+)$/.exec(line.trim())?.slice(1) ?? []));
  return layout.tables.filter((table) => present.has(tableRef(table)));
}

/** The operator's line on how knock-port's tables are kept, from what ownTables found. */
export function describeOwnership(tables: readonly NftTable[], support: TableOwnershipSupport, refusals: readonly string[]): TableOwnershipReport {
  const refs = tables.map((table) => `table ${tableRef(table)}`).join(', ');
  if (!support.supported) {
    return { owned: false, summary: `${refs} not owned (${support.reason}): a host \`nft flush ruleset\` removes it until the next self-heal` };
  }
  if (refusals.length > 0) return { owned: false, summary: `${refs} not owned: ${refusals.join('; ')}` };
  return {
    owned: true,
    summary: `${refs} owned by this daemon (table flags owner, persist): a host \`nft flush ruleset\` or \`nft delete table\` leaves it in place`,
  };
}

/** Consecutive changes of the same kind (add or delete): order between runs is kept. */
function runsOf(changes: readonly GrantChange[]): GrantChange[][] {
  const runs: GrantChange[][] = [];
  for (const change of changes) {
    const last = runs.at(-1);
    if (last && last[0]!.op === change.op) last.push(change);
    else runs.push([change]);
  }
  return runs;
}

/**
 * One nft script for a batch of grant changes: per set, one `add element` with every element
 * (so the delete cannot fail), one `delete element`, one `add element` with the new timeouts,
 * which refreshes live elements. Within a run the same element twice keeps its last timeout.
 */
export function nftGrantScript(ruleset: NftRuleset, changes: readonly GrantChange[]): string {
  const lines: string[] = [];
  for (const run of runsOf(changes)) {
    const bySet = new Map<string, Map<string, number>>();
    for (const change of run) {
      const set = `${tableRef(ruleset.tableFor(change.family))} ${grantSetName(ruleset.layout, change.kind, change.family)}`;
      const elements = bySet.get(set) ?? new Map<string, number>();
      bySet.set(set, elements);
      const element = nftElement(change.key);
      elements.delete(element);
      elements.set(element, change.op === 'add' ? change.ttlSeconds : 1);
    }
    for (const [set, elements] of bySet) {
      const timed = [...elements].map(([e, ttl]) => `${e} timeout ${ttl}s`).join(', ');
      const bare = [...elements.keys()].join(', ');
      lines.push(`add element ${set} { ${timed} }`, `delete element ${set} { ${bare} }`);
      if (run[0]!.op === 'add') lines.push(`add element ${set} { ${timed} }`);
    }
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** Grant sets in nft: a batch is one script, one transaction; a failed one changes nothing. */
export class NftGrantDriver implements GrantSetDriver {
  constructor(
    private readonly nft: NftRunner,
    private readonly ruleset: NftRuleset,
  ) {}

  async apply(changes: readonly GrantChange[]): Promise<Array<Error | undefined>> {
    const script = nftGrantScript(this.ruleset, changes);
    if (script) await runNft(this.nft, script);
    return changes.map(() => undefined);
  }

  async list(kind: GrantKind, family: IpFamily): Promise<GrantEntry[]> {
    const set = `${tableRef(this.ruleset.tableFor(family))} ${grantSetName(this.ruleset.layout, kind, family)}`;
    return parseSetElements(await runNft(this.nft, `list set ${set}`, { json: true })).map(toEntry);
  }
}

function toEntry(e: NftSetElement): GrantEntry {
  const expiresInSeconds = e.expires ?? e.timeout ?? 0;
  if (typeof e.val === 'string') return { address: e.val, expiresInSeconds };
  const [address, protocol, port] = e.val.concat as [string, Protocol, number];
  return { address, protocol, port, expiresInSeconds };
}

/** A set entry as a Grant: service entries name their app when one has that port. */
export function grantOf(kind: GrantKind, family: IpFamily, entry: GrantEntry, apps: readonly AppConfig[]): Grant {
  const { address, protocol, port, expiresInSeconds } = entry;
  if (kind === 'step2' || !protocol || port === undefined) return { kind, family, address, expiresInSeconds };
  const app = appForPort([...apps], protocol, port);
  return { kind, family, address, protocol, port, ...(app ? { app: app.name } : {}), expiresInSeconds };
}

export abstract class NftFirewallBase implements FirewallBackend {
  abstract readonly type: FirewallType;
  readonly ruleset: NftRuleset;
  /** Grant changes, batched per event-loop turn. */
  readonly grants: GrantSets;
  private lastCapture: CaptureKind | undefined;
  private healing: Promise<boolean> | undefined;
  private ownership: TableOwnershipReport | undefined;

  constructor(
    plan: FirewallPlan,
    layout: NftLayout,
    protected readonly nft: NftRunner,
    private readonly apps: AppConfig[],
    private readonly host: HostFirewall,
  ) {
    this.ruleset = new NftRuleset(plan, layout);
    // libnftables parses about 1.5 ms per 64 grants (10 ms per 256 service grants), on its own thread
    // or, without it, on this one: small transactions keep either free between them, so a grant
    // that arrives during a burst waits for one short transaction, not the whole burst. A forked
    // nft parses in its own process.
    this.grants = new GrantSets(new NftGrantDriver(nft, this.ruleset), { maxBatch: nft.kind === 'libnftables' ? 64 : 1024 });
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- the probes are synchronous here; the interface is async for backends whose are not
  async capabilities(): Promise<FirewallCapabilities> {
    const notes: string[] = [];
    const probe = (capture: CaptureKind): boolean => {
      try {
        this.nft.run(this.ruleset.captureProbeScript(capture), { check: true });
        return true;
      } catch (e) {
        notes.push(`nft cannot ${capture === 'nfqueue' ? 'queue' : 'log'} here: ${(e as Error).message}`);
        return false;
      }
    };
    return { nfqueue: probe('nfqueue'), nflog: probe('nflog'), notes };
  }

  render(capture: CaptureKind): string {
    return this.ruleset.installScript(capture) + this.host.describeRules();
  }

  async install(capture: CaptureKind): Promise<void> {
    const owned = await this.ownTables();
    await runNft(this.nft, withoutTableDeclarations(this.ruleset.installScript(capture), owned));
    this.lastCapture = capture;
    await this.host.reconcile();
  }

  /** Re-installs when the base ruleset was removed behind our back (true when it did); re-checks the host's chains. */
  ensureInstalled(capture: CaptureKind | undefined = this.lastCapture): Promise<boolean> {
    // A slow check (a held xtables lock, a loaded host) must not pile up behind the next tick.
    this.healing ??= this.heal(capture).finally(() => (this.healing = undefined));
    return this.healing;
  }

  private async heal(capture: CaptureKind | undefined): Promise<boolean> {
    if (!capture) return false;
    // Adopts the table again after the libnftables thread was restarted, and owns one that a host
    // flush removed while it was not owned (an older table without persist).
    await this.ownTables();
    if (await this.isInstalled()) {
      await this.host.reconcile();
      return false;
    }
    await this.install(capture);
    return true;
  }

  hostFirewall(): HostFirewallReport {
    return this.host.report();
  }

  /** How the last install or self-heal left knock-port's tables (owned or not, and why). */
  tableOwnership(): TableOwnershipReport | undefined {
    return this.ownership;
  }

  /**
   * Tables knock-port may make owned: only tables of its own, never one it shares (a prefixed
   * layout). None unless the backend says so.
   */
  protected ownableTables(): NftTable[] {
    return [];
  }

  /**
   * Makes knock-port's tables owned by the socket the runner writes through, where the kernel
   * can keep them (owner and persist); returns those now owned. Elsewhere nothing changes.
   * Throws when another process owns one: nothing knock-port sends could change it.
   */
  private async ownTables(): Promise<NftTable[]> {
    const tables = this.ruleset.layout.prefix === '' ? this.ownableTables() : [];
    if (tables.length === 0) return [];
    const support: TableOwnershipSupport = (this.nft.ownTable && this.nft.tableOwnership?.()) || {
      supported: false,
      reason: 'nft runs as a command here, not in-process',
    };
    const owned: NftTable[] = [];
    const refusals: string[] = [];
    if (support.supported) {
      for (const table of tables) {
        const outcome = await this.nft.ownTable!(table);
        if (outcome.owned) owned.push(table);
        else if (outcome.errno === EPERM) throw new NftError(`${outcome.reason}: stop it first`, '');
        else refusals.push(outcome.reason);
      }
    }
    this.ownership = describeOwnership(tables, support, refusals);
    return owned;
  }

  /** True while every table still holds knock-port's step-1 gate. */
  abstract isInstalled(): Promise<boolean>;

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
    // Asked for together: one transaction.
    await Promise.all([this.grants.delete('step2', family, { address: ip }), ...services.map((e) => this.grants.delete('service', family, e))]);
  }

  async list(): Promise<Grant[]> {
    const sets = this.ruleset.plan.grantFamilies.flatMap((family) => (['step2', 'service'] as const).map((kind) => ({ kind, family })));
    const listed = await Promise.all(sets.map(({ kind, family }) => this.grants.list(kind, family)));
    return sets.flatMap(({ kind, family }, i) => listed[i]!.map((e) => grantOf(kind, family, e, this.apps)));
  }

  /** The report-mode rules live in the mark and forward chains of each table (nft-ruleset.ts). */
  async wouldDrop(): Promise<WouldDropCount[]> {
    const { plan, layout } = this.ruleset;
    if (plan.gateMode !== 'report') return [];
    const chains = layout.tables.flatMap((table) => ['prerouting_mark', 'forward_filter'].map((chain) => `${tableRef(table)} ${layout.prefix}${chain}`));
    const listings = await Promise.all(chains.map((chain) => runNft(this.nft, `list chain ${chain}`, { json: true })));
    return sumWouldDrop(plan, listings.flatMap(parseRuleCounters));
  }

  /**
   * Deletes the tables that exist (an orphaned owned table included: nft cannot declare one, so
   * nothing is declared first); refused while a running daemon owns them.
   */
  async uninstall(): Promise<void> {
    await this.host.remove();
    const present = presentTables(await runNft(this.nft, 'list tables\n'), this.ruleset.layout);
    try {
      if (present.length > 0) await runNft(this.nft, present.map((table) => `delete table ${tableRef(table)}\n`).join(''));
    } catch (e) {
      if (!/Operation not permitted/.test((e as Error).message)) throw e;
      throw new NftError(
        `a running process owns ${present.map((t) => `table ${tableRef(t)}`).join(', ')} (knock-port's daemon): stop it, then uninstall again`,
        '',
      );
    }
    this.lastCapture = undefined;
  }
}
