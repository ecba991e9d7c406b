/**
 * The nft ruleset knock-port installs, as `nft -f` text. Pure. Everything lives in one `inet`
 * table of knock-port's own (`inet knockport`, both families), on both the nftables and the
 * VyOS backends: a flush of someone else's tables (a VyOS commit, a host firewall reload) never
 * reaches the gate, so protected ports stay dropped whatever happens there.
 */
import type { IpFamily, Protocol } from '../../config/types.js';
import { nftInterfaceName } from '../../config/interface-name.js';
import { tableRef, type NftTable } from '../nft-runner.js';
import { ALL_FAMILIES, allowedNetworks, hostPort, matchesInterface, PREFILTER_COMMENT, type FirewallPlan, type ForwardedApp } from '../plan.js';
import { WOULD_DROP_LOG, wouldDropComment } from '../report-mode.js';
import type { AppConfig } from '../../config/types.js';
import type { CaptureKind, GrantKind } from '../../shared/kinds.js';

/** Words that differ between IPv4 and IPv6 in nft rules. */
function fam(family: IpFamily): { addr: 'ip' | 'ip6'; type: string; tag: string; nfproto: string } {
  return family === 4 ? { addr: 'ip', type: 'ipv4_addr', tag: 'v4', nfproto: 'ipv4' } : { addr: 'ip6', type: 'ipv6_addr', tag: 'v6', nfproto: 'ipv6' };
}

export function grantSetName(kind: GrantKind, family: IpFamily): string {
  return `${kind}_${fam(family).tag}`;
}

/** Service grants are keyed by source, protocol and the app's public port. */
export function serviceElement(ip: string, protocol: Protocol, port: number): string {
  return `${ip} . ${protocol} . ${port}`;
}

interface ChainSpec {
  name: string;
  /** `type ... hook ... priority ...` for base chains. */
  base?: string;
  rules: string[];
}

// Config names are translated to nft's wildcard (`ppp+` would match no interface at all).
const iif = (name: string): string => (nftInterfaceName(name) === undefined ? '' : `iifname "${nftInterfaceName(name)}" `);
const oif = (name: string): string => (nftInterfaceName(name) === undefined ? '' : `oifname "${nftInterfaceName(name)}" `);

/** `ct mark & M == M`: the connection carries the grant mark (the other bits are other tools'). */
export function grantMarked(grantMark: number): string {
  const mark = hexMark(grantMark);
  return `ct mark & ${mark} == ${mark}`;
}

const hexMark = (mark: number): string => `0x${mark.toString(16).padStart(8, '0')}`;

/**
 * Report mode, appended to a rule that matches what the gate would drop at `app`'s port: counts
 * every such packet and logs a few a minute (the limit ends the rule, never the counting); no
 * verdict, so the packet goes on. The comment names the counter (`knock-port would drop tcp/22`).
 */
function countWouldDrop(app: Pick<AppConfig, 'protocol' | 'port'>): string {
  const log = `limit rate ${WOULD_DROP_LOG.perMinute}/minute burst ${WOULD_DROP_LOG.burst} packets log prefix "${WOULD_DROP_LOG.prefix}" level warn`;
  return `counter ${log} comment "${wouldDropComment(app.protocol, app.port)}"`;
}

/** Packets addressed to this host: never the same port on a LAN host routed through it. */
const TO_THIS_HOST = 'fib daddr type local';

/**
 * `@ih,OFFSET,BITS VALUE` compares covering `prefix` from the payload's first byte: nft compares
 * at most 128 bits per payload expression (PREFILTER_MAX_BYTES says how many fit in one rule).
 */
export function nftPrefixMatch(prefix: Buffer): string {
  const parts: string[] = [];
  for (let start = 0; start < prefix.length; start += 16) {
    const chunk = prefix.subarray(start, Math.min(prefix.length, start + 16));
    parts.push(`@ih,${start * 8},${chunk.length * 8} 0x${chunk.toString('hex')}`);
  }
  return parts.join(' ');
}

