/**
 * VyOS: knock-port's rules and sets live inside VyOS's own `vyos_filter` tables (ip and
 * ip6). The gate rules fill the named chains VyOS's input and forward filters jump to
 * (`NAME_IN-KnockPort` / `NAME_FWD-KnockPort`, IPv6: `NAME6_...`). A VyOS commit rebuilds
 * those tables and drops everything knock-port added: ensureInstalled() puts it back.
 */
import type { AppConfig } from '../config/types.js';
import { KnockPortError } from '../errors.js';
import { NftFirewallBase } from './nft-backend.js';
import type { NftRunner } from './nft-runner.js';
import { GATE_MARKER, tableRef, type GateChains, type NftLayout, type NftTable } from './nft-ruleset.js';
import type { FirewallPlan } from './plan.js';

export const VYOS_TABLE = 'vyos_filter';
/** VyOS names: `set firewall ipv4 name IN-KnockPort` creates the nft chain `NAME_IN-KnockPort`. */
const VYOS_NAMES = { input: 'IN-KnockPort', forward: 'FWD-KnockPort' };

export function vyosGateChains(table: NftTable): GateChains {
  const prefix = table.family === 'ip6' ? 'NAME6_' : 'NAME_';
  return { input: `${prefix}${VYOS_NAMES.input}`, forward: `${prefix}${VYOS_NAMES.forward}` };
}

export function vyosLayout(): NftLayout {
  return {
    tables: [
      { family: 'ip', name: VYOS_TABLE },
      { family: 'ip6', name: VYOS_TABLE },
    ],
    prefix: 'KnockPort_',
    gateChains: vyosGateChains,
  };
}

/** The VyOS configuration that creates the chains knock-port fills (run once, then commit). */
export const VYOS_SETUP_COMMANDS = (['ipv4', 'ipv6'] as const)
  .flatMap((v) => [
    `set firewall ${v} name ${VYOS_NAMES.input} default-action continue`,
    `set firewall ${v} input filter rule 9999 action jump`,
    `set firewall ${v} input filter rule 9999 jump-target ${VYOS_NAMES.input}`,
    `set firewall ${v} name ${VYOS_NAMES.forward} default-action continue`,
    `set firewall ${v} forward filter rule 9999 action jump`,
    `set firewall ${v} forward filter rule 9999 jump-target ${VYOS_NAMES.forward}`,
  ])
  .concat(['commit', 'save']);

export class VyosNotConfiguredError extends KnockPortError {
  constructor(missing: string[]) {
    super(
      `VyOS firewall chains missing: ${missing.join(', ')}. In VyOS configure mode run:\n  ${VYOS_SETUP_COMMANDS.join('\n  ')}`,
    );
  }
}

export class VyosFirewall extends NftFirewallBase {
  readonly type = 'vyos' as const;

  constructor(plan: FirewallPlan, nft: NftRunner, apps: AppConfig[]) {
    super(plan, vyosLayout(), nft, apps);
  }

  override async install(capture: Parameters<NftFirewallBase['install']>[0]): Promise<void> {
    const missing = this.missingGateChains();
    if (missing.length > 0) throw new VyosNotConfiguredError(missing);
    await super.install(capture);
  }

  protected isInstalled(): boolean {
    return this.ruleset.layout.tables.every((table) => {
      const listing = this.listChain(table, vyosGateChains(table).input);
      return listing !== undefined && listing.includes(GATE_MARKER);
    });
  }

  protected override uninstallScript(): string {
    return this.ruleset.uninstallScript((table) => this.gateChainsExist(table));
  }

  private gateChainsExist(table: NftTable): boolean {
    return Object.values(vyosGateChains(table)).every((chain) => this.listChain(table, chain) !== undefined);
  }

  private missingGateChains(): string[] {
    return this.ruleset.layout.tables.flatMap((table) =>
      Object.values(vyosGateChains(table))
        .filter((chain) => this.listChain(table, chain) === undefined)
        .map((chain) => `${tableRef(table)} ${chain}`),
    );
  }

  /** The chain as JSON, or undefined when it (or its table) does not exist. */
  private listChain(table: NftTable, chain: string): string | undefined {
    try {
      return this.nft.run(`list chain ${tableRef(table)} ${chain}`, { json: true });
    } catch {
      return undefined;
    }
  }
}
