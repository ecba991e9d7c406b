/**
 * Interface names as the config writes them, and as each firewall spells them. The config
 * accepts one syntax for every backend: an exact name (`eth0`), a prefix wildcard written with
 * a trailing `+` (iptables' spelling, the original's) or `*` (nft's), or `any`. The two
 * firewalls each treat only their own wildcard character as one: `iifname "ppp+"` or
 * `-i ppp*` silently match no interface, and the gate with them. So names are only ever
 * written into rules through this module.
 */

/** Matches every interface: rules then carry no interface match at all. */
export const ANY_INTERFACE = 'any';

/** Linux IFNAMSIZ is 16 bytes with the terminating NUL. */
export const MAX_INTERFACE_NAME = 15;

export type InterfacePattern = { kind: 'any' } | { kind: 'exact'; name: string } | { kind: 'prefix'; prefix: string };

const WILDCARDS = ['*', '+'];
/** Characters Linux allows that also pass unquoted through iptables-restore and quoted through nft. */
const NAME_CHARS = /^[A-Za-z0-9_.@-]+$/;

/**
 * How a (config-validated or not) name matches: `''`, `any` and a bare wildcard match every
 * interface; a trailing `*` or `+` matches a prefix. Lenient on purpose, so a name that
 * reached a rule generator without the config's checks is still translated, not copied.
 */
export function interfacePattern(name: string): InterfacePattern {
  if (name === '' || name === ANY_INTERFACE) return { kind: 'any' };
  const last = name.slice(-1);
  if (!WILDCARDS.includes(last)) return { kind: 'exact', name };
  const prefix = name.slice(0, -1);
  return prefix === '' ? { kind: 'any' } : { kind: 'prefix', prefix };
}

/** The config's canonical spelling: `eth0`, `ppp*` or `any`. */
export function canonicalInterfaceName(pattern: InterfacePattern): string {
  return pattern.kind === 'any' ? ANY_INTERFACE : pattern.kind === 'exact' ? pattern.name : `${pattern.prefix}*`;
}

/**
 * Checks a config value; returns the canonical spelling, or why it is not a name. Refused:
 * a wildcard anywhere but at the end (neither firewall can express it), more than 15
 * characters wildcard included (the kernel and iptables refuse longer names), and characters
 * Linux forbids (`/`, `:`, whitespace) or that would need quoting in a ruleset.
 */
export function checkInterfaceName(text: string): { name: string } | { error: string } {
  const pattern = interfacePattern(text);
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
      error: `'${text}' is not an interface name: use A-Z a-z 0-9 _ . @ - (no spaces, '/' or ':'), optionally ending in * or + to match a prefix, or 'any'`,
    };
  }
  if (text.length > MAX_INTERFACE_NAME) {
    return { error: `'${text}' has ${text.length} characters; Linux interface names have at most ${MAX_INTERFACE_NAME}, a trailing wildcard included` };
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