/** The CPU ids (below `cpuCount`) whose step-1 packets go to `worker`'s log group: c mod N. */
export function cpusOfWorker(worker: number, workers: number, cpuCount: number): number[] {
  const ids: number[] = [];
  for (let cpu = worker; cpu < cpuCount; cpu += workers) ids.push(cpu);
  return ids;
}

/** Generates every script the nft-based backends run. */
export class NftRuleset {
  /** knock-port's own table: `inet`, so one table holds both families. */
  readonly table: NftTable;

  constructor(
    readonly plan: FirewallPlan,
    tableName: string,
  ) {
    this.table = { family: 'inet', name: tableName };
  }

  /** `inet knockport step2_v4`: a grant set as nft names it. */
  grantSet(kind: GrantKind, family: IpFamily): string {
    return `${tableRef(this.table)} ${grantSetName(kind, family)}`;
  }

  /** The whole base ruleset: one transaction, idempotent, live grant elements kept. */
  installScript(capture: CaptureKind): string {
    const ref = tableRef(this.table);
    const lines = [`add table ${ref}`];
    for (const set of this.sets()) lines.push(`add set ${ref} ${set.name} { ${set.spec} }`);
    const chains = this.chains(capture);
    // Chains first (rules may jump forward), then flush and refill: sets are never flushed.
    for (const c of chains) lines.push(c.base ? `add chain ${ref} ${c.name} { ${c.base}; policy accept; }` : `add chain ${ref} ${c.name}`);
    for (const c of chains) lines.push(`flush chain ${ref} ${c.name}`);
    for (const c of chains) for (const rule of c.rules) lines.push(`add rule ${ref} ${c.name} ${rule}`);
    return lines.join('\n') + '\n';
  }

  /** A scratch ruleset that only passes `nft -c` where the kernel supports the capture statement. */
  captureProbeScript(capture: CaptureKind): string {
    const ref = 'inet knockport_probe';
    return `add table ${ref}\nadd chain ${ref} probe\nadd rule ${ref} probe ${this.captureStatement(capture)}\n`;
  }

  private sets(): Array<{ name: string; spec: string }> {
    const sets: Array<{ name: string; spec: string }> = [];
    for (const f of this.plan.grantFamilies) {
      const { type } = fam(f);
      sets.push({ name: grantSetName('step2', f), spec: `type ${type}; flags timeout;` });
      sets.push({ name: grantSetName('service', f), spec: `type ${type} . inet_proto . inet_service; flags timeout;` });
    }
    return sets;
  }

  private chains(capture: CaptureKind): ChainSpec[] {
    const p = this.plan;
    return [
      {
        name: 'prerouting_raw',
        base: 'type filter hook prerouting priority raw',
        rules: [`${iif(p.interfaceExt)}tcp dport ${p.step1Port} ${TO_THIS_HOST} notrack`],
      },
      // Step 1 is judged here, before every filter hook: no host filter chain, whatever its
      // priority, can drop a knock before knock-port sees it.
      {
        name: 'prerouting_step1',
        base: 'type filter hook prerouting priority raw + 10',
        rules: [`${iif(p.interfaceExt)}tcp dport ${p.step1Port} ${TO_THIS_HOST} goto step1`],
      },
      { name: 'output_raw', base: 'type filter hook output priority raw', rules: [`${oif(p.interfaceExt)}tcp sport ${p.step1Port} notrack`] },
      // After conntrack (-200), before mangle and every filter: host chains see the grant mark.
      { name: 'prerouting_mark', base: 'type filter hook prerouting priority mangle - 30', rules: this.grantMarks() },
      { name: 'input_filter', base: 'type filter hook input priority filter - 10', rules: this.inputGate() },
      { name: 'step1', rules: this.step1() },
      { name: 'step1_budget', rules: [this.step1Budget()] },
      { name: 'step1_capture', rules: this.step1Capture(capture) },
      { name: 'step2', rules: this.step2() },
      { name: 'service', rules: this.service() },
      { name: 'forward_filter', base: 'type filter hook forward priority filter - 10', rules: this.forwardGate() },
      {
        name: 'output_filter',
        base: 'type filter hook output priority filter - 10',
        rules: [`${oif(p.interfaceExt)}tcp sport ${p.step1Port} meta mark != ${hexMark(p.packetMark)} drop`],
      },
      { name: 'prerouting_nat', base: 'type nat hook prerouting priority dstnat', rules: this.dnat() },
      { name: 'postrouting_nat', base: 'type nat hook postrouting priority srcnat', rules: this.masquerade() },
    ];
  }

