/**
 * The nftables backend: everything in one `inet` table of knock-port's own, for both families.
 * The I/O is nft-backend.ts and the rules nft-ruleset.ts; the VyOS backend reuses this class.
 * On kernels 6.9+ the table is owned by the daemon (nft-backend.ts): a host `flush ruleset`
 * leaves it in place.
 */
import type { AppConfig } from '../config/types.js';
import type { HostFirewall } from './host-firewall.js';
import { runNft, type NftRunner } from './nft-runner.js';
import { NftFirewallBase } from './nft-backend.js';
import type { NftLayout, NftTable } from './nft-ruleset.js';
import type { FirewallPlan } from './plan.js';

/** Everything in one table of knock-port's own (default `inet knockport`), both families. */
export function nftablesLayout(tableName: string): NftLayout {
  return { tables: [{ family: 'inet', name: tableName }], prefix: '' };
}

export class NftablesFirewall extends NftFirewallBase {
  constructor(
    plan: FirewallPlan,
    tableName: string,
    nft: NftRunner,
    apps: AppConfig[],
    host: HostFirewall,
    readonly type: 'nftables' | 'vyos' = 'nftables',
  ) {
    super(plan, nftablesLayout(tableName), nft, apps, host);
  }

  /** The one table is knock-port's own: owned by the daemon where the kernel can keep it so. */
  protected override ownableTables(): NftTable[] {
    return this.ruleset.layout.tables;
  }

  /** One small listing, in-process with libnftables: cheap enough for every self-heal tick. */
  async isInstalled(): Promise<boolean> {
    const table = this.ruleset.layout.tables[0]!;
    try {
      const listing = await runNft(this.nft, `list chain ${table.family} ${table.name} step1`, { json: true });
      return listing.includes('"rule"');
    } catch {
      return false;
    }
  }
}
