/**
 * The iptables + ipset ruleset knock-port installs, as `ipset restore` and
 * `iptables-restore --noflush` text. Pure. Chains of its own (`KNOCKPORT-*`) are
 * jumped to from the built-in chains; grants are ipset entries with timeouts.
 */
import { createHash } from 'node:crypto';
import type { AppConfig, IpFamily, Protocol } from '../../config/types.js';
import { iptablesInterfaceName } from '../../config/interface-name.js';
import { ALL_FAMILIES, allowedNetworks, hostPort, matchesInterface, PREFILTER_COMMENT, type FirewallPlan } from '../plan.js';
import { WOULD_DROP_LOG, wouldDropComment } from '../report-mode.js';
import type { CaptureKind, GrantKind } from '../../shared/kinds.js';

/** The largest `--hashlimit-burst` iptables accepts (step1_rate_per_second goes up to 1,000,000 a second). */
const HASHLIMIT_BURST_MAX = 1_000_000;

export type IptablesTable = 'raw' | 'mangle' | 'filter' | 'nat';

export interface Jump {
  table: IptablesTable;
  from: string;
  to: string;
}

/** First payload bytes exist (u32 fails on reads past the end): pure ACKs never reach the capture. */
const PAYLOAD_PRESENT: Record<IpFamily, string> = {
  4: '0>>22&0x3C@12>>26&0x3C@0=0:0xFFFFFFFF',
  // Read as if the TCP header followed the fixed 40-byte IPv6 header; behind extension headers
  // this reads some later word, which exists whenever the segment carries data.
  6: '52>>26&0x3C@40=0:0xFFFFFFFF',
};

/** Where the TCP payload starts, as a u32 location: IPv4 header length, then TCP data offset. */
const PAYLOAD_BASE: Record<IpFamily, (offset: number) => string> = {
  4: (offset) => `0>>22&0x3C@12>>26&0x3C@${offset}`,
  6: (offset) => `52>>26&0x3C@${40 + offset}`,
};

/**
 * Which segments the prefilter may drop: for IPv6 only those whose TCP header follows the fixed
 * header (next header 6), where PAYLOAD_BASE is right; the rest go to the daemon unfiltered.
 */
const PREFILTERED: Record<IpFamily, string> = {
  4: '',
  6: '-m u32 --u32 "4>>8&0xFF=6" ',
};

/** u32 holds at most 10 tests per match (XT_U32_MAXSIZE; iptables refuses an 11th). */
const U32_TESTS_PER_MATCH = 10;

/**
 * `-m u32` matches that the payload begins with `prefix`, one four-byte word per test, anchored
 * at the payload start whatever the IP and TCP header lengths (u32 computes them). A tail
 * shorter than a word is compared as the prefix's last four bytes, overlapping the previous
 * word, so nothing past the prefix is read: a payload shorter than the prefix never matches
 * (u32 fails on reads past the end), exactly as in nft and prefilterPasses.
 */
export function u32PrefixMatch(family: IpFamily, prefix: Buffer): string {
  // Never shorter than a word: a prefix always starts with `POST `.
  if (prefix.length < 4) throw new Error('prefilter prefix shorter than one u32 word');
  const tests: string[] = [];
  for (let start = 0; start < prefix.length; start += 4) {
    const at = Math.min(start, prefix.length - 4);
    tests.push(`${PAYLOAD_BASE[family](at)}=0x${prefix.readUInt32BE(at).toString(16).toUpperCase().padStart(8, '0')}`);
  }
  const matches: string[] = [];
  for (let i = 0; i < tests.length; i += U32_TESTS_PER_MATCH) matches.push(`-m u32 --u32 "${tests.slice(i, i + U32_TESTS_PER_MATCH).join('&&')}"`);
  return matches.join(' ');
}

const tag = (family: IpFamily): string => (family === 4 ? 'v4' : 'v6');
// Config names are translated to iptables' wildcard (`ppp*` would match no interface at all).
const inIf = (name: string): string => (iptablesInterfaceName(name) === undefined ? '' : `-i ${iptablesInterfaceName(name)} `);
const outIf = (name: string): string => (iptablesInterfaceName(name) === undefined ? '' : `-o ${iptablesInterfaceName(name)} `);

/** An ipset entry for a service grant: source address, protocol and the app's public port. */
export function ipsetServiceEntry(ip: string, protocol: Protocol, port: number): string {
  return `${ip},${protocol}:${port}`;
}

