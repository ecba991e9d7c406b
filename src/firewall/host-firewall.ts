/**
 * The host's own firewall, seen from knock-port. An accept in knock-port's table does not
 * stop a drop in another table (or in iptables) on the same hook, so a gateway whose ruleset
 * drops by default would drop every connection knock-port grants. knock-port marks those
 * connections (conntrack mark bits `grant_mark`, set in prerouting before any filter runs)
 * and keeps one accept rule for that mark at the top of every host chain on the input,
 * forward and output hooks that could drop (`host_firewall: insert`), or only reports the
 * rule to add (`host_firewall: report`). Checked again on every maintenance tick, since
 * reloading the host firewall (nftables.service, ufw, firewalld) removes the rule.
 *
 * Three managers are seen: native nftables tables, iptables-nft tables (changed only through
 * iptables-nft, which refuses tables edited behind its back) and iptables-legacy tables.
 *
 * Every read and change runs without blocking the event loop (libnftables in-process, or a
 * child process awaited): the check runs every few seconds beside the capture and HTTPS.
 */
import { readFileSync } from 'node:fs';
import type { HostFirewallMode, IpFamily } from '../config/types.js';
import { describeError } from '../shared/errors.js';
import { runCommand, type CommandRunner } from './command.js';
import { runNft, type NftRunner } from './nft-runner.js';
import type { FirewallPlan } from './plan.js';

export type HostManager = 'nftables' | 'iptables-nft' | 'iptables-legacy';
export type HostHook = 'input' | 'forward' | 'output';
export type HostTableFamily = 'ip' | 'ip6' | 'inet';

const HOOKS: readonly HostHook[] = ['input', 'forward', 'output'];
/** Every knock-port rule in a host chain carries a comment starting with this. */
export const HOST_RULE_COMMENT = 'knock-port:';

/** A base chain on one of knock-port's hooks that belongs to someone else. */
export interface HostChain {
  manager: HostManager;
  family: HostTableFamily;
  table: string;
  chain: string;
  hook: HostHook;
  priority: number;
  policy: 'accept' | 'drop';
  /** Policy drop, or a rule that drops, rejects or jumps elsewhere (where it might drop). */
  canDrop: boolean;
  /** knock-port rules already in the chain: comment and (nft) handle. */
  ours: Array<{ comment: string; handle?: number }>;
  /** The chain's other rules (nft: JSON of the expressions; iptables: the rule spec), to recognize an operator's own equivalent rule. */
  others: string[];
}

/** One rule knock-port keeps in host chains, in each manager's syntax. */
export interface HostRule {
  comment: string;
  nft: string;
  iptables: string[];
  /** True for an operator's own rule that does the same (an nft rule's expressions as JSON, or an iptables rule spec). */
  equivalent: (rule: string) => boolean;
}

export interface HostFirewallReport {
  /** Host chains that could drop, with knock-port's rules in them or not. */
  chains: HostChain[];
  /** What this check inserted (`manager family table chain`), for the log. */
  inserted: string[];
  /** Conditions an operator must act on: granted packets may be dropped. */
  problems: string[];
}