  /**
   * Marks the connections the gate lets in (a conntrack mark bit), so that a host ruleset that
   * drops by default can accept exactly those (see host-firewall.ts), and so that the gate can
   * tell a granted established flow from one opened while the gate was missing. Only packets
   * addressed to this host are marked: a grant for port 22 opens this host's port 22, never
   * port 22 on a LAN host routed through it; a forwarded app's flow is marked before its DNAT,
   * which requires the same. Every packet is looked at, not only the first: a granted flow that
   * lost its mark (a host `flush ruleset`) gets it back, one without a grant never does.
   */
  private grantMarks(): string[] {
    const p = this.plan;
    const mark = `ct mark set ct mark or ${hexMark(p.grantMark)}`;
    const rules: string[] = [];
    for (const f of this.plan.grantFamilies) {
      const { addr } = fam(f);
      rules.push(`${iif(p.interfaceExt)}tcp dport ${p.step2Port} ${TO_THIS_HOST} ${addr} saddr @${grantSetName('step2', f)} ${mark}`);
      const services = `${TO_THIS_HOST} ${addr} saddr . meta l4proto . th dport @${grantSetName('service', f)} ${mark}`;
      const apps = [
        ...p.localApps,
        ...this.forwarded(true)
          .filter((a) => a.family === f)
          .map(({ app }) => app),
      ];
      for (const app of apps) {
        rules.push(`${iif(app.interfaceExt)}${app.protocol} dport ${app.port} ${services}`);
        const allowed = this.allowedSources(app, f);
        if (allowed) rules.push(`${iif(app.interfaceExt)}${app.protocol} dport ${app.port} ${TO_THIS_HOST} ${allowed} ${mark}`);
      }
    }
    return [...rules, ...this.wouldDropCounts()];
  }

  /**
   * Report mode: a packet to an app's port on this host whose connection the rules above left
   * without the grant mark is exactly one the gate drops in enforce mode (no grant, no
   * always-allowed source, no granted flow; any family, granted or not). Counted here, before
   * DNAT, once for local and forwarded apps alike.
   */
  private wouldDropCounts(): string[] {
    if (this.plan.gateMode !== 'report') return [];
    const unmarked = `ct mark & ${hexMark(this.plan.grantMark)} != ${hexMark(this.plan.grantMark)}`;
    const apps = [...this.plan.localApps, ...this.forwarded(false).map(({ app }) => app)];
    return [...new Set(apps.map((app) => `${iif(app.interfaceExt)}${app.protocol} dport ${app.port} ${TO_THIS_HOST} ${unmarked} ${countWouldDrop(app)}`))];
  }

  /** `ip saddr { NETS }` for the app's always-allowed networks of `family`, or undefined when it has none. */
  private allowedSources(app: FirewallPlan['localApps'][number], family: IpFamily): string | undefined {
    const networks = allowedNetworks(app, family);
    return networks.length === 0 ? undefined : `${fam(family).addr} saddr { ${networks.join(', ')} }`;
  }

  /**
   * Established traffic of a granted connection, in the direction the client opened it. Without
   * the mark, a flow opened while the gate was missing (a host firewall reload) would pass as
   * established forever. After a revoke deletes a flow, a local server that keeps sending
   * (OpenVPN keepalives) re-creates it the other way round; the client's packets are then the
   * reply direction and must not pass as established either.
   */
  private establishedFromClient(): string {
    return `ct state established,related ct direction original ${grantMarked(this.plan.grantMark)} accept`;
  }

