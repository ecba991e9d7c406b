/**
 * Is there an interface that each configured name matches? A mistyped `interface_ext` (`eht0`)
 * makes every gate rule match nothing: the firewall loads, and the protected ports are as open
 * as the host's other rules leave them. So `check` and `run` refuse an exact name that matches
 * no interface, suggesting the host's closest names. A name written to be absent for a while,
 * a wildcard (`ppp+`) or an optional name (`wg0?`), is reported loudly instead (check, start
 * log, health). The daemon keeps watching: an interface can also go away while it runs.
 * /sys/class/net lists the interfaces of the reader's network namespace.
 */
import { readdirSync } from 'node:fs';
import { ConfigError, type ConfigIssue } from '../config/issues.js';
import { levenshtein } from '../config/suggest.js';
import type { Config } from '../config/types.js';
import { describeError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { interfaceMatches, interfacePattern, mayBeAbsent, OPTIONAL_MARK } from '../config/interface-name.js';

export const SYS_CLASS_NET = '/sys/class/net';

export interface MissingInterface {
  /** Config key, e.g. `interface_ext` (global) or `ssh.interface_ext`. */
  key: string;
  name: string;
  /** One line, as `health` reports it. */
  problem: string;
  /** What it means and what to do, for `check` and the log. */
  hint: string;
  /** Written to be absent for a while (a wildcard, or `name?`): a warning, not an error. */
  mayBeAbsent: boolean;
  /** The host's interfaces closest to the name, closest first (a typo's likely fix). */
  closest: string[];
}

interface Use {
  key: string;
  name: string;
  side: 'ext' | 'int';
}

const EXT_HINT =
  "until an interface of that name exists, knock-port's rules match no traffic and the protected ports are as open as the host's other rules leave them; fix the name (ip link lists the interfaces), or ignore this if the interface comes later (ppp, wg)";
const INT_HINT = 'forwarded apps cannot reach their LAN hosts until an interface of that name exists; fix the name (ip link lists the interfaces)';

/** Every name the rules match on, with the key that set it; the LAN side only where an app is forwarded. */
function interfaceUses(config: Config): Use[] {
  const g = config.global;
  const uses: Use[] = [{ key: 'interface_ext', name: g.interfaceExt, side: 'ext' }];
  for (const app of config.apps) {
    if (app.interfaceExt !== g.interfaceExt) uses.push({ key: `${app.name}.interface_ext`, name: app.interfaceExt, side: 'ext' });
  }
  for (const app of config.apps) {
    if (app.destination.kind !== 'forward') continue;
    const key = app.interfaceInt === g.interfaceInt ? 'interface_int' : `${app.name}.interface_int`;
    uses.push({ key, name: app.interfaceInt, side: 'int' });
  }
  const seen = new Set<string>();
  return uses.filter((use) => interfacePattern(use.name).kind !== 'any' && !seen.has(use.name) && seen.add(use.name));
}

/** At most this many names are suggested. */
const MAX_SUGGESTIONS = 3;

/**
 * The interfaces of `present` within typo distance of `name` (without `?`, or a wildcard's
 * prefix), closest first; loopback never, since no gate belongs there.
 */
export function closestInterfaces(name: string, present: readonly string[]): string[] {
  const pattern = interfacePattern(name);
  const written = pattern.kind === 'exact' ? pattern.name : pattern.kind === 'prefix' ? pattern.prefix : name;
  const tolerance = Math.max(2, Math.floor(written.length / 3));
  return present
    .filter((ifname) => ifname !== 'lo')
    .map((ifname) => ({ ifname, distance: levenshtein(written, ifname) }))
    .filter(({ distance }) => distance <= tolerance)
    .sort((a, b) => a.distance - b.distance || a.ifname.localeCompare(b.ifname))
    .slice(0, MAX_SUGGESTIONS)
    .map(({ ifname }) => ifname);
}

/** Names of the configured interfaces that match no interface in `present`. */
export function missingInterfaces(config: Config, present: readonly string[]): MissingInterface[] {
  return interfaceUses(config)
    .filter((use) => !present.some((ifname) => interfaceMatches(use.name, ifname)))
    .map(({ key, name, side }) => ({
      key,
      name,
      problem: `${side === 'ext' ? 'gate' : 'LAN side'} matches no interface: ${key} '${name}'`,
      hint: side === 'ext' ? EXT_HINT : INT_HINT,
      mayBeAbsent: mayBeAbsent(name),
      closest: closestInterfaces(name, present),
    }));
}

/** What `check` and `run` find: names that refuse the config, and names only warned about. */
export interface InterfaceCheck {
  errors: ConfigIssue[];
  warnings: string[];
}

const EXT_CONSEQUENCE = "knock-port's rules would match no traffic, leaving the protected ports as open as the host's other rules leave them";
const INT_CONSEQUENCE = 'forwarded apps could not reach their LAN hosts';

/** `check` and `run`'s error for an exact name that matches nothing: what, the likely fix, and how to say it comes later. */
function missingExactIssue(missing: MissingInterface, present: readonly string[]): ConfigIssue {
  const { key, name } = missing;
  const hosts = present.filter((ifname) => ifname !== 'lo');
  const fix =
    missing.closest.length > 0
      ? `did you mean ${missing.closest.map((ifname) => `'${ifname}'`).join(' or ')}?`
      : `this host's interfaces: ${hosts.length > 0 ? hosts.join(', ') : 'none but lo'}`;
  const consequence = key.endsWith('interface_int') ? INT_CONSEQUENCE : EXT_CONSEQUENCE;
  return {
    path: key.includes('.') ? key : `global.${key}`,
    message: `no interface '${name}' on this host (${fix}): ${consequence}. Fix the name (ip link lists the interfaces); for an interface that comes later (ppp, wg) write '${name}${OPTIONAL_MARK}' or a wildcard such as ppp+`,
  };
}

/**
 * The presence check of `check` and `run`, against the interfaces in `dir`: an exact name that
 * matches none is an error; a wildcard or optional one a warning. When the interfaces cannot be
 * listed, one warning says so.
 */
export function checkInterfaces(config: Config, dir = SYS_CLASS_NET): InterfaceCheck {
  const present = listInterfaces(dir);
  if ('error' in present) return { errors: [], warnings: [`${present.error}; interface names not checked`] };
  const missing = missingInterfaces(config, present);
  return {
    errors: missing.filter((m) => !m.mayBeAbsent).map((m) => missingExactIssue(m, present)),
    warnings: missing.filter((m) => m.mayBeAbsent).map((m) => `${m.problem} on this host: ${m.hint}`),
  };
}

/** `check` and `run`, before anything is installed: throws a ConfigError naming every missing exact name; returns the warnings. */
export function requireInterfaces(config: Config, dir = SYS_CLASS_NET): string[] {
  const { errors, warnings } = checkInterfaces(config, dir);
  if (errors.length > 0) throw new ConfigError(config.source, errors);
  return warnings;
}

/** The interfaces of this network namespace, or why they cannot be listed. */
export function listInterfaces(dir = SYS_CLASS_NET): string[] | { error: string } {
  try {
    return readdirSync(dir);
  } catch (err) {
    return { error: `cannot list the network interfaces in ${dir}: ${describeError(err)}` };
  }
}

/**
 * The daemon's view, re-checked on each maintenance tick: logs a name when it goes missing
 * (warn) and when it matches again (info), and keeps the current problems for `health`.
 */
export class InterfaceWatch {
  private missing = new Map<string, MissingInterface>();
  private unreadable: string | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly dir = SYS_CLASS_NET,
  ) {}

  refresh(config: Config): void {
    const present = listInterfaces(this.dir);
    if ('error' in present) {
      if (this.unreadable === undefined) this.logger.warn(`${present.error}; interface names not checked`);
      this.unreadable = present.error;
      return;
    }
    this.unreadable = undefined;
    const now = new Map(missingInterfaces(config, present).map((m) => [`${m.key} ${m.name}`, m]));
    for (const [id, m] of now) {
      if (!this.missing.has(id)) this.logger.warn({ setting: m.key, interface: m.name }, `${m.problem}: ${m.hint}`);
    }
    for (const [id, m] of this.missing) {
      if (!now.has(id)) this.logger.info({ setting: m.key, interface: m.name }, `resolved: ${m.problem}`);
    }
    this.missing = now;
  }

  /** For `health`, while they last. */
  problems(): string[] {
    return [...this.missing.values()].map((m) => m.problem);
  }
}
