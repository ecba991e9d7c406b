/**
 * The ipset grant sets, for the batching queue (grant-sets.ts): a batch is `add ... timeout N
 * -exist` and `del ... -exist` lines written to one long-lived `ipset -` session
 * (ipset-session.ts), each answered on its own: no fork per grant.
 */
import type { IpFamily, Protocol } from '../../config/types.js';
import type { GrantKind } from '../../shared/kinds.js';
import { FirewallCommandError, runCommand, type CommandRunner } from '../command.js';
import type { GrantChange, GrantEntry, GrantKey, GrantSetDriver } from '../grant-sets.js';
import type { IpsetSession } from './ipset-session.js';
import { ipsetServiceEntry, type IptablesRuleset } from './ruleset.js';

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
