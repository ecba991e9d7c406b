/**
 * Is there an interface that each configured name matches? A mistyped `interface_ext` (`eht0`)
 * makes every gate rule match nothing: the firewall loads, and the protected ports are as open
 * as the host's other rules leave them. The name may also be right and the interface not there
 * yet (ppp, wg), so this is reported loudly (check, start log, health), not refused.
 * /sys/class/net lists the interfaces of the reader's network namespace.
 */
import { readdirSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { describeError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { interfaceMatches, interfacePattern } from '../config/interface-name.js';

export const SYS_CLASS_NET = '/sys/class/net';

export interface MissingInterface {
  /** Config key, e.g. `interface_ext` (global) or `ssh.interface_ext`. */
  key: string;
  name: string;
  /** One line, as `health` reports it. */
  problem: string;
  /** What it means and what to do, for `check` and the log. */
  hint: string;
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

/** Names of the configured interfaces that match no interface in `present`. */
export function missingInterfaces(config: Config, present: readonly string[]): MissingInterface[] {
  return interfaceUses(config)
    .filter((use) => !present.some((ifname) => interfaceMatches(use.name, ifname)))
    .map(({ key, name, side }) => ({
      key,
      name,
      problem: `${side === 'ext' ? 'gate' : 'LAN side'} matches no interface: ${key} '${name}'`,
      hint: side === 'ext' ? EXT_HINT : INT_HINT,
    }));
}

/** The interfaces of this network namespace, or why they cannot be listed. */
export function listInterfaces(dir = SYS_CLASS_NET): string[] | { error: string } {
  try {
    return readdirSync(dir);
  } catch (err) {
    return { error: `cannot list the network interfaces in ${dir}: ${describeError(err)}` };
  }
}

/** `check`: one warning line per missing interface, or one saying the check could not be made. */
export function interfaceWarnings(config: Config, dir = SYS_CLASS_NET): string[] {
  const present = listInterfaces(dir);
  if ('error' in present) return [`${present.error}; interface names not checked`];
  return missingInterfaces(config, present).map((missing) => `${missing.problem} on this host: ${missing.hint}`);
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
