/**
 * Interface names as the config writes them, and as each firewall spells them. The config
 * accepts one syntax for every backend: an exact name (`eth0`), an exact name that may be absent
 * for now (`wg0?`), a prefix wildcard written with a trailing `+` (iptables' spelling, the
 * original's) or `*` (nft's), or `any`. The two
 * firewalls each treat only their own wildcard character as one: `iifname "ppp+"` or
 * `-i ppp*` silently match no interface, and the gate with them. So names are only ever
 * written into rules through this module.
 */

/** Matches every interface: rules then carry no interface match at all. */
export const ANY_INTERFACE = 'any';

/** Linux IFNAMSIZ is 16 bytes with the terminating NUL. */
export const MAX_INTERFACE_NAME = 15;

/**
 * Ends an exact name whose interface may not exist yet (`wg0?`, `ppp0?`): `check` and `run`
 * then warn instead of refusing. A wildcard needs no mark: it may match nothing for a while.
 */
export const OPTIONAL_MARK = '?';

export type InterfacePattern = { kind: 'any' } | { kind: 'exact'; name: string; optional: boolean } | { kind: 'prefix'; prefix: string };

const WILDCARDS = ['*', '+'];
/** Characters Linux allows that also pass unquoted through iptables-restore and quoted through nft. */
const NAME_CHARS = /^[A-Za-z0-9_.@-]+$/;

/**
 * How a (config-validated or not) name matches: `''`, `any` and a bare wildcard match every
 * interface; a trailing `*` or `+` matches a prefix; a trailing `?` marks an exact name as
 * optional. Lenient on purpose, so a name that reached a rule generator without the config's
 * checks is still translated, not copied.
 */
export function interfacePattern(name: string): InterfacePattern {
  const optional = name.endsWith(OPTIONAL_MARK);
  const written = optional ? name.slice(0, -1) : name;
  if (written === '' || written === ANY_INTERFACE) return { kind: 'any' };
  const last = written.slice(-1);
  if (!WILDCARDS.includes(last)) return { kind: 'exact', name: written, optional };
  const prefix = written.slice(0, -1);
  return prefix === '' ? { kind: 'any' } : { kind: 'prefix', prefix };
}

/** The config's canonical spelling: `eth0`, `wg0?`, `ppp*` or `any`. */
export function canonicalInterfaceName(pattern: InterfacePattern): string {
  if (pattern.kind === 'exact') return pattern.optional ? `${pattern.name}${OPTIONAL_MARK}` : pattern.name;
  return pattern.kind === 'any' ? ANY_INTERFACE : `${pattern.prefix}*`;
}

/** Whether the name may match no interface for now (a wildcard, or `name?`): a warning, not an error, when it does. */
export function mayBeAbsent(name: string): boolean {
  const pattern = interfacePattern(name);
  return pattern.kind === 'prefix' || (pattern.kind === 'exact' && pattern.optional);
}

/**
 * Checks a config value; returns the canonical spelling, or why it is not a name. Refused:
 * a wildcard anywhere but at the end (neither firewall can express it), more than 15
 * characters wildcard included (the kernel and iptables refuse longer names), characters
 * Linux forbids (`/`, `:`, whitespace) or that would need quoting in a ruleset, and `?` after
 * anything but an exact name.
 */
export function checkInterfaceName(text: string): { name: string } | { error: string } {
  const pattern = interfacePattern(text);
  if (text.endsWith(OPTIONAL_MARK) && pattern.kind !== 'exact') {
    return {
      error: `'${text}': only an exact name takes a final ${OPTIONAL_MARK} (e.g. wg0?); a wildcard such as ppp+ may match no interface for a while without it, and 'any' always matches`,
    };
  }
  if (pattern.kind === 'any') return { name: ANY_INTERFACE };
  const body = pattern.kind === 'exact' ? pattern.name : pattern.prefix;
  if (WILDCARDS.some((w) => body.includes(w))) {
    return { error: `'${text}': a wildcard (* or +) may only end the name, matching every interface that starts with the rest (e.g. ppp* or ppp+)` };
  }
  if (/:/.test(body) && NAME_CHARS.test(body.replace(/:/g, ''))) {
    return { error: `'${text}' is an address label, not an interface; name the interface itself (e.g. ${body.split(':')[0]})` };
  }
  if (!NAME_CHARS.test(body) || body === '.' || body === '..') {
    return {
      error: `'${text}' is not an interface name: use A-Z a-z 0-9 _ . @ - (no spaces, '/' or ':'), optionally ending in * or + to match a prefix or in ? for an interface that may come later`,
    };
  }
  const length = pattern.kind === 'exact' ? pattern.name.length : text.length;
  if (length > MAX_INTERFACE_NAME) {
    return { error: `'${text}' has ${length} characters; Linux interface names have at most ${MAX_INTERFACE_NAME}, a trailing wildcard included` };
  }
  return { name: canonicalInterfaceName(pattern) };
}