  private inputGate(): string[] {
    const p = this.plan;
    const rules = [`${iif(p.interfaceExt)}tcp dport ${p.step2Port} goto step2`];
    // With no external interface named, only loopback (where a local proxy connects) may reach the internal port.
    if (p.internalStep2Port !== undefined)
      rules.push(`${matchesInterface(p.interfaceExt) ? iif(p.interfaceExt) : 'iifname != "lo" '}tcp dport ${p.internalStep2Port} drop`);
    for (const app of p.localApps) rules.push(`${iif(app.interfaceExt)}${app.protocol} dport ${app.port} goto service`);
    // Granted sources are DNATed before input; what still arrives here for the port has no grant.
    if (p.gateMode === 'enforce') for (const { app } of p.forwardedApps) rules.push(`${iif(app.interfaceExt)}${app.protocol} dport ${app.port} drop`);
    return rules;
  }

  /** Families that cannot be granted are dropped before anything else. */
  private ungrantedFamilyDrop(): string[] {
    return ALL_FAMILIES.filter((f) => !this.plan.grantFamilies.includes(f)).map((f) => `meta nfproto ${fam(f).nfproto} drop`);
  }

  private step1(): string[] {
    const capture = `goto step1_capture`;
    const prefix = this.plan.step1Prefilter;
    const syn = 'tcp flags & (fin|syn|rst|ack) == syn';
    const data = 'tcp flags & (syn|rst|ack) == ack';
    // Loading the first payload byte fails on a segment without payload: pure ACKs never reach the capture.
    const hasPayload = '@ih,0,8 & 0x00 == 0x00';
    // Every SYN and data segment spends the budget before the prefilter looks at its payload:
    // what is spent never tells a right path from a wrong one.
    const budget = `jump step1_budget`;
    const rules = [...this.ungrantedFamilyDrop(), `${syn} ${budget}`, `${data} ${hasPayload} ${budget}`];
    if (prefix === undefined) return [...rules, `${syn} ${capture}`, `${data} ${hasPayload} ${capture}`, 'drop'];
    // The prefilter: a payload load past the segment's end fails, so a shorter payload never matches.
    const match = nftPrefixMatch(prefix);
    // The prefilter's own drops are counted (`nft list chain`), apart from pure ACKs and the like.
    const dropped = `counter drop comment "${PREFILTER_COMMENT}"`;
    if (this.plan.step1Handshake === 'none') {
      // Without a handshake a SYN carrying data is the knock: prefiltered like any data segment.
      rules.push(`${syn} ${match} ${capture}`, `${syn} ${hasPayload} ${dropped}`);
    }
    return [...rules, `${syn} ${capture}`, `${data} ${match} ${capture}`, `${data} ${hasPayload} ${dropped}`, 'drop'];
  }

  /**
   * One budget for all sources: before the cookie nothing proves a source address, so a budget
   * per claimed source (or /64) would let anyone who forges a client's address spend it and lock
   * that client out. Per-source budgets apply in the daemon, once the cookie proved the source.
   */
  private step1Budget(): string {
    const rate = this.plan.step1RatePerSecond;
    return `limit rate over ${rate}/second burst ${rate * 2} packets drop`;
  }

  private step1Capture(capture: CaptureKind): string[] {
    return capture === 'nflog' ? this.nflogFanout() : [this.captureStatement(capture)];
  }

  /**
   * NFLOG has no fanout in the kernel: one rule per worker, chosen by the CPU that handles the
   * packet (CPU c goes to worker c mod N). Each rule logs and drops, so a packet reaches exactly
   * one group; the last worker's rule takes every CPU the others do not name, so a CPU that
   * comes online later (or an id beyond the count seen at install) still reaches a group.
   */
  private nflogFanout(): string[] {
    const { step1Workers: workers, cpuCount } = this.plan;
    if (workers <= 1) return [this.captureStatement('nflog')];
    const rules: string[] = [];
    for (let worker = 0; worker < workers - 1; worker++) {
      const ids = cpusOfWorker(worker, workers, cpuCount);
      if (ids.length > 0) rules.push(`meta cpu { ${ids.join(', ')} } ${this.logStatement(worker)}`);
    }
    return [...rules, this.logStatement(workers - 1)];
  }

  private logStatement(worker: number): string {
    return `log group ${this.plan.nflogGroup + worker} queue-threshold 1 drop`;
  }

