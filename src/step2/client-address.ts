/**
 * Which client a step-2 request speaks for. Pure: the connection's peer address, the request
 * headers and the trusted proxies in, the client address (or why there is none) out.
 *
 * Only a peer listed in `trusted_proxies` may name another client, in `X-Real-IP` or else as the
 * LAST `X-Forwarded-For` entry (the one its own proxy appended; earlier entries are whatever the
 * client sent). Any other peer's headers are ignored, so a forged header opens nothing.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { canonicalIp } from '../sessions/address.js';

export interface TrustedProxies {
  has(ip: string): boolean;
}

/** Networks as the config holds them (`address/prefix`). */
export function trustedProxies(networks: readonly string[] = []): TrustedProxies {
  const list = new BlockList();
  for (const network of networks) {
    const [address = '', prefix = ''] = network.split('/');
    list.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return {
    has: (ip) => networks.length > 0 && list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4'),
  };
}

export type ClientAddress =
  | { ok: true; ip: string; /** The trusted proxy the request came through. */ proxy?: string }
  | { ok: false; reason: string };

/** `peer`: the connection's remote address, canonical (see canonicalIp). */
export function resolveClientAddress(peer: string, headers: IncomingHttpHeaders, trusted: TrustedProxies): ClientAddress {
  if (!trusted.has(peer)) return { ok: true, ip: peer };
  const realIp = headerText(headers['x-real-ip']);
  const forwardedFor = headerText(headers['x-forwarded-for']);
  const [name, claimed] =
    realIp !== undefined ? ['X-Real-IP', realIp] : forwardedFor !== undefined ? ['X-Forwarded-For', forwardedFor.split(',').at(-1)!] : [];
  if (name === undefined || claimed === undefined) return { ok: false, reason: 'trusted proxy sent neither X-Real-IP nor X-Forwarded-For' };
  const ip = literalIp(claimed.trim());
  if (ip === undefined) return { ok: false, reason: `trusted proxy sent a ${name} that is not one IP address` };
  return { ok: true, ip, proxy: peer };
}

/** Repeated headers arrive joined with ", " (or as a list): either way, more than one value. */
function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A plain IP address (no zone, port or brackets), canonical. */
function literalIp(text: string): string | undefined {
  return text.includes('%') ? undefined : canonicalIp(text);
}