export function describeChain(c: Pick<HostChain, 'manager' | 'family' | 'table' | 'chain'>): string {
  return c.manager === 'nftables'
    ? `nftables chain ${c.family} ${c.table} ${c.chain}`
    : `${c.manager} chain ${c.chain} (${c.family === 'ip6' ? 'IPv6' : 'IPv4'})`;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** The rules knock-port needs at the top of a host chain on `hook`. */
export function hostRules(plan: Pick<FirewallPlan, 'grantMark' | 'packetMark' | 'step1Port'>, hook: HostHook): HostRule[] {
  const mark = hex(plan.grantMark);
  const granted: HostRule = {
    comment: `${HOST_RULE_COMMENT} granted connections ${mark}`,
    nft: `ct mark & ${mark} == ${mark} accept`,
    iptables: ['-m', 'connmark', '--mark', `${mark}/${mark}`],
    equivalent: (rule) => acceptsOnly(rule, { ctMarkBit: plan.grantMark }),
  };
  if (hook !== 'output') return [granted];
  // SYN-ACKs and RSTs from the raw socket are untracked: no conntrack mark, only the packet mark.
  const pmark = hex(plan.packetMark);
  const replies: HostRule = {
    comment: `${HOST_RULE_COMMENT} step-1 replies ${pmark} sport ${plan.step1Port}`,
    nft: `meta mark ${pmark} tcp sport ${plan.step1Port} accept`,
    iptables: ['-p', 'tcp', '--sport', String(plan.step1Port), '-m', 'mark', '--mark', pmark],
    equivalent: (rule) => acceptsOnly(rule, { packetMark: plan.packetMark, sport: plan.step1Port }),
  };
  return [granted, replies];
}

/** What an operator's own accept rule may test and still do what knock-port's rule does (or more). */
interface AcceptScope {
  /** `ct mark & BIT == BIT` (the connection carries the bit, whatever its other bits). */
  ctMarkBit?: number;
  /** `meta mark == MARK`. */
  packetMark?: number;
  /** `tcp sport PORT` (optional in the operator's rule: without it the rule accepts more). */
  sport?: number;
}

/**
 * Whether a host rule (an nft rule's expressions as JSON, or an iptables-save rule spec) accepts
 * every packet knock-port's rule would: its verdict is accept and each of its tests is one of
 * the scope's, compared as values. `ct mark 0x10 accept` is not `ct mark & 0x1 == 0x1 accept`.
 */
export function acceptsOnly(rule: string, scope: AcceptScope): boolean {
  return rule.startsWith('[') ? nftAcceptsOnly(rule, scope) : iptablesAcceptsOnly(rule, scope);
}

type NftExpr = Record<string, unknown>;
const isKey = (value: unknown, kind: 'ct' | 'meta', key: string): boolean =>
  typeof value === 'object' && value !== null && (value as Record<string, { key?: string }>)[kind]?.key === key;
const NEUTRAL_NFT = new Set(['counter', 'log']);

function nftAcceptsOnly(rule: string, scope: AcceptScope): boolean {
  let exprs: NftExpr[];
  try {
    exprs = JSON.parse(rule) as NftExpr[];
  } catch {
    return false;
  }
  let verdict = false;
  let markTested = false;
  for (const expr of exprs) {
    const [kind] = Object.keys(expr);
    if (kind === 'accept') verdict = true;
    else if (kind === 'match') {
      const test = nftMatchScope(expr.match as { op?: string; left?: unknown; right?: unknown }, scope);
      if (test === undefined) return false;
      markTested ||= test === 'mark';
    } else if (kind === undefined || !NEUTRAL_NFT.has(kind)) return false;
  }
  return verdict && markTested;
}

/** Which of the scope's tests an nft match is (`mark`, `port`), or undefined when it is none. */
function nftMatchScope(match: { op?: string; left?: unknown; right?: unknown }, scope: AcceptScope): 'mark' | 'port' | undefined {
  if (match.op !== '==' && match.op !== undefined) return undefined;
  const { left, right } = match;
  if (scope.ctMarkBit !== undefined && typeof left === 'object' && left !== null && '&' in left) {
    const [key, mask] = (left as { '&': unknown[] })['&'];
    if (isKey(key, 'ct', 'mark') && mask === scope.ctMarkBit && right === scope.ctMarkBit) return 'mark';
  }
  if (scope.packetMark !== undefined && isKey(left, 'meta', 'mark') && right === scope.packetMark) return 'mark';
  const payload = (left as { payload?: { protocol?: string; field?: string } } | null)?.payload;
  if (scope.sport !== undefined && payload?.protocol === 'tcp' && payload.field === 'sport' && right === scope.sport) return 'port';
  if (scope.sport !== undefined && isKey(left, 'meta', 'l4proto') && (right === 'tcp' || right === 6)) return 'port';
  return undefined;
}

/** The same for an iptables-save rule spec: `-m connmark --mark 0x10000000/0x10000000 -j ACCEPT` and the like. */
function iptablesAcceptsOnly(spec: string, scope: AcceptScope): boolean {
  const words = spec
    .replace(/-m comment --comment (?:"[^"]*"|\S+)/g, '')
    .trim()
    .split(/\s+/);
  let verdict = false;
  let markTested = false;
  let module = '';
  for (let i = 0; i < words.length; i++) {
    const [word, value] = [words[i], words[i + 1]];
    if (word === '-j') verdict = value === 'ACCEPT';
    else if (word === '-m' && ['connmark', 'mark', 'tcp'].includes(value ?? '')) module = value!;
    else if (word === '--mark') markTested ||= markMatches(module, value, scope);
    else if (word === '-p' && scope.sport !== undefined && value === 'tcp') {
      // Restricting to TCP is what knock-port's rule does too.
    } else if (word === '--sport' && scope.sport !== undefined && Number(value) === scope.sport) {
      // The step-1 port.
    } else return false;
    i++;
  }
  return verdict && markTested;
}

/** `--mark VALUE[/MASK]` of `-m connmark` (ct mark bit) or `-m mark` (packet mark), compared as numbers. */
function markMatches(module: string, text: string | undefined, scope: AcceptScope): boolean {
  const [value, mask] = (text ?? '').split('/').map((n) => Number(n));
  if (value === undefined || Number.isNaN(value)) return false;
  if (module === 'connmark' && scope.ctMarkBit !== undefined) return value === scope.ctMarkBit && mask === scope.ctMarkBit;
  return module === 'mark' && scope.packetMark !== undefined && value === scope.packetMark && (mask === undefined || mask === 0xffffffff);
}

// ---- native nftables ------------------------------------------------------------------

interface NftJsonChain {
  family: string;
  table: string;
  name: string;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
}
interface NftJsonRule {
  chain: string;
  handle: number;
  comment?: string;
  expr: Array<Record<string, unknown>>;
}

const IPTABLES_TABLES = new Set(['filter', 'mangle', 'raw', 'security', 'nat']);
const IPTABLES_BUILTINS = new Set(['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING']);

/** iptables-nft keeps its tables in nftables under iptables' names; they are changed through iptables-nft only. */
export function isIptablesNftTable(family: string, table: string, chain: string): boolean {
  return (family === 'ip' || family === 'ip6') && IPTABLES_TABLES.has(table) && IPTABLES_BUILTINS.has(chain);
}

/** Filter base chains on knock-port's hooks, from `nft -j list chains`, excluding `isOwn` tables and iptables-nft tables. */
export function parseNftBaseChains(json: string, isOwn: (family: string, table: string) => boolean): NftJsonChain[] {
  return parseNftHostBaseChains(json, isOwn).filter((c) => c.type === 'filter' && HOOKS.includes(c.hook as HostHook));
}

/** Every base chain of the host's own tables (any hook, any type): where a host rule may write conntrack marks. */
function parseNftHostBaseChains(json: string, isOwn: (family: string, table: string) => boolean): NftJsonChain[] {
  const items = (JSON.parse(json) as { nftables: Array<{ chain?: NftJsonChain }> }).nftables;
  return items
    .flatMap((i) => (i.chain ? [i.chain] : []))
    .filter((c) => ['ip', 'ip6', 'inet'].includes(c.family) && c.hook !== undefined)
    .filter((c) => !isOwn(c.family, c.table) && !isIptablesNftTable(c.family, c.table, c.name));
}

const CT_MARK = (value: unknown): boolean => isKey(value, 'ct', 'mark');

/**
 * Whether a host rule's `ct mark set VALUE` can set or clear `bit`: `ct mark | C` and
 * `(ct mark & A) | C` keep every bit A keeps and set those of C; anything else (a constant,
 * `meta mark`) rewrites the whole mark. Setting the grant bit would admit a connection knock-port
 * never granted; clearing it would drop a granted one.
 */
export function nftCtMarkWriteTouches(value: unknown, bit: number): boolean {
  const operands = (op: '|' | '&'): unknown[] | undefined =>
    typeof value === 'object' && value !== null && op in value ? (value as Record<string, unknown[]>)[op] : undefined;
  const or = operands('|');
  if (or && typeof or[1] === 'number') {
    if ((or[1] & bit) !== 0) return true;
    return !CT_MARK(or[0]) && nftCtMarkWriteTouches(or[0], bit);
  }
  const and = operands('&');
  if (and && CT_MARK(and[0]) && typeof and[1] === 'number') return (and[1] & bit) === 0;
  return true;
}

/** The host rules of an nft chain (`nft -j list chain`) that write the conntrack mark's `bit`. */
export function nftRulesTouchingCtMark(json: string, bit: number): string[] {
  const items = (JSON.parse(json) as { nftables: Array<{ rule?: NftJsonRule }> }).nftables;
  return items.flatMap(({ rule }) =>
    rule?.expr.some((e) => {
      const mangle = e.mangle as { key?: unknown; value?: unknown } | undefined;
      return mangle !== undefined && CT_MARK(mangle.key) && nftCtMarkWriteTouches(mangle.value, bit);
    })
      ? [`handle ${rule.handle}`]
      : [],
  );
}

const DROPPING = ['drop', 'reject', 'jump', 'goto', 'queue'];

/** The rules of one chain from `nft -j list chain`: can one drop, and which are knock-port's. */
export function parseNftChainRules(json: string): Pick<HostChain, 'canDrop' | 'ours' | 'others'> {
  const items = (JSON.parse(json) as { nftables: Array<{ rule?: NftJsonRule }> }).nftables;
  let canDrop = false;
  const ours: HostChain['ours'] = [];
  const others: string[] = [];
  for (const { rule } of items) {
    if (!rule) continue;
    if (rule.comment?.startsWith(HOST_RULE_COMMENT)) {
      ours.push({ comment: rule.comment, handle: rule.handle });
      continue;
    }
    others.push(JSON.stringify(rule.expr));
    if (rule.expr.some((e) => DROPPING.some((k) => k in e) || 'vmap' in e)) canDrop = true;
  }
  return { canDrop, ours, others };
}

// ---- iptables (nft and legacy) --------------------------------------------------------------

/** One table's part of `iptables-save` output (`*filter` ... `COMMIT`). */
export function iptablesSaveTable(text: string, table: string): string {
  const start = text.indexOf(`\n*${table}\n`);
  const from = text.startsWith(`*${table}\n`) ? 0 : start < 0 ? -1 : start + 1;
  if (from < 0) return '';
  const end = text.indexOf('\nCOMMIT', from);
  return text.slice(from, end < 0 ? undefined : end);
}

/**
 * The rules of `iptables-save` output (every table) that write the conntrack mark's `bit`:
 * `CONNMARK --set-xmark VALUE/MASK` rewrites the bits of MASK, `--save-mark` those of `--ctmask`.
 */
export function iptablesRulesTouchingCtMark(text: string, bit: number, ownPrefix: string): string[] {
  const touching: string[] = [];
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    const rule = /^-A (\S+) (.*-j CONNMARK .*)$/.exec(line);
    if (!rule || (ownPrefix !== '' && rule[1]!.startsWith(ownPrefix))) continue;
    const xmark = /--set-x?mark (\S+)/.exec(rule[2]!);
    const ctmask = /--ctmask (\S+)/.exec(rule[2]!);
    const mask = xmark ? Number(xmark[1]!.split('/')[1] ?? 0xffffffff) : /--save-mark/.test(rule[2]!) ? Number(ctmask?.[1] ?? 0xffffffff) : 0;
    if ((mask & bit) !== 0) touching.push(`${table} ${rule[1]}`);
  }
  return touching;
}

/** Built-in filter chains on knock-port's hooks from `iptables-save -t filter`, knock-port's own chains (`ownPrefix`) left out. */
export function parseIptablesSave(text: string, ownPrefix: string): Array<Pick<HostChain, 'chain' | 'hook' | 'policy' | 'canDrop' | 'ours' | 'others'>> {
  const policies = new Map<string, string>();
  const ours = new Map<string, string[]>();
  const others = new Map<string, string[]>();
  let tableDrops = false;
  for (const line of text.split('\n')) {
    const policy = /^:(INPUT|FORWARD|OUTPUT) (\S+)/.exec(line);
    if (policy) policies.set(policy[1]!, policy[2]!);
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, spec] = rule as unknown as [string, string, string];
    if (ownPrefix !== '' && chain.startsWith(ownPrefix)) continue;
    const quoted = /--comment (?:"([^"]*)"|(\S+))/.exec(spec);
    const comment = quoted?.[1] ?? quoted?.[2];
    if (comment?.startsWith(HOST_RULE_COMMENT)) {
      ours.set(chain, [...(ours.get(chain) ?? []), comment]);
      continue;
    }
    others.set(chain, [...(others.get(chain) ?? []), spec]);
    if (/-j (DROP|REJECT|NFQUEUE)\b/.test(spec)) tableDrops = true;
  }
  return [...policies].map(([chain, policy]) => ({
    chain,
    hook: chain.toLowerCase() as HostHook,
    policy: policy === 'DROP' ? 'drop' : 'accept',
    canDrop: policy === 'DROP' || tableDrops,
    ours: (ours.get(chain) ?? []).map((comment) => ({ comment })),
    others: others.get(chain) ?? [],
  }));
}

