/**
 * Builds the configured firewall backend; every rule knock-port needs comes from here. One
 * folder per firewall (nftables/, which VyOS uses too, and iptables/) supplies its
 * FirewallDriver (types.ts); firewall.ts makes the backend of it.
 */
import type { CaptureMode, Config, FirewallType } from '../config/types.js';
import { ExecCommandRunner, netnsPrefix, type CommandRunner } from './command.js';
import { Firewall } from './firewall.js';
import { HostFirewall } from './host-firewall.js';
import { IptablesDriver, type IptablesVariant } from './iptables/backend.js';
import { IptablesRuleset } from './iptables/ruleset.js';
import { NftablesDriver } from './nftables/backend.js';
import { CliNftRunner, type NftRunner } from './nft-runner.js';
import { planFirewall, type FirewallPlan } from './plan.js';
import type { FirewallBackend, FirewallCapabilities, FirewallDriver } from './types.js';
import type { CaptureKind } from '../shared/kinds.js';

export interface FirewallOptions {
  /** Overrides `global.firewall_type`. */
  type?: FirewallType;
  /** Run every firewall command inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** nft runner (e.g. libnftables in-process); default: the `nft` command. */
  nft?: NftRunner;
  /** iptables/ipset runner; default: the commands, in `netns` when given. */
  commands?: CommandRunner;
  /** iptables binaries: system default, iptables-nft or iptables-legacy. */
  iptablesVariant?: IptablesVariant;
}

export function createFirewall(config: Config, options: FirewallOptions = {}): FirewallBackend {
  const plan = planFirewall(config);
  const type = options.type ?? config.global.firewallType;
  const prefix = netnsPrefix(options.netns);
  const nft = options.nft ?? new CliNftRunner('nft', prefix);
  const commands = options.commands ?? new ExecCommandRunner(prefix);
  const { tableName, hostFirewall: mode } = config.global;
  const ownIptables = new IptablesRuleset(plan, tableName).chain('');
  const host = new HostFirewall({
    plan,
    mode,
    nft,
    commands,
    isOwnTable: (family, table) => type !== 'iptables' && family === 'inet' && table === tableName,
    ownIptablesPrefix: type === 'iptables' ? ownIptables : '',
    // In another namespace its /proc is read by a child process there, awaited (self-heal runs every few seconds).
    ...(options.netns ? { readProc: (path: string) => new ExecCommandRunner(prefix).runAsync('cat', [path]) } : {}),
  });
  return new Firewall(driverFor(type, plan, tableName, { nft, commands, iptablesVariant: options.iptablesVariant }), config.apps, host);
}

/** The configured firewall's driver: VyOS is nftables in a table of knock-port's own (nftables/backend.ts). */
function driverFor(
  type: FirewallType,
  plan: FirewallPlan,
  tableName: string,
  tools: { nft: NftRunner; commands: CommandRunner; iptablesVariant: IptablesVariant | undefined },
): FirewallDriver {
  switch (type) {
    case 'nftables':
    case 'vyos':
      return new NftablesDriver(plan, tableName, tools.nft, type);
    case 'iptables':
      return new IptablesDriver(plan, tableName, tools.commands, tools.iptablesVariant);
  }
}

/** Resolves `capture: auto` (nfqueue where the backend can install it, else nflog), with the reason. */
export function chooseCapture(mode: CaptureMode, caps: FirewallCapabilities): { capture: CaptureKind; reason: string } {
  if (mode !== 'auto') return { capture: mode, reason: `capture ${mode} as configured` };
  if (caps.nfqueue) return { capture: 'nfqueue', reason: 'capture auto: nfqueue is available' };
  const detail = caps.notes.length > 0 ? ` (${caps.notes.join('; ')})` : '';
  return { capture: 'nflog', reason: `capture auto: nfqueue unavailable, using nflog${detail}` };
}

export type { FirewallBackend, FirewallCapabilities, FirewallDriver, Grant } from './types.js';
export type { IptablesVariant } from './iptables/backend.js';