/** The name for nft's `iifname`/`oifname` (its wildcard is `*`), or undefined for any interface. */
export function nftInterfaceName(name: string): string | undefined {
  const pattern = interfacePattern(name);
  return pattern.kind === 'any' ? undefined : pattern.kind === 'exact' ? pattern.name : `${pattern.prefix}*`;
}

/** The name for iptables' `-i`/`-o` (its wildcard is `+`), or undefined for any interface. */
export function iptablesInterfaceName(name: string): string | undefined {
  const pattern = interfacePattern(name);
  return pattern.kind === 'any' ? undefined : pattern.kind === 'exact' ? pattern.name : `${pattern.prefix}+`;
}

/** True when the configured `name` matches the interface `ifname`, as the firewall rules would. */
export function interfaceMatches(name: string, ifname: string): boolean {
  const pattern = interfacePattern(name);
  if (pattern.kind === 'any') return true;
  return pattern.kind === 'exact' ? ifname === pattern.name : ifname.startsWith(pattern.prefix);
}

/** The interface keys of the global section or of one app, as the config writes them (canonical spelling). */
export interface InterfaceKeys {
  interface_ext?: string | undefined;
  interface_int?: string | undefined;
}

/** A refused `interface_ext`: the config key path and why. */
export interface InterfaceScopeIssue {
  path: string[];
  message: string;
}

const EVERY_INTERFACE =
  "matches every interface ('any', or a bare * or +): the gate would also catch LAN traffic and this host's own (loopback included), so LAN clients would have to knock and LAN services on the same ports stop answering them; name the external interface (ip link lists them), or a family of them with a wildcard such as ppp+";

/** Two names match a common interface (`ppp*` and `ppp0`, `ppp*` and `pp*`). */
function overlaps(wildcard: string, other: InterfacePattern): boolean {
  if (other.kind === 'any') return false;
  if (other.kind === 'exact') return other.name.startsWith(wildcard);
  return other.prefix.startsWith(wildcard) || wildcard.startsWith(other.prefix);
}

/**
 * Refusals that need no look at the host: an `interface_ext` (global or per app) that matches
 * every interface, or a wildcard one that also matches a LAN interface the config names
 * (`interface_int` other than `interface_ext` itself). Either way the gate would catch LAN
 * traffic too. A LAN side of `any` (forwarded traffic may leave anywhere) overlaps nothing.
 */
export function interfaceScopeIssues(global: InterfaceKeys, apps: readonly { name: string; app: InterfaceKeys }[]): InterfaceScopeIssue[] {
  const sections = [{ path: 'global', keys: global }, ...apps.map(({ name, app }) => ({ path: name, keys: app }))];
  const lanNames = sections.flatMap(({ keys }) =>
    keys.interface_int !== undefined && keys.interface_int !== (keys.interface_ext ?? global.interface_ext) ? [keys.interface_int] : [],
  );
  const issues: InterfaceScopeIssue[] = [];
  for (const { path, keys } of sections) {
    const ext = keys.interface_ext;
    if (ext === undefined) continue;
    const pattern = interfacePattern(ext);
    if (pattern.kind === 'any') {
      issues.push({ path: [path, 'interface_ext'], message: EVERY_INTERFACE });
      continue;
    }
    if (pattern.kind !== 'prefix') continue;
    const lan = lanNames.find((name) => name !== ext && overlaps(pattern.prefix, interfacePattern(name)));
    if (lan !== undefined) {
      issues.push({
        path: [path, 'interface_ext'],
        message: `'${ext}' also matches the LAN interface '${lan}' (interface_int): the gate would catch LAN traffic too; make the wildcard narrower or name the external interface`,
      });
    }
  }
  return issues;
}
