/**
 * iptables + ipset backend. The base ruleset goes in through `iptables-restore --noflush`
 * (one transaction per family) and `ipset restore -exist`; grants are `ipset add ... timeout N
 * -exist`, which also refreshes a live entry's timeout. Works with iptables-nft and -legacy.
 */
import type { AppConfig, IpFamily, Protocol } from '../config/types.js';
import type { CommandRunner } from './command.js';
import type { HostFirewall, HostFirewallReport } from './host-firewall.js';
import { IptablesRuleset, ipsetServiceEntry, type IpsetKind, type Jump } from './iptables-ruleset.js';
import { ALL_FAMILIES, appForPort, checkServiceGrant, familyOf, grantableFamily, type FirewallPlan } from './plan.js';
import type { CaptureKind, FirewallBackend, FirewallCapabilities, Grant } from './types.js';

/** Which iptables binaries: the system default, or explicitly the nf_tables or legacy ones. */
export type IptablesVariant = 'default' | 'nft' | 'legacy';

export function iptablesBinary(variant: IptablesVariant, family: IpFamily, tool: '' | '-restore' = ''): string {
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

export class IptablesFirewall implements FirewallBackend {
  readonly type = 'iptables' as const;
  readonly ruleset: IptablesRuleset;
  private lastCapture: CaptureKind | undefined;

  constructor(
    plan: FirewallPlan,
    name: string,
    private readonly cmd: CommandRunner,
    private readonly apps: AppConfig[],
    private readonly host: HostFirewall,
    private readonly variant: IptablesVariant = 'default',
  ) {
    this.ruleset = new IptablesRuleset(plan, name);
  }

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
    this.cmd.run('ipset', ['restore', '-exist'], this.ruleset.ipsetScript());
    for (const family of ALL_FAMILIES) {
      const missing = this.ruleset.jumps().filter((j) => !this.hasJump(family, j));
      this.cmd.run(iptablesBinary(this.variant, family, '-restore'), ['-w', '--noflush'], this.ruleset.restoreScript(family, capture, missing));
    }
    this.lastCapture = capture;
    this.host.reconcile();
  }

  async ensureInstalled(capture: CaptureKind | undefined = this.lastCapture): Promise<boolean> {
    if (!capture) return false;
    if (this.isInstalled()) {
      this.host.reconcile();
      return false;
    }
    await this.install(capture);
    return true;
  }

  private isInstalled(): boolean {
    const step1 = this.ruleset.chain('STEP1');
    return ALL_FAMILIES.every((family) => {
      if (!this.ruleset.jumps().every((j) => this.hasJump(family, j))) return false;
      try {
        return this.iptables(family, ['-S', step1]).split('\n').filter((l) => l.startsWith('-A')).length > 0;
      } catch {
        return false;
      }
    });
  }

  private iptables(family: IpFamily, args: string[]): string {
    return this.cmd.run(iptablesBinary(this.variant, family), ['-w', ...args]);
  }

  private hasJump(family: IpFamily, j: Jump): boolean {
    try {
      this.iptables(family, ['-t', j.table, '-C', j.from, '-j', j.to]);
      return true;
    } catch {
      return false;
    }
  }

  async grantStep2(ip: string, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    this.add('step2', family, ip, ttlSeconds);
  }

  async grantService(ip: string, app: AppConfig, ttlSeconds: number): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    checkServiceGrant(ip, family, app);
    this.add('service', family, ipsetServiceEntry(ip, app.protocol, app.port), ttlSeconds);
  }

  /** `-exist` makes a repeated grant refresh the entry's timeout instead of failing. */
  private add(kind: IpsetKind, family: IpFamily, entry: string, ttlSeconds: number): void {
    const ttl = String(Math.max(1, Math.round(ttlSeconds)));
    this.cmd.run('ipset', ['add', this.ruleset.setName(kind, family), entry, 'timeout', ttl, '-exist']);
  }

  async revoke(ip: string, app?: AppConfig): Promise<void> {
    const family = grantableFamily(this.ruleset.plan, ip);
    const service = this.ruleset.setName('service', family);
    if (app) {
      this.cmd.run('ipset', ['del', service, ipsetServiceEntry(ip, app.protocol, app.port), '-exist']);
      return;
    }
    this.cmd.run('ipset', ['del', this.ruleset.setName('step2', family), ip, '-exist']);
    for (const g of await this.list()) {
      if (g.kind === 'service' && g.address === ip && g.protocol && g.port) {
        this.cmd.run('ipset', ['del', service, ipsetServiceEntry(ip, g.protocol, g.port), '-exist']);
      }
    }
  }

  async list(): Promise<Grant[]> {
    const grants: Grant[] = [];
    for (const family of this.ruleset.plan.grantFamilies) {
      for (const kind of ['step2', 'service'] as const) {
        const saved = this.cmd.run('ipset', ['list', this.ruleset.setName(kind, family), '-o', 'save']);
        for (const { entry, timeout } of parseIpsetSave(saved)) grants.push(this.toGrant(kind, entry, timeout));
      }
    }
    return grants;
  }

  private toGrant(kind: IpsetKind, entry: string, expiresInSeconds: number): Grant {
    if (kind === 'step2') return { kind, family: familyOf(entry), address: entry, expiresInSeconds };
    const comma = entry.lastIndexOf(',');
    const address = entry.slice(0, comma);
    const [protocol, port] = entry.slice(comma + 1).split(':') as [Protocol, string];
    const app = appForPort(this.apps, protocol, Number(port));
    return { kind, family: familyOf(address), address, protocol, port: Number(port), ...(app ? { app: app.name } : {}), expiresInSeconds };
  }

  /** Removes the jumps, own chains and own sets; each step tolerates a partial install. */
  async uninstall(): Promise<void> {
    this.host.remove();
    for (const family of ALL_FAMILIES) {
      for (const j of this.ruleset.jumps()) {
        for (let i = 0; i < 10 && this.hasJump(family, j); i++) this.iptables(family, ['-t', j.table, '-D', j.from, '-j', j.to]);
      }
      const chains = this.ruleset.chains(family, 'nflog');
      for (const table of ['raw', 'mangle', 'filter', 'nat'] as const) {
        for (const op of ['-F', '-X']) {
          for (const c of chains[table]) this.tolerate(() => this.iptables(family, ['-t', table, op, c.name]));
        }
      }
    }
    for (const set of this.ruleset.sets()) this.tolerate(() => this.cmd.run('ipset', ['destroy', set.name]));
    this.lastCapture = undefined;
  }

  /** Missing objects are fine when removing. */
  private tolerate(step: () => void): void {
    try {
      step();
    } catch {
      // already absent
    }
  }
}
