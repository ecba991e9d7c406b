/**
 * Which client a step-2 request speaks for. Pure: the connection's peer address, the request
 * headers and the trusted proxies in, the client address (or why there is none) out.
 *
 * Only a peer listed in `trusted_proxies` may name another client; any other peer's headers are
 * ignored, so a forged header opens nothing. A proxy may also pass on headers the client sent
 * itself, so from a trusted peer:
 *
 * - `X-Forwarded-For` is read from the right: each proxy appends the address it got the request
 *   from, so entries that are trusted proxies are hops, and the rightmost entry that is not one
 *   is the client (everything left of it is whatever the client sent). All entries trusted: the
 *   request came from a proxy host itself, the leftmost entry.
 * - `X-Real-IP` is one address a proxy sets. It counts only as what a trusted proxy set: it must
 *   name the same client as `X-Forwarded-For` when both are present (a client-sent X-Real-IP
 *   passed through unchanged disagrees with the entry its proxy appended, and is refused), and
 *   one naming a trusted proxy is a hop set further down a chain, not a client. Without
 *   `X-Forwarded-For` it is taken as is: the proxy next to knock-port must then set it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { canonicalIp } from '../shared/ip.js';
import { networkSet, type NetworkSet } from '../shared/network-set.js';

/** The proxies whose forwarded-for headers step 2 believes. */
export type TrustedProxies = NetworkSet;
export const trustedProxies = networkSet;

export type ClientAddress = { ok: true; ip: string; /** The trusted proxy the request came through. */ proxy?: string } | { ok: false; reason: string };

/** `peer`: the connection's remote address, canonical (see canonicalIp). */
export function resolveClientAddress(peer: string, headers: IncomingHttpHeaders, trusted: TrustedProxies): ClientAddress {
  if (!trusted.has(peer)) return { ok: true, ip: peer };
  const realIpText = headerText(headers['x-real-ip']);
  const forwardedFor = headerText(headers['x-forwarded-for']);
  if (realIpText === undefined && forwardedFor === undefined) return { ok: false, reason: 'trusted proxy sent neither X-Real-IP nor X-Forwarded-For' };
  const realIp = realIpText === undefined ? undefined : literalIp(realIpText.trim());
  if (realIpText !== undefined && realIp === undefined) return { ok: false, reason: 'trusted proxy sent a X-Real-IP that is not one IP address' };
  if (forwardedFor === undefined) return { ok: true, ip: realIp!, proxy: peer };
  const fromChain = clientInForwardedFor(forwardedFor, trusted);
  if (!fromChain.ok) return fromChain;
  if (realIp !== undefined && !trusted.has(realIp) && realIp !== fromChain.ip) {
    return {
      ok: false,
      reason: 'X-Real-IP and X-Forwarded-For name different clients: one was passed on from the client; the proxy must set both, or overwrite X-Real-IP',
    };
  }
  return { ok: true, ip: fromChain.ip, proxy: peer };
}

/** The rightmost entry that is not a trusted proxy; the leftmost when every entry is one. */
function clientInForwardedFor(text: string, trusted: TrustedProxies): { ok: true; ip: string } | { ok: false; reason: string } {
  const entries = text.split(',');
  let leftmost: string | undefined;
  for (let i = entries.length - 1; i >= 0; i--) {
    const ip = literalIp(entries[i]!.trim());
    if (ip === undefined) return { ok: false, reason: 'trusted proxy sent a X-Forwarded-For that is not one IP address' };
    if (!trusted.has(ip)) return { ok: true, ip };
    leftmost = ip;
  }
  return { ok: true, ip: leftmost! };
}

/** Repeated headers arrive joined with ", " (or as a list): either way, more than one value. */
function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A plain IP address (no zone, port or brackets), canonical. */
function literalIp(text: string): string | undefined {
  return text.includes('%') ? undefined : canonicalIp(text);
}