/** Packets addressed to this host (see TO_THIS_HOST in nftables/ruleset.ts). */
const TO_THIS_HOST = '-m addrtype --dst-type LOCAL';

/**
 * Report mode, for a rule `match` that catches what the gate would drop at `app`'s port: one rule
 * that only counts (its comment names the counter, `knock-port would drop tcp/22`), one that logs
 * a few a minute; neither has a verdict, so the packet goes on.
 */
function countWouldDrop(match: string, app: Pick<AppConfig, 'protocol' | 'port'>): string[] {
  return [
    `${match} -m comment --comment "${wouldDropComment(app.protocol, app.port)}"`,
    `${match} -m limit --limit ${WOULD_DROP_LOG.perMinute}/min --limit-burst ${WOULD_DROP_LOG.burst} -j LOG --log-prefix "${WOULD_DROP_LOG.prefix}" --log-level warning`,
  ];
}

/** Live grants one ipset can hold. */
const MAX_GRANTS = 1_048_576;

export class IptablesRuleset {
  /** `name`: base of chain (upper case) and set (lower case) names, e.g. `knockport`. */
  constructor(
    readonly plan: FirewallPlan,
    private readonly name: string,
  ) {}

  chain(suffix: string): string {
    return `${this.name.toUpperCase()}-${suffix}`;
  }

  setName(kind: GrantKind, family: IpFamily): string {
    return `${this.name.toLowerCase()}-${kind}-${tag(family)}`;
  }

  /**
   * Every set, as `ipset restore -exist` input: existing sets (and their entries) are kept.
   * `maxelem` lifts ipset's default cap of 65,536 entries so 100k+ live grants fit.
   */
  ipsetScript(): string {
    return this.sets()
      .map(({ name, type, family }) => `create ${name} ${type} family ${family === 4 ? 'inet' : 'inet6'} timeout 0 maxelem ${MAX_GRANTS}\n`)
      .join('');
  }

  sets(): Array<{ name: string; type: string; family: IpFamily }> {
    return this.plan.grantFamilies.flatMap((family) => [
      { name: this.setName('step2', family), type: 'hash:ip', family },
      { name: this.setName('service', family), type: 'hash:ip,port', family },
    ]);
  }

  /** The jumps from the built-in chains, inserted first in each. */
  jumps(): Jump[] {
    return [
      { table: 'raw', from: 'PREROUTING', to: this.chain('PREROUTING') },
      { table: 'raw', from: 'OUTPUT', to: this.chain('OUTPUT') },
      { table: 'mangle', from: 'PREROUTING', to: this.chain('MARK') },
      { table: 'filter', from: 'INPUT', to: this.chain('INPUT') },
      { table: 'filter', from: 'FORWARD', to: this.chain('FORWARD') },
      { table: 'filter', from: 'OUTPUT', to: this.chain('OUTPUT') },
      { table: 'nat', from: 'PREROUTING', to: this.chain('PREROUTING') },
      { table: 'nat', from: 'POSTROUTING', to: this.chain('POSTROUTING') },
    ];
  }

  /** Own chains per table, with their rules (declaring a chain in --noflush mode flushes it). */
  chains(family: IpFamily, capture: CaptureKind): Record<IptablesTable, Array<{ name: string; rules: string[] }>> {
    const p = this.plan;
    return {
      // Step 1 is judged in raw PREROUTING, before every filter hook (see prerouting_step1 in nftables/ruleset.ts).
      raw: [
        {
          name: this.chain('PREROUTING'),
          rules: [
            `${inIf(p.interfaceExt)}-p tcp --dport ${p.step1Port} ${TO_THIS_HOST} -j CT --notrack`,
            `${inIf(p.interfaceExt)}-p tcp --dport ${p.step1Port} ${TO_THIS_HOST} -j ${this.chain('STEP1')}`,
          ],
        },
        { name: this.chain('STEP1'), rules: this.step1(family) },
        { name: this.chain('BUDGET'), rules: [this.step1Budget()] },
        { name: this.chain('CAPTURE'), rules: this.capture(family, capture) },
        { name: this.chain('OUTPUT'), rules: [`${outIf(p.interfaceExt)}-p tcp --sport ${p.step1Port} -j CT --notrack`] },
      ],
      mangle: [{ name: this.chain('MARK'), rules: this.grantMarks(family) }],
      filter: [
        { name: this.chain('INPUT'), rules: this.inputGate() },
        { name: this.chain('STEP2'), rules: this.step2(family) },
        { name: this.chain('SERVICE'), rules: this.service(family) },
        { name: this.chain('FORWARD'), rules: this.forwardGate(family) },
        {
          name: this.chain('OUTPUT'),
          rules: [`${outIf(p.interfaceExt)}-p tcp --sport ${p.step1Port} -m mark ! --mark 0x${p.packetMark.toString(16)} -j DROP`],
        },
      ],
      nat: [
        { name: this.chain('PREROUTING'), rules: this.dnat(family) },
        { name: this.chain('POSTROUTING'), rules: this.masquerade(family) },
      ],
    };
  }