// ---- the checker ---------------------------------------------------------------------------

export interface HostFirewallOptions {
  plan: FirewallPlan;
  mode: HostFirewallMode;
  nft: NftRunner;
  commands: CommandRunner;
  /** knock-port's own nft table(s) (nft backends). */
  isOwnTable: (family: string, table: string) => boolean;
  /** Prefix of knock-port's own iptables chains (iptables backend), e.g. `KNOCKPORT-`. */
  ownIptablesPrefix: string;
  /** Reads `/proc/net/ip_tables_names` and the like (in another namespace: through a child process); injectable for tests. */
  readProc?: (path: string) => string | Promise<string>;
}

const LEGACY_TABLE_NAMES: Record<IpFamily, string> = { 4: '/proc/net/ip_tables_names', 6: '/proc/net/ip6_tables_names' };

export class HostFirewall {
  private last: HostFirewallReport = { chains: [], inserted: [], problems: [] };

  constructor(private readonly options: HostFirewallOptions) {}

  /** What the last check found and did. */
  report(): HostFirewallReport {
    return this.last;
  }

  /** The rules an operator would see (`knock-port rules`): what goes where, in each syntax. */
  describeRules(): string {
    const lines = [`# Host firewall (host_firewall: ${this.options.mode}): at the top of every host chain on these hooks that could drop:`];
    for (const hook of HOOKS) {
      for (const rule of hostRules(this.options.plan, hook)) {
        lines.push(`#   ${hook}: nft: ${rule.nft} comment "${rule.comment}"`);
        lines.push(`#   ${hook}: iptables: ${rule.iptables.join(' ')} -m comment --comment "${rule.comment}" -j ACCEPT`);
      }
    }
    return lines.join('\n') + '\n';
  }

