/**
 * VyOS: the gate lives in a table of knock-port's own (`inet knockport`), like the nftables
 * backend, and never inside VyOS's `vyos_filter` tables, which every VyOS commit rebuilds:
 * whatever a commit flushes, protected ports stay dropped. VyOS's own input and forward
 * filters are host chains like any other (host-firewall.ts): where they could drop,
 * knock-port's accept rule for granted connections sits at their top, and a commit that
 * removes it is undone by the next self-heal (meanwhile granted connections are dropped,
 * never the other way round). The step-1 rules, the in-kernel prefilter and the fanout over
 * step-1 workers included, are the nftables backend's (nft-ruleset.ts), in that same table.
 * On kernels 6.9+ that table, and only that one, is owned by the daemon (nft-backend.ts): VyOS's
 * own tables are never owned, so its commits keep working as before.
 */
import type { AppConfig } from '../config/types.js';
import type { HostFirewall } from './host-firewall.js';
import type { NftRunner } from './nft-runner.js';
import { NftablesFirewall } from './nftables.js';
import type { FirewallPlan } from './plan.js';

/** The tables a VyOS commit rebuilds. */
export const VYOS_TABLE = 'vyos_filter';

export class VyosFirewall extends NftablesFirewall {
  constructor(plan: FirewallPlan, tableName: string, nft: NftRunner, apps: AppConfig[], host: HostFirewall) {
    super(plan, tableName, nft, apps, host, 'vyos');
  }
}