  /** `iptables-restore --noflush` input for one family; `jumps`: the jumps to insert. */
  restoreScript(family: IpFamily, capture: CaptureKind, jumps: Jump[] = this.jumps()): string {
    const chains = this.chains(family, capture);
    const out: string[] = [];
    for (const table of ['raw', 'mangle', 'filter', 'nat'] as const) {
      out.push(`*${table}`);
      for (const c of chains[table]) out.push(`:${c.name} - [0:0]`);
      for (const c of chains[table]) for (const rule of c.rules) out.push(`-A ${c.name} ${rule}`);
      for (const j of jumps.filter((j) => j.table === table)) out.push(`-I ${j.from} 1 -j ${j.to}`);
      out.push('COMMIT');
    }
    return out.join('\n') + '\n';
  }

  /** Everything install() applies, for `knock-port rules`. */
  render(capture: CaptureKind): string {
    return [
      '# ipset restore -exist',
      this.ipsetScript(),
      ...ALL_FAMILIES.flatMap((f) => [`# ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`, this.restoreScript(f, capture)]),
    ].join('\n');
  }

  private grantable(family: IpFamily): boolean {
    return this.plan.grantFamilies.includes(family);
  }

  /**
   * Marks the connections the gate lets in (a conntrack mark bit, in mangle PREROUTING, before
   * every filter and before DNAT), only on packets addressed to this host: see grantMarks in
   * nftables/ruleset.ts for why, and why every packet is looked at.
   */
  private grantMarks(family: IpFamily): string[] {
    if (!this.grantable(family)) return this.wouldDropCounts(family);
    const p = this.plan;
    const mark = `${TO_THIS_HOST} -j CONNMARK --set-mark 0x${p.grantMark.toString(16)}/0x${p.grantMark.toString(16)}`;
    const services = `-m set --match-set ${this.setName('service', family)} src,dst ${mark}`;
    const apps = [...p.localApps, ...this.forwarded(family, true).map(({ app }) => app)];
    return [
      `${inIf(p.interfaceExt)}-p tcp --dport ${p.step2Port} -m set --match-set ${this.setName('step2', family)} src ${mark}`,
      ...apps.flatMap((app) => [
        `${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} ${services}`,
        ...allowedNetworks(app, family).map((network) => `${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} -s ${network} ${mark}`),
      ]),
      ...this.wouldDropCounts(family),
    ];
  }

  /**
   * Report mode: a packet to an app's port on this host whose connection the rules above left
   * without the grant mark is one the gate drops in enforce mode (see wouldDropCounts in
   * nftables/ruleset.ts); counted here, before DNAT, for local and forwarded apps alike.
   */
  private wouldDropCounts(family: IpFamily): string[] {
    if (this.plan.gateMode !== 'report') return [];
    const mark = `0x${this.plan.grantMark.toString(16)}`;
    const apps = [...this.plan.localApps, ...this.forwarded(family, false).map(({ app }) => app)];
    const matches = new Map(
      apps.map((app) => [`${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} ${TO_THIS_HOST} -m connmark ! --mark ${mark}/${mark}`, app]),
    );
    return [...matches].flatMap(([match, app]) => countWouldDrop(match, app));
  }

  private inputGate(): string[] {
    const p = this.plan;
    const rules = [`${inIf(p.interfaceExt)}-p tcp --dport ${p.step2Port} -j ${this.chain('STEP2')}`];
    // With no external interface named, only loopback (where a local proxy connects) may reach the internal port.
    if (p.internalStep2Port !== undefined)
      rules.push(`${matchesInterface(p.interfaceExt) ? inIf(p.interfaceExt) : '! -i lo '}-p tcp --dport ${p.internalStep2Port} -j DROP`);
    for (const app of p.localApps) rules.push(`${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} -j ${this.chain('SERVICE')}`);
    // Granted sources are DNATed before input; what still arrives here for the port has no grant.
    if (p.gateMode === 'enforce') for (const { app } of p.forwardedApps) rules.push(`${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} -j DROP`);
    return rules;
  }

