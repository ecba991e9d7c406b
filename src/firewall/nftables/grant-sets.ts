/**
 * The nftables grant sets, for the batching queue (grant-sets.ts): the grants of one event-loop
 * turn become one nft script, one netlink transaction (libnftables on its own thread, or one
 * `nft` child process awaited when the addon is missing); a failed one changes nothing.
 */
import type { IpFamily, Protocol } from '../../config/types.js';
import type { GrantKind } from '../../shared/kinds.js';
import type { GrantChange, GrantEntry, GrantKey, GrantSetDriver } from '../grant-sets.js';
import { runNft, type NftRunner } from '../nft-runner.js';
import { serviceElement, type NftRuleset } from './ruleset.js';

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

function toEntry(e: NftSetElement): GrantEntry {
  const expiresInSeconds = e.expires ?? e.timeout ?? 0;
  if (typeof e.val === 'string') return { address: e.val, expiresInSeconds };
  const [address, protocol, port] = e.val.concat as [string, Protocol, number];
  return { address, protocol, port, expiresInSeconds };
}

/** An element as nft writes it: the address, or `address . protocol . port`. */
function nftElement(key: GrantKey): string {
  return key.protocol && key.port !== undefined ? serviceElement(key.address, key.protocol, key.port) : key.address;
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
      const set = ruleset.grantSet(change.kind, change.family);
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
    return parseSetElements(await runNft(this.nft, `list set ${this.ruleset.grantSet(kind, family)}`, { json: true })).map(toEntry);
  }
}
