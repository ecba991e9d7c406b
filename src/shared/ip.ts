/**
 * Canonical text of IP addresses, so that addresses from sockets, the kernel, the state file
 * and the command line compare equal; sessions, control and step 2 key on it.
 */
import { isIP } from 'node:net';

const MAPPED_DOTTED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;
const MAPPED_HEX = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i;

/**
 * One spelling per address, so records from sockets, the kernel and operators compare equal:
 * IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as a dual-stack socket reports) becomes plain IPv4, and
 * IPv6 is lower-case and compressed, without a zone. Undefined when `text` is not an IP address.
 */
export function canonicalIp(text: string): string | undefined {
  const family = isIP(text);
  if (family === 4) return text;
  if (family !== 6) return undefined;
  const withoutZone = text.split('%')[0]!; // a link-local zone (`%eth0`) is not part of the address
  const compressed = new URL(`http://[${withoutZone}]/`).hostname.slice(1, -1);
  const dotted = MAPPED_DOTTED.exec(compressed);
  if (dotted) return dotted[1];
  const hex = MAPPED_HEX.exec(compressed);
  if (hex) {
    const high = parseInt(hex[1]!, 16);
    const low = parseInt(hex[2]!, 16);
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return compressed;
}