  private step1(family: IpFamily): string[] {
    if (!this.grantable(family)) return ['-j DROP'];
    const capture = `-j ${this.chain('CAPTURE')}`;
    const syn = '-p tcp --tcp-flags FIN,SYN,RST,ACK SYN';
    const data = '-p tcp --tcp-flags SYN,RST,ACK ACK';
    const hasPayload = `-m u32 --u32 "${PAYLOAD_PRESENT[family]}"`;
    // Every SYN and data segment spends the budget before the prefilter looks at its payload.
    const budget = `-j ${this.chain('BUDGET')}`;
    const spend = [`${syn} ${budget}`, `${data} ${hasPayload} ${budget}`];
    const prefix = this.plan.step1Prefilter;
    if (prefix === undefined) return [...spend, `${syn} ${capture}`, `${data} ${hasPayload} ${capture}`, '-j DROP'];
    const match = u32PrefixMatch(family, prefix);
    // Without a handshake a SYN carrying data is the knock: prefiltered like any data segment.
    // The prefilter's own drops get rules of their own, so their counters say how many (`iptables -L -v`).
    const dropped = `${PREFILTERED[family]}-m comment --comment "${PREFILTER_COMMENT}" -j DROP`;
    // IPv6 behind extension headers: u32 cannot walk the header chain, so the daemon judges those.
    const unfiltered = (flags: string) => (family === 6 ? [`${flags} ${hasPayload} ${capture}`] : []);
    const synData = this.plan.step1Handshake === 'none' ? [`${syn} ${match} ${capture}`, `${syn} ${hasPayload} ${dropped}`, ...unfiltered(syn)] : [];
    return [...spend, ...synData, `${syn} ${capture}`, `${data} ${match} ${capture}`, `${data} ${hasPayload} ${dropped}`, ...unfiltered(data), '-j DROP'];
  }

  /**
   * One budget for all sources (see step1Budget in nftables/ruleset.ts): keyed by the destination
   * port only, since `-m limit` stops at 10,000 a second.
   */
  private step1Budget(): string {
    const rate = this.plan.step1RatePerSecond;
    // Two seconds' worth, as nftables has, but iptables takes a burst of at most 1,000,000.
    const burst = Math.min(rate * 2, HASHLIMIT_BURST_MAX);
    const options = `--hashlimit-above ${rate}/sec --hashlimit-burst ${burst} --hashlimit-mode dstport`;
    // The kernel shares a table by name and keeps the settings it was created with while any rule
    // uses it, replaced rules included: a name per setting makes a new setting take effect. At
    // most 15 characters, as older kernels allow.
    const tag = createHash('sha256').update(options).digest('hex').slice(0, 6);
    return `-m hashlimit ${options} --hashlimit-name kp-step1-${tag} -j DROP`;
  }

  /** Established traffic of a granted connection, in the direction the client opened it (see establishedFromClient in nftables/ruleset.ts). */
  private establishedFromClient(): string {
    const mark = `0x${this.plan.grantMark.toString(16)}`;
    return `-m conntrack --ctstate RELATED,ESTABLISHED --ctdir ORIGINAL -m connmark --mark ${mark}/${mark} -j ACCEPT`;
  }

  /**
   * NFQUEUE without --queue-bypass: with no listener the kernel drops (fail closed). Several
   * workers share queue_num..queue_num+N-1, spread by the CPU that handles the packet.
   */
  private capture(family: IpFamily, capture: CaptureKind): string[] {
    if (!this.grantable(family)) return ['-j DROP'];
    const p = this.plan;
    if (capture === 'nfqueue') {
      const last = p.queueNum + p.step1Workers - 1;
      return [p.step1Workers > 1 ? `-j NFQUEUE --queue-balance ${p.queueNum}:${last} --queue-cpu-fanout` : `-j NFQUEUE --queue-num ${p.queueNum}`];
    }
    return [...this.nflogFanout(), '-j DROP'];
  }

