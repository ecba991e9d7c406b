/**
 * The nftables backend, and VyOS's: everything in one `inet` table of knock-port's own, both
 * families. Runs the scripts NftRuleset (ruleset.ts) generates, probes which capture the kernel
 * has, reads report mode's counters back; grants are nftables/grant-sets.ts.
 *
 * VyOS is this backend under its own type name: the gate lives in that same table of
 * knock-port's own, never inside VyOS's `vyos_filter` tables, which every VyOS commit rebuilds:
 * whatever a commit flushes, protected ports stay dropped. VyOS's own input and forward filters
 * are host chains like any other (host-firewall.ts): where they could drop, knock-port's accept
 * rule for granted connections sits at their top, and a commit that removes it is undone by the
 * next self-heal (meanwhile granted connections are dropped, never the other way round).
 *
 * Kernel 6.9+: knock-port's table, and only that one, is owned by the daemon's libnftables
 * thread (table flags owner and persist, see nft-runner.ts): another process's `nft flush
 * ruleset` leaves it in place, `nft delete table` is refused, and after the daemon ends (even
 * killed) the table stays, orphaned, until the next daemon adopts it or `knock-port uninstall`
 * deletes it. VyOS's own tables are never owned, so its commits keep working as before. Older
 * kernels: as before.
 */
import { constants as osConstants } from 'node:os';
import type { CaptureKind } from '../../shared/kinds.js';
import { NftError, runNft, tableRef, type NftRunner, type NftTable, type TableOwnershipSupport } from '../nft-runner.js';
import type { FirewallPlan } from '../plan.js';
import type { FirewallCapabilities, FirewallDriver, TableOwnershipReport } from '../types.js';
import { NftGrantDriver } from './grant-sets.js';
import { NftRuleset } from './ruleset.js';

const { EPERM } = osConstants.errno;

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

/**
 * An install script without the declaration of `table` (`add table inet knockport`): nft sends a
 * declaration with table flags 0, which the kernel refuses on an owned (or persist) table.
 */
export function withoutTableDeclaration(script: string, table: NftTable): string {
  const declaration = `add table ${tableRef(table)}`;
  return script
    .split('\n')
    .filter((line) => line.trim() !== declaration)
    .join('\n');
}

/**
 * Whether `table` exists now, from `nft list tables` as text: nft before 1.1 reads past its
 * table flag names when it writes the flag persist as JSON, so no table is listed as JSON.
 */
export function tablePresent(listing: string, table: NftTable): boolean {
  return listing.split('\n').some((line) => line.trim() === `table ${tableRef(table)}`);
}

/** The operator's line on how knock-port's table is kept, from what ownTable found. */
export function describeOwnership(table: NftTable, support: TableOwnershipSupport, refusal: string | undefined): TableOwnershipReport {
  const ref = `table ${tableRef(table)}`;
  if (!support.supported) {
    return { owned: false, summary: `${ref} not owned (${support.reason}): a host \`nft flush ruleset\` removes it until the next self-heal` };
  }
  if (refusal !== undefined) return { owned: false, summary: `${ref} not owned: ${refusal}` };
  return {
    owned: true,
    summary: `${ref} owned by this daemon (table flags owner, persist): a host \`nft flush ruleset\` or \`nft delete table\` leaves it in place`,
  };
}

/** The chains that hold report mode's counting rules (ruleset.ts). */
const COUNTING_CHAINS = ['prerouting_mark', 'forward_filter'];

export class NftablesDriver implements FirewallDriver {
  readonly ruleset: NftRuleset;
  readonly grantSets: NftGrantDriver;
  readonly maxGrantBatch: number;
  private ownership: TableOwnershipReport | undefined;

  constructor(
    readonly plan: FirewallPlan,
    tableName: string,
    private readonly nft: NftRunner,
    readonly type: 'nftables' | 'vyos' = 'nftables',
  ) {
    this.ruleset = new NftRuleset(plan, tableName);
    this.grantSets = new NftGrantDriver(nft, this.ruleset);
    // libnftables parses about 1.5 ms per 64 grants (10 ms per 256 service grants), on its own thread
    // or, without it, on this one: small transactions keep either free between them, so a grant
    // that arrives during a burst waits for one short transaction, not the whole burst. A forked
    // nft parses in its own process.
    this.maxGrantBatch = nft.kind === 'libnftables' ? 64 : 1024;
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

  describe(capture: CaptureKind): string {
    return this.ruleset.installScript(capture);
  }

  async install(capture: CaptureKind): Promise<void> {
    const script = this.ruleset.installScript(capture);
    await runNft(this.nft, (await this.ownTable()) ? withoutTableDeclaration(script, this.ruleset.table) : script);
  }

  /** Adopts the table again after the libnftables thread was restarted, and owns one that a host flush removed while it was not owned. */
  async reclaim(): Promise<void> {
    await this.ownTable();
  }

  /** One small listing, in-process with libnftables: cheap enough for every self-heal tick. */
  async isInstalled(): Promise<boolean> {
    try {
      const listing = await runNft(this.nft, `list chain ${tableRef(this.ruleset.table)} step1`, { json: true });
      return listing.includes('"rule"');
    } catch {
      return false;
    }
  }

  /** How the last install or self-heal left knock-port's table (owned or not, and why). */
  tableOwnership(): TableOwnershipReport | undefined {
    return this.ownership;
  }

  /**
   * Makes knock-port's table owned by the socket the runner writes through, where the kernel
   * can keep it so (owner and persist); true when it is owned now. Elsewhere nothing changes.
   * Throws when another process owns it: nothing knock-port sends could change it.
   */
  private async ownTable(): Promise<boolean> {
    const table = this.ruleset.table;
    const support: TableOwnershipSupport = (this.nft.ownTable && this.nft.tableOwnership?.()) || {
      supported: false,
      reason: 'nft runs as a command here, not in-process',
    };
    let owned = false;
    let refusal: string | undefined;
    if (support.supported) {
      const outcome = await this.nft.ownTable!(table);
      if (outcome.owned) owned = true;
      else if (outcome.errno === EPERM) throw new NftError(`${outcome.reason}: stop it first`, '');
      else refusal = outcome.reason;
    }
    this.ownership = describeOwnership(table, support, refusal);
    return owned;
  }

  async ruleCounters(): Promise<Array<{ comment: string; packets: number }>> {
    const table = tableRef(this.ruleset.table);
    const listings = await Promise.all(COUNTING_CHAINS.map((chain) => runNft(this.nft, `list chain ${table} ${chain}`, { json: true })));
    return listings.flatMap(parseRuleCounters);
  }

  /**
   * Deletes the table when it exists (an orphaned owned table included: nft cannot declare one,
   * so nothing is declared first); refused while a running daemon owns it.
   */
  async uninstall(): Promise<void> {
    const ref = tableRef(this.ruleset.table);
    if (!tablePresent(await runNft(this.nft, 'list tables\n'), this.ruleset.table)) return;
    try {
      await runNft(this.nft, `delete table ${ref}\n`);
    } catch (e) {
      if (!/Operation not permitted/.test((e as Error).message)) throw e;
      throw new NftError(`a running process owns table ${ref} (knock-port's daemon): stop it, then uninstall again`, '');
    }
  }
}
