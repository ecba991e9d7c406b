/**
 * The firewall backend the daemon and the CLI use, the same for every firewall: grants and
 * revokes through the batching queue (grant-sets.ts), the self-heal, the host firewall's chains
 * (host-firewall.ts) and report mode's counts. What differs per firewall, the rules and how the
 * grant sets are written, is its FirewallDriver (nftables/, iptables/).
 */
import type { AppConfig, IpFamily } from '../config/types.js';
import type { CaptureKind, GrantKind } from '../shared/kinds.js';
import { GrantSets, type GrantEntry } from './grant-sets.js';
import type { HostFirewall, HostFirewallReport } from './host-firewall.js';
import { appForPort, checkServiceGrant, grantableFamily } from './plan.js';
import { sumWouldDrop, type WouldDropCount } from './report-mode.js';
import type { FirewallBackend, FirewallCapabilities, FirewallDriver, Grant, TableOwnershipReport } from './types.js';

/** A set entry as a Grant: service entries name their app when one has that port. */
export function grantOf(kind: GrantKind, family: IpFamily, entry: GrantEntry, apps: readonly AppConfig[]): Grant {
  const { address, protocol, port, expiresInSeconds } = entry;
  if (kind === 'step2' || !protocol || port === undefined) return { kind, family, address, expiresInSeconds };
  const app = appForPort([...apps], protocol, port);
  return { kind, family, address, protocol, port, ...(app ? { app: app.name } : {}), expiresInSeconds };
}

export class Firewall<Driver extends FirewallDriver = FirewallDriver> implements FirewallBackend {
  readonly type: FirewallDriver['type'];
  /** Grant changes, batched per event-loop turn. */
  readonly grants: GrantSets;
  private lastCapture: CaptureKind | undefined;
  private healing: Promise<boolean> | undefined;

  constructor(
    readonly driver: Driver,
    private readonly apps: readonly AppConfig[],
    private readonly host: HostFirewall,
  ) {
    this.type = driver.type;
    this.grants = new GrantSets(driver.grantSets, { maxBatch: driver.maxGrantBatch });
  }

  capabilities(): Promise<FirewallCapabilities> {
    return this.driver.capabilities();
  }

  render(capture: CaptureKind): string {
    return this.driver.describe(capture) + this.host.describeRules();
  }

  async install(capture: CaptureKind): Promise<void> {
    await this.driver.install(capture);
    this.lastCapture = capture;
    await this.host.reconcile();
  }

  isInstalled(): Promise<boolean> {
    return this.driver.isInstalled();
  }

  /** Re-installs when the base ruleset was removed behind our back (true when it did); re-checks the host's chains. */
  ensureInstalled(capture: CaptureKind | undefined = this.lastCapture): Promise<boolean> {
    // A slow check (a held xtables lock, a loaded host) must not pile up behind the next tick.
    this.healing ??= this.heal(capture).finally(() => (this.healing = undefined));
    return this.healing;
  }

  private async heal(capture: CaptureKind | undefined): Promise<boolean> {
    if (!capture) return false;
    await this.driver.reclaim?.();
    if (await this.driver.isInstalled()) {
      await this.host.reconcile();
      return false;
    }
    await this.install(capture);
    return true;
  }

  hostFirewall(): HostFirewallReport {
    return this.host.report();
  }

  tableOwnership(): TableOwnershipReport | undefined {
    return this.driver.tableOwnership?.();
  }

  async grantStep2(ip: string, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.driver.plan, ip);
    await this.grants.add('step2', family, { address: ip }, ttlSeconds);
  }

  async grantService(ip: string, app: AppConfig, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.driver.plan, ip);
    checkServiceGrant(ip, family, app);
    await this.grants.add('service', family, { address: ip, protocol: app.protocol, port: app.port }, ttlSeconds);
  }

  async revoke(ip: string, app?: AppConfig): Promise<void> {
    const family = grantableFamily(this.driver.plan, ip);
    if (app) return this.grants.delete('service', family, { address: ip, protocol: app.protocol, port: app.port });
    const services = (await this.grants.list('service', family)).filter((e) => e.address === ip);
    // Asked for together: one transaction.
    await Promise.all([this.grants.delete('step2', family, { address: ip }), ...services.map((e) => this.grants.delete('service', family, e))]);
  }

  async list(): Promise<Grant[]> {
    const sets = this.driver.plan.grantFamilies.flatMap((family) => (['step2', 'service'] as const).map((kind) => ({ kind, family })));
    const listed = await Promise.all(sets.map(({ kind, family }) => this.grants.list(kind, family)));
    return sets.flatMap(({ kind, family }, i) => listed[i]!.map((e) => grantOf(kind, family, e, this.apps)));
  }

  async wouldDrop(): Promise<WouldDropCount[]> {
    const plan = this.driver.plan;
    if (plan.gateMode !== 'report') return [];
    return sumWouldDrop(plan, await this.driver.ruleCounters());
  }

  /** Releases the grant sets' helpers (the ipset session) once the grants asked for have landed; the rules stay. */
  close(): void {
    this.grants.close();
  }

  /** Removes everything install() made: knock-port's rules in host chains first, then its own rules and sets. */
  async uninstall(): Promise<void> {
    await this.host.remove();
    this.grants.close();
    await this.driver.uninstall();
    this.lastCapture = undefined;
  }
}
