/**
 * Parsers for single config values. Each returns the parsed value or a `Refusal` whose
 * text says what was expected; the schema turns refusals into located issues. Refusals of
 * secrets (keys, request paths, TOTP secrets) never quote the value.
 */
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { digestKey } from './key-digest.js';
import { base32Decode } from '../shared/otp-format.js';
import { checkInterfaceName } from './interface-name.js';
import { canonicalIp } from '../shared/ip.js';
import { isPublishedClusterKey, isPublishedKey, isPublishedPath, isPublishedTotpSecret } from './refused-values.js';
import type { IpFamily, KeyDigest, RedisAddress, RedisEndpoint } from './types.js';

export const MIN_KEY_LENGTH = 10;
const GENERATE_HINT = 'generate your own with: openssl rand -hex 16 (and store it as sha256: with knock-port hash-key)';

export class Refusal {
  constructor(readonly message: string) {}
}

export type Parsed<T> = T | Refusal;

const PORT_TEXT = /^\d{1,5}$/;

function parsePortText(text: string): Parsed<number> {
  const port = Number(text);
  return PORT_TEXT.test(text) && port >= 1 && port <= 65535 ? port : new Refusal(`port '${text}' is not a number from 1 to 65535`);
}

/** An address a service can be forwarded to, or why not. */
function checkForwardAddress(address: string, family: IpFamily): Refusal | undefined {
  const lower = address.toLowerCase();
  if (family === 4 ? lower === '0.0.0.0' : /^[0:]+$/.test(lower)) return new Refusal(`${address} is the unspecified address; give the LAN host's address`);
  if (family === 4 ? lower.startsWith('127.') : lower === '::1' || /^[0:]+1$/.test(lower)) {
    return new Refusal(`${address} is a loopback address; use 'destination: local' for a service on this host`);
  }
  if (family === 4 ? Number(lower.split('.')[0]) >= 224 : lower.startsWith('ff')) return new Refusal(`${address} is a multicast or reserved address`);
  return undefined;
}

export type ParsedDestination =
  { kind: 'local' } | { kind: 'forward'; address: string; family: IpFamily; /** Undefined: same as the app port. */ port: number | undefined };

const DESTINATION_EXPECTED = "expected 'local', an IP address, IPv4:PORT, [IPv6]:PORT or a bare IPv6 address";

/** `local` | `IPv4` | `IPv4:PORT` | `[IPv6]:PORT` | `[IPv6]` | bare `IPv6`. */
export function parseDestination(text: string): Parsed<ParsedDestination> {
  if (text === 'local') return { kind: 'local' };
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  const hostAndPort = /^([^:]+):(.*)$/.exec(text);
  const [address, portText] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : isIP(text) !== 0
      ? [text, undefined]
      : hostAndPort
        ? [hostAndPort[1]!, hostAndPort[2]]
        : [undefined, undefined];
  if (address === undefined) return new Refusal(`'${text}' is not a destination: ${DESTINATION_EXPECTED}`);

  const family = isIP(address);
  if (family === 0 || address.includes('%') || (bracketed && family !== 6)) return new Refusal(`'${text}' is not a destination: ${DESTINATION_EXPECTED}`);
  const refusal = checkForwardAddress(address, family as IpFamily);
  if (refusal) return refusal;
  if (portText === undefined) return { kind: 'forward', address: address.toLowerCase(), family: family as IpFamily, port: undefined };
  const port = parsePortText(portText);
  return port instanceof Refusal ? port : { kind: 'forward', address: address.toLowerCase(), family: family as IpFamily, port };
}

export interface AccessKey {
  digest: KeyDigest;
  /** The key as written, when given in clear (needed for the original's 2FA file names). */
  clear?: string;
}

const HASHED_KEY = /^sha256:([0-9a-fA-F]{64})$/;

/** A key in clear (at least 10 characters), or `sha256:<64 hex>` (what `knock-port hash-key` prints); never a published one. */
export function parseAccessKey(text: string): Parsed<AccessKey> {
  if (text.startsWith('sha256:')) {
    const hex = HASHED_KEY.exec(text)?.[1];
    if (!hex) return new Refusal('a hashed key is sha256: followed by 64 hex digits (as knock-port hash-key prints it)');
    const digest = Buffer.from(hex, 'hex');
    return isPublishedKey(digest) ? new Refusal(`this is a published example key that anyone can try; ${GENERATE_HINT}`) : { digest };
  }
  // eslint-disable-next-line no-control-regex -- control characters are what this refuses
  if (/[\x00-\x1f\x7f]/.test(text)) return new Refusal('a key must not contain control characters');
  const digest = digestKey(text);
  if (isPublishedKey(digest, text)) return new Refusal(`this is a published example key that anyone can try; ${GENERATE_HINT}`);
  if (text.length < MIN_KEY_LENGTH) return new Refusal(`a key needs at least ${MIN_KEY_LENGTH} characters; ${GENERATE_HINT}`);
  return { digest, clear: text };
}