  /** Finds host chains that could drop granted packets; in `insert` mode puts knock-port's accept rules in them. */
  async reconcile(): Promise<HostFirewallReport> {
    const problems: string[] = [];
    const inserted: string[] = [];
    const chains = await this.scan(problems);
    for (const chain of chains) {
      const wanted = hostRules(this.options.plan, chain.hook);
      const missing = wanted.filter((r) => !chain.ours.some((o) => o.comment === r.comment) && !chain.others.some(r.equivalent));
      const stale = chain.ours.filter((o) => !wanted.some((r) => r.comment === o.comment));
      if (this.options.mode === 'report') {
        if (missing.length > 0) {
          problems.push(
            `${describeChain(chain)} (hook ${chain.hook}, policy ${chain.policy}) can drop connections knock-port grants: add at its top ${missing
              .map((r) => (chain.manager === 'nftables' ? `'${r.nft}'` : `'${r.iptables.join(' ')} -j ACCEPT'`))
              .join(' and ')}, or set host_firewall: insert`,
          );
        }
        continue;
      }
      try {
        if (stale.length > 0) await this.removeRules(chain, stale);
        // Inserted at the top one by one: the last inserted ends up first.
        for (const rule of [...missing].reverse()) await this.insertRule(chain, rule);
        if (missing.length > 0) inserted.push(`${describeChain(chain)} (hook ${chain.hook}, policy ${chain.policy})`);
      } catch (err) {
        problems.push(
          `cannot put knock-port's accept rule in ${describeChain(chain)}: ${describeError(err)}; connections knock-port grants may be dropped there`,
        );
      }
    }
    this.last = { chains, inserted, problems };
    return this.last;
  }