  /**
   * NFLOG has no fanout: CPU c logs to worker c mod N's group (`-m cpu` names one CPU). NFLOG
   * does not end the chain, so each CPU's log rule is followed by its drop: a packet reaches
   * exactly one group. The last worker's group takes every CPU not named (one that comes online
   * later included).
   */
  private nflogFanout(): string[] {
    const { step1Workers: workers, cpuCount, nflogGroup } = this.plan;
    const log = (worker: number) => `-j NFLOG --nflog-group ${nflogGroup + worker} --nflog-threshold 1`;
    const rules: string[] = [];
    for (let cpu = 0; workers > 1 && cpu < cpuCount; cpu++) {
      const worker = cpu % workers;
      if (worker !== workers - 1) rules.push(`-m cpu --cpu ${cpu} ${log(worker)}`, `-m cpu --cpu ${cpu} -j DROP`);
    }
    return [...rules, log(workers - 1)];
  }

  /** New connections from sources holding a step-2 window; per-source caps apply in the daemon once TLS proves the source. */
  private step2(family: IpFamily): string[] {
    const rules = [this.establishedFromClient()];
    if (this.grantable(family)) rules.push(`-m set --match-set ${this.setName('step2', family)} src -j ACCEPT`);
    return [...rules, '-j DROP'];
  }

  private service(family: IpFamily): string[] {
    const rules = [this.establishedFromClient()];
    // An operator's lifeline: always-allowed networks reach their apps with no knock.
    if (this.grantable(family)) {
      for (const app of this.plan.localApps) {
        for (const network of allowedNetworks(app, family)) rules.push(`-p ${app.protocol} --dport ${app.port} -s ${network} -j ACCEPT`);
      }
    }
    if (this.grantable(family)) rules.push(`-m set --match-set ${this.setName('service', family)} src,dst -j ACCEPT`);
    // Report mode drops nothing here: what it would drop was counted in the mark chain.
    return [...rules, this.plan.gateMode === 'report' ? '-j ACCEPT' : '-j DROP'];
  }

  private forwarded(family: IpFamily, granted: boolean) {
    return this.plan.forwardedApps.filter((f) => f.family === family && (!granted || this.grantable(family)));
  }

  /** The forward chain sees the post-DNAT destination; only connections knock-port DNATed pass. */
  private forwardGate(family: IpFamily): string[] {
    const rules: string[] = [];
    const mark = `0x${this.plan.grantMark.toString(16)}`;
    for (const { app, address, port } of this.forwarded(family, true)) {
      const ours = `--ctproto ${app.protocol} --ctorigdstport ${app.port} --ctreplsrc ${address}`;
      rules.push(
        `-m conntrack --ctstate RELATED,ESTABLISHED ${ours} -m connmark --mark ${mark}/${mark} -j ACCEPT`,
        `${inIf(app.interfaceExt)}${outIf(app.interfaceInt)}-p ${app.protocol} -d ${address} --dport ${port} -m conntrack --ctstate DNAT ${ours} -j ACCEPT`,
      );
    }
    // Routed straight to the LAN host, not through knock-port's DNAT: dropped, or counted in report mode.
    for (const { app, address, port } of this.forwarded(family, false)) {
      const direct = `${inIf(app.interfaceExt)}-p ${app.protocol} -d ${address} --dport ${port}`;
      if (this.plan.gateMode === 'report') rules.push(...countWouldDrop(direct, app));
      else rules.push(`${direct} -j DROP`);
    }
    return rules;
  }

  private dnat(family: IpFamily): string[] {
    return this.forwarded(family, true).flatMap(({ app, address, port }) => {
      const publicPort = `${inIf(app.interfaceExt)}-p ${app.protocol} --dport ${app.port} ${TO_THIS_HOST}`;
      const to = `-j DNAT --to-destination ${hostPort(address, family, port)}`;
      // Report mode forwards every source: the forward is the app, the grant is the gate.
      if (this.plan.gateMode === 'report') return [`${publicPort} ${to}`];
      return [
        `${publicPort} -m set --match-set ${this.setName('service', family)} src,dst ${to}`,
        ...allowedNetworks(app, family).map((network) => `${publicPort} -s ${network} ${to}`),
      ];
    });
  }

  private masquerade(family: IpFamily): string[] {
    return this.forwarded(family, true)
      .filter(({ app }) => app.masquerade)
      .map(({ app, address, port }) => `${outIf(app.interfaceInt)}-p ${app.protocol} -d ${address} --dport ${port} -m conntrack --ctstate DNAT -j MASQUERADE`);
  }
}
