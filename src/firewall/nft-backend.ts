/**
 * I/O shared by the nft-based backends (nftables, VyOS): runs the scripts NftRuleset
 * generates, reads grants back from the kernel, probes which capture the kernel has.
 */
import type { AppConfig, FirewallType, IpFamily, Protocol } from '../config/types.js';
import type { HostFirewall, HostFirewallReport } from './host-firewall.js';
import type { NftRunner } from './nft-runner.js';
import { NftRuleset, grantSetName, serviceElement, tableRef, type GrantSetKind, type NftLayout } from './nft-ruleset.js';
import { appForPort, checkServiceGrant, familyOf, grantableFamily, type FirewallPlan } from './plan.js';
import type { CaptureKind, FirewallBackend, FirewallCapabilities, Grant } from './types.js';

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

export abstract class NftFirewallBase implements FirewallBackend {
  abstract readonly type: FirewallType;
  readonly ruleset: NftRuleset;
  private lastCapture: CaptureKind | undefined;

  constructor(
    plan: FirewallPlan,
    layout: NftLayout,
    protected readonly nft: NftRunner,
    private readonly apps: AppConfig[],
    private readonly host: HostFirewall,
  ) {
    this.ruleset = new NftRuleset(plan, layout);
  }

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
    this.nft.run(this.ruleset.installScript(capture));
    this.lastCapture = capture;
    this.host.reconcile();
  }

  /** Re-installs when the base ruleset was removed behind our back (true when it did); re-checks the host's chains. */
  async ensureInstalled(capture: CaptureKind | undefined = this.lastCapture): Promise<boolean> {
    if (!capture) return false;
    if (this.isInstalled()) {
      this.host.reconcile();
      return false;
    }
    await this.install(capture);
    return true;
  }

  hostFirewall(): HostFirewallReport {
    return this.host.report();
  }

  /** True while every table still holds knock-port's step-1 gate. */
  protected abstract isInstalled(): boolean;

  async grantStep2(ip: string, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    this.nft.run(this.ruleset.grantScript('step2', family, ip, ttlSeconds));
  }

  async grantService(ip: string, app: AppConfig, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    checkServiceGrant(ip, family, app);
    this.nft.run(this.ruleset.grantScript('service', family, serviceElement(ip, app.protocol, app.port), ttlSeconds));
  }

  async revoke(ip: string, app?: AppConfig): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    const entries: Array<{ kind: GrantSetKind; family: IpFamily; element: string }> = [];
    if (app) {
      entries.push({ kind: 'service', family, element: serviceElement(ip, app.protocol, app.port) });
    } else {
      entries.push({ kind: 'step2', family, element: ip });
      for (const g of await this.list()) {
        if (g.kind === 'service' && g.address === ip && g.protocol && g.port) {
          entries.push({ kind: 'service', family, element: serviceElement(ip, g.protocol, g.port) });
        }
      }
    }
    this.nft.run(this.ruleset.revokeScript(entries));
  }

  async list(): Promise<Grant[]> {
    const grants: Grant[] = [];
    for (const family of this.ruleset.plan.grantFamilies) {
      for (const kind of ['step2', 'service'] as const) {
        const set = `${tableRef(this.ruleset.tableFor(family))} ${grantSetName(this.ruleset.layout, kind, family)}`;
        for (const e of parseSetElements(this.nft.run(`list set ${set}`, { json: true }))) {
          grants.push(this.toGrant(kind, e));
        }
      }
    }
    return grants;
  }

  private toGrant(kind: GrantSetKind, e: NftSetElement): Grant {
    const expiresInSeconds = e.expires ?? e.timeout ?? 0;
    if (typeof e.val === 'string') return { kind, family: familyOf(e.val), address: e.val, expiresInSeconds };
    const [address, protocol, port] = e.val.concat as [string, Protocol, number];
    const app = appForPort(this.apps, protocol, port);
    return { kind, family: familyOf(address), address, protocol, port, ...(app ? { app: app.name } : {}), expiresInSeconds };
  }

  async uninstall(): Promise<void> {
    this.host.remove();
    this.nft.run(this.ruleset.uninstallScript());
    this.lastCapture = undefined;
  }
}