  /** Removes every knock-port rule from host chains (uninstall). */
  async remove(): Promise<void> {
    for (const chain of await this.scan([])) if (chain.ours.length > 0) await this.removeRules(chain, chain.ours);
    this.last = { chains: [], inserted: [], problems: [] };
  }

  /** Every host chain on the input, forward and output hooks that could drop. */
  private async scan(problems: string[]): Promise<HostChain[]> {
    const chains: HostChain[] = [];
    let nftChains: NftJsonChain[] = [];
    let iptablesNftFamilies: IpFamily[] = [];
    try {
      const listing = await runNft(this.options.nft, 'list chains', { json: true });
      nftChains = parseNftHostBaseChains(listing, this.options.isOwnTable);
      iptablesNftFamilies = iptablesNftTables(listing);
    } catch (err) {
      problems.push(`cannot read the host's nftables chains: ${describeError(err)}`);
    }
    for (const c of nftChains) {
      try {
        const listing = await runNft(this.options.nft, `list chain ${c.family} ${c.table} ${c.name}`, { json: true });
        for (const rule of nftRulesTouchingCtMark(listing, this.options.plan.grantMark)) {
          problems.push(this.markConflict(`nftables chain ${c.family} ${c.table} ${c.name} (${rule})`));
        }
        if (c.type !== 'filter' || !HOOKS.includes(c.hook as HostHook)) continue;
        const rules = parseNftChainRules(listing);
        const chain: HostChain = {
          manager: 'nftables',
          family: c.family as HostTableFamily,
          table: c.table,
          chain: c.name,
          hook: c.hook as HostHook,
          priority: c.prio ?? 0,
          policy: c.policy === 'drop' ? 'drop' : 'accept',
          canDrop: rules.canDrop || c.policy === 'drop',
          ours: rules.ours,
          others: rules.others,
        };
        if (chain.canDrop || chain.ours.length > 0) chains.push(chain);
      } catch (err) {
        problems.push(`cannot read nftables chain ${c.family} ${c.table} ${c.name}: ${describeError(err)}`);
      }
    }
    for (const family of iptablesNftFamilies) chains.push(...(await this.scanIptables('iptables-nft', family, problems)));
    for (const family of [4, 6] as const) {
      if (await this.legacyFilterExists(family)) chains.push(...(await this.scanIptables('iptables-legacy', family, problems)));
    }
    return chains;
  }