  /**
   * nfqueue without `bypass`: with no listener the kernel drops (fail closed). Several workers
   * share the queues queue_num..queue_num+N-1, the kernel spreading flows by CPU (`fanout`).
   */
  captureStatement(capture: CaptureKind): string {
    if (capture === 'nflog') return this.logStatement(0);
    const { queueNum, step1Workers } = this.plan;
    return step1Workers > 1 ? `queue num ${queueNum}-${queueNum + step1Workers - 1} fanout` : `queue num ${queueNum}`;
  }

  /** New connections from sources holding a step-2 window; per-source caps apply in the daemon once TLS proves the source. */
  private step2(): string[] {
    const rules = [...this.ungrantedFamilyDrop(), this.establishedFromClient()];
    for (const f of this.plan.grantFamilies) rules.push(`${fam(f).addr} saddr @${grantSetName('step2', f)} accept`);
    return [...rules, 'drop'];
  }

  private service(): string[] {
    const report = this.plan.gateMode === 'report';
    // Report mode drops nothing here: what it would drop was counted in the mark chain.
    const rules = [...(report ? [] : this.ungrantedFamilyDrop()), this.establishedFromClient()];
    // An operator's lifeline: always-allowed networks reach their apps with no knock.
    for (const f of this.plan.grantFamilies) {
      for (const app of this.plan.localApps) {
        const allowed = this.allowedSources(app, f);
        if (allowed) rules.push(`${allowed} meta l4proto ${app.protocol} th dport ${app.port} accept`);
      }
    }
    for (const f of this.plan.grantFamilies) {
      rules.push(`${fam(f).addr} saddr . meta l4proto . th dport @${grantSetName('service', f)} accept`);
    }
    return [...rules, report ? 'accept' : 'drop'];
  }

  /** Forwarded apps; `granted` restricts to families that can hold grants. */
  private forwarded(granted: boolean): ForwardedApp[] {
    return this.plan.forwardedApps.filter((f) => !granted || this.plan.grantFamilies.includes(f.family));
  }

  /** The forward chain sees the post-DNAT destination; only connections knock-port DNATed pass. */
  private forwardGate(): string[] {
    const rules: string[] = [];
    for (const { app, address, family, port } of this.forwarded(true)) {
      const { addr } = fam(family);
      const ours = `meta l4proto ${app.protocol} ct status dnat ct original proto-dst ${app.port}`;
      rules.push(
        `${ours} ct state established,related ct reply ${addr} saddr ${address} ${grantMarked(this.plan.grantMark)} accept`,
        `${iif(app.interfaceExt)}${oif(app.interfaceInt)}${ours} ${addr} daddr ${address} ${app.protocol} dport ${port} accept`,
      );
    }
    // Routed straight to the LAN host, not through knock-port's DNAT: dropped, or counted in report mode.
    for (const { app, address, family, port } of this.forwarded(false)) {
      const verdict = this.plan.gateMode === 'report' ? countWouldDrop(app) : 'drop';
      rules.push(`${iif(app.interfaceExt)}${fam(family).addr} daddr ${address} ${app.protocol} dport ${port} ${verdict}`);
    }
    return rules;
  }

  private dnat(): string[] {
    return this.forwarded(true).flatMap(({ app, address, family, port }) => {
      const { addr } = fam(family);
      const to = `dnat ${addr} to ${hostPort(address, family, port)}`;
      // Only the app's public port on this host: the same port on a LAN host stays that host's.
      const publicPort = `${iif(app.interfaceExt)}${app.protocol} dport ${app.port} ${TO_THIS_HOST}`;
      // Report mode forwards every source: the forward is the app, the grant is the gate.
      if (this.plan.gateMode === 'report') return [`${publicPort} ${to}`];
      const allowed = this.allowedSources(app, family);
      return [
        `${publicPort} ${addr} saddr . meta l4proto . th dport @${grantSetName('service', family)} ${to}`,
        ...(allowed ? [`${publicPort} ${allowed} ${to}`] : []),
      ];
    });
  }

  private masquerade(): string[] {
    return this.forwarded(true)
      .filter(({ app }) => app.masquerade)
      .map(
        ({ app, address, family, port }) =>
          `${oif(app.interfaceInt)}ct status dnat ${fam(family).addr} daddr ${address} ${app.protocol} dport ${port} masquerade`,
      );
  }
}