/** The secret request path of step 1 or step 2; matched exactly, so no length limit. Messages never quote it. */
export function parseRequestPath(text: string): Parsed<string> {
  if (!text.startsWith('/')) return new Refusal("expected a path starting with '/'");
  if (text === '/') return new Refusal("'/' alone is not a secret path; add random characters (openssl rand -hex 16)");
  if (/[?#]/.test(text)) return new Refusal("a path must not contain '?' or '#' (a query or fragment is not part of the path that is matched)");
  if (/\s/.test(text)) return new Refusal('a path must not contain whitespace');
  if (/[^\x21-\x7e]/.test(text)) return new Refusal('a path must be printable ASCII (percent-encode other characters)');
  if (isPublishedPath(text))
    return new Refusal("this is a published example path that anyone can try; use '/' followed by random characters, e.g. from: openssl rand -hex 16");
  return text;
}

/** RFC 4648 base32, at least 80 bits (what authenticator apps accept). */
export function parseTotpSecret(text: string): Parsed<string> {
  const bytes = base32Decode(text);
  if (!bytes) return new Refusal('not a base32 TOTP secret (letters A-Z and digits 2-7; knock-port totp new makes one)');
  if (bytes.length < 10) return new Refusal('a TOTP secret needs at least 80 bits (16 base32 characters)');
  if (isPublishedTotpSecret(text))
    return new Refusal('this is a published example TOTP secret that anyone can try; generate your own with: knock-port totp new --user NAME');
  return text.replace(/[\s=]/g, '').toUpperCase();
}

/**
 * A Linux interface name, a prefix wildcard (`ppp+` as in the original and iptables, or `ppp*`
 * as in nft; both mean the same on every backend) or `any`; normalized to `eth0`, `ppp*`, `any`.
 */
export function parseInterfaceName(text: string): Parsed<string> {
  const checked = checkInterfaceName(text);
  return 'error' in checked ? new Refusal(checked.error) : checked.name;
}

export function parseAbsolutePath(text: string): Parsed<string> {
  return isAbsolute(text) && !text.includes('\0') ? text : new Refusal(`expected an absolute path (starting with '/'), got '${text}'`);
}

/** True for 127.0.0.0/8 and ::1: addresses only this host reaches. */
export function isLoopbackIp(host: string): boolean {
  return isIP(host) === 4 ? host.startsWith('127.') : host === '::1';
}

/**
 * `IP:PORT` or `[IPv6]:PORT` of the metrics endpoint, e.g. `127.0.0.1:9464`; an address other
 * than loopback needs a token or client certificates too (policy.ts).
 */
export function parseMetricsListen(text: string): Parsed<string> {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(.+)$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  if (!match || !host || isIP(host) === 0) return new Refusal(`expected IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464; got '${text}'`);
  const port = parsePortText(match[3]!);
  return port instanceof Refusal ? port : text;
}

/** A firewall mark: an integer, or a `0x` hex string. */
export function parsePacketMark(value: number | string): Parsed<number> {
  const mark = typeof value === 'number' ? value : /^0x[0-9a-f]+$/i.test(value) ? Number.parseInt(value, 16) : /^\d+$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(mark) && mark >= 1 && mark <= 0xffffffff ? mark : new Refusal(`expected a mark from 1 to 0xffffffff, e.g. 0x4b50; got '${value}'`);
}

/** An address for a listening socket: a literal IP without zone, e.g. 127.0.0.1 or ::1. */
export function parseListenAddress(text: string): Parsed<string> {
  const address = text.includes('%') ? undefined : canonicalIp(text);
  if (address === undefined) return new Refusal(`expected an IP address to listen on, e.g. 127.0.0.1 or ::1; got '${text}'`);
  if (isIP(address) !== isIP(text)) return new Refusal(`write the IPv4-mapped address ${text} as ${address}`);
  return address;
}

/**
 * A trusted proxy: `IP` or `IP/PREFIX` (host bits may be set, as in the original), normalized
 * to `address/prefix`. A network holding every address is refused: anyone could then claim to be
 * any client.
 */
export function parseNetwork(text: string): Parsed<string> {
  const [addressText = '', prefixText, extra] = text.trim().split('/');
  const address = addressText.includes('%') || extra !== undefined ? undefined : canonicalIp(addressText);
  if (address === undefined) return new Refusal(`'${text}' is not an IP address or network (IP or IP/PREFIX, e.g. 127.0.0.1 or 10.0.0.0/8)`);
  const family = isIP(address);
  if (family !== isIP(addressText)) return new Refusal(`write the IPv4-mapped address ${addressText} as ${address}`);
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) return new Refusal(`'${text}': the prefix length must be a number from 0 to ${bits}`);
  if (prefix === 0) return new Refusal(`'${text}' trusts every address: anyone could claim to be any client; list only your proxies`);
  return `${address}/${prefix}`;
}

/**
 * A network of `always_allow`: sources that reach protected ports without a knock (an operator's
 * management range). `/0` would be no gate at all.
 */
export function parseAllowedNetwork(text: string): Parsed<string> {
  if (/\/0*0$/.test(text.trim())) return new Refusal(`'${text}' allows every address: the gate would protect nothing; list your management networks`);
  return parseNetwork(text);
}

/** The cluster key signs every grant the gateways share: 32 characters is 128 bits of hex. */
export const MIN_CLUSTER_KEY_LENGTH = 32;
const CLUSTER_KEY_HINT = 'generate one with: openssl rand -hex 32 > /etc/knock-port/cluster.key, the same file on every gateway';

/** The cluster key in clear (written in the config or read from key_file), as bytes. Messages never quote it. */
export function parseClusterKey(text: string): Parsed<Buffer> {
  // eslint-disable-next-line no-control-regex -- control characters are what this refuses
  if (/[\x00-\x1f\x7f]/.test(text)) return new Refusal('a cluster key must not contain control characters');
  if (isPublishedClusterKey(text)) return new Refusal(`this is a published example key that anyone can try; ${CLUSTER_KEY_HINT}`);
  if (text.length < MIN_CLUSTER_KEY_LENGTH) return new Refusal(`a cluster key needs at least ${MIN_CLUSTER_KEY_LENGTH} characters; ${CLUSTER_KEY_HINT}`);
  return Buffer.from(text, 'utf8');
}

export const REDIS_PORT = 6379;
export const SENTINEL_PORT = 26379;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const REDIS_URL_EXPECTED = 'expected redis://HOST[:PORT][/DB] or rediss://HOST[:PORT][/DB] (rediss: TLS)';

/** A DNS name or an IP address (an IPv6 one without brackets), lower case; undefined when neither. */
function parseHost(text: string): string | undefined {
  if (isIP(text) === 4) return text;
  if (isIP(text) === 6) return text.includes('%') ? undefined : canonicalIp(text);
  return HOST_NAME.test(text) && !/^[\d.]+$/.test(text) ? text.toLowerCase() : undefined;
}

/**
 * The store's address as a URL, `redis://` or `rediss://` (TLS). Credentials in the URL are
 * refused (they would be shown wherever the address is): they go in username and password.
 * Messages never quote the URL, in case it holds a password.
 */
export interface ParsedRedisUrl {
  address: Extract<RedisAddress, { kind: 'server' }>;
  /** `rediss://`. */
  tls: boolean;
}

export function parseRedisUrl(text: string): Parsed<ParsedRedisUrl> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return new Refusal(`not a URL; ${REDIS_URL_EXPECTED}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return new Refusal(`the scheme must be redis: or rediss:; ${REDIS_URL_EXPECTED}`);
  if (url.username !== '' || url.password !== '') {
    return new Refusal('the url must not hold credentials (they would show wherever the address is shown): give them as username and password_file');
  }
  if (url.search !== '' || url.hash !== '') return new Refusal(`the url takes no query or fragment; ${REDIS_URL_EXPECTED}`);
  const host = parseHost(url.hostname.replace(/^\[(.*)\]$/, '$1'));
  if (host === undefined) return new Refusal(`the host must be a DNS name or an IP address; ${REDIS_URL_EXPECTED}`);
  const db = url.pathname === '' || url.pathname === '/' ? 0 : /^\/\d{1,2}$/.test(url.pathname) ? Number(url.pathname.slice(1)) : undefined;
  if (db === undefined) return new Refusal(`the path can only be a database number (/0 to /99); ${REDIS_URL_EXPECTED}`);
  return { address: { kind: 'server', endpoint: { host, port: url.port === '' ? REDIS_PORT : Number(url.port) }, db }, tls: url.protocol === 'rediss:' };
}

/** One Sentinel: `HOST:PORT`, `[IPv6]:PORT`, or a bare host (port 26379). */
export function parseSentinelAddress(text: string): Parsed<RedisEndpoint> {
  const expected = `expected HOST:PORT, [IPv6]:PORT or HOST (port ${SENTINEL_PORT}), e.g. 10.0.0.5:${SENTINEL_PORT}; got '${text}'`;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  const hostAndPort = /^([^:[\]]+):(.*)$/.exec(text);
  const [hostText, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : hostAndPort ? [hostAndPort[1]!, hostAndPort[2]] : [text, undefined];
  const host = parseHost(hostText);
  if (host === undefined || (bracketed && isIP(hostText) !== 6)) return new Refusal(expected);
  if (portText === undefined) return { host, port: SENTINEL_PORT };
  const port = parsePortText(portText);
  return port instanceof Refusal ? new Refusal(expected) : { host, port };
}