  private markConflict(where: string): string {
    const bit = hex(this.options.plan.grantMark);
    return `${where} writes the conntrack mark bit ${bit} that knock-port's grant_mark uses: connections knock-port never granted may be admitted, or granted ones dropped; set grant_mark to a bit the host ruleset does not use`;
  }

  private async legacyFilterExists(family: IpFamily): Promise<boolean> {
    // A /proc file of this namespace is read in-process: no child process for the common case.
    const read = this.options.readProc ?? ((path: string) => readFileSync(path, 'utf8'));
    try {
      return (await read(LEGACY_TABLE_NAMES[family])).split('\n').includes('filter');
    } catch {
      return false; // ip_tables not loaded: no legacy tables
    }
  }

  private async scanIptables(manager: 'iptables-nft' | 'iptables-legacy', family: IpFamily, problems: string[]): Promise<HostChain[]> {
    try {
      const saved = await runCommand(this.options.commands, iptablesTool(manager, family, '-save'), []);
      for (const rule of iptablesRulesTouchingCtMark(saved, this.options.plan.grantMark, this.options.ownIptablesPrefix)) {
        problems.push(this.markConflict(`${manager} (IPv${family}) rule in ${rule}`));
      }
      return parseIptablesSave(iptablesSaveTable(saved, 'filter'), this.options.ownIptablesPrefix)
        .filter((c) => c.canDrop || c.ours.length > 0)
        .map((c) => ({ ...c, manager, family: family === 4 ? 'ip' : 'ip6', table: 'filter', priority: 0 }));
    } catch (err) {
      problems.push(`cannot read the host's ${manager} rules (IPv${family}): ${describeError(err)}`);
      return [];
    }
  }

  private async insertRule(chain: HostChain, rule: HostRule): Promise<void> {
    if (chain.manager === 'nftables') {
      await runNft(this.options.nft, `insert rule ${chain.family} ${chain.table} ${chain.chain} ${rule.nft} comment "${rule.comment}"\n`);
      return;
    }
    const tool = iptablesTool(chain.manager, chain.family === 'ip6' ? 6 : 4);
    await runCommand(this.options.commands, tool, ['-w', '-I', chain.chain, '1', ...rule.iptables, '-m', 'comment', '--comment', rule.comment, '-j', 'ACCEPT']);
  }

  private async removeRules(chain: HostChain, rules: HostChain['ours']): Promise<void> {
    if (chain.manager === 'nftables') {
      const script = rules.map((r) => `delete rule ${chain.family} ${chain.table} ${chain.chain} handle ${r.handle}\n`).join('');
      if (script) await runNft(this.options.nft, script);
      return;
    }
    // iptables deletes by position: find each rule by its comment in `-S` output, last first.
    const tool = iptablesTool(chain.manager, chain.family === 'ip6' ? 6 : 4);
    const listed = (await runCommand(this.options.commands, tool, ['-w', '-S', chain.chain])).split('\n').filter((l) => l.startsWith('-A '));
    const positions = listed
      .map((line, i) => ({ line, position: i + 1 }))
      .filter(({ line }) => rules.some((r) => line.includes(r.comment)))
      .map(({ position }) => position)
      .reverse();
    for (const position of positions) await runCommand(this.options.commands, tool, ['-w', '-D', chain.chain, String(position)]);
  }
}

/** Families whose iptables-nft filter table exists, from `nft -j list chains`. */
function iptablesNftTables(json: string): IpFamily[] {
  const items = (JSON.parse(json) as { nftables: Array<{ chain?: NftJsonChain }> }).nftables;
  const families = new Set<IpFamily>();
  for (const { chain } of items) {
    if (chain && chain.table === 'filter' && isIptablesNftTable(chain.family, chain.table, chain.name)) families.add(chain.family === 'ip' ? 4 : 6);
  }
  return [...families];
}

function iptablesTool(manager: 'iptables-nft' | 'iptables-legacy', family: IpFamily, suffix: '' | '-save' = ''): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}-${manager === 'iptables-nft' ? 'nft' : 'legacy'}${suffix}`;
}
