/**
 * IP addresses between packet bytes and text, cheap enough per packet: formatting skips a
 * repeated address, and per-source-prefix keys (rate limits) allocate nothing when they repeat.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Dotted quad of the 4 bytes at `offset`. */
export function formatIPv4(packet: Buffer, offset: number): string {
  return `${packet[offset]}.${packet[offset + 1]}.${packet[offset + 2]}.${packet[offset + 3]}`;
}

/** RFC 5952 text of the 16 bytes at `offset`: lowercase, longest zero run (≥2 groups) as `::`. */
export function formatIPv6(packet: Buffer, offset: number): string {
  let bestStart = -1;
  let bestLength = 1;
  let runStart = -1;
  for (let group = 0; group <= 8; group++) {
    const zero = group < 8 && packet.readUInt16BE(offset + group * 2) === 0;
    if (zero && runStart < 0) runStart = group;
    if (!zero && runStart >= 0) {
      if (group - runStart > bestLength) {
        bestStart = runStart;
        bestLength = group - runStart;
      }
      runStart = -1;
    }
  }
  let text = '';
  for (let group = 0; group < 8; group++) {
    if (group === bestStart) {
      text += '::';
      group += bestLength - 1;
      continue;
    }
    if (text.length > 0 && !text.endsWith(':')) text += ':';
    text += packet.readUInt16BE(offset + group * 2).toString(16);
  }
  return text;
}

/**
 * Text of addresses read one after another from packets, remembering the last one: a gateway's
 * own address, or a flood's single source, is then compared rather than formatted again (IPv6
 * formatting costs about a microsecond).
 */
export class AddressFormatter {
  private readonly last = Buffer.alloc(16);
  private lastLength = 0;
  private lastText = '';

  format(packet: Buffer, offset: number, family: 4 | 6): string {
    const length = family === 4 ? 4 : 16;
    if (length === this.lastLength && sameBytes(packet, offset, this.last, length)) return this.lastText;
    copyAddress(packet, offset, this.last, 0, length);
    this.lastLength = length;
    this.lastText = family === 4 ? formatIPv4(packet, offset) : formatIPv6(packet, offset);
    return this.lastText;
  }
}

function sameBytes(packet: Buffer, offset: number, bytes: Buffer, length: number): boolean {
  for (let i = 0; i < length; i++) if (packet[offset + i] !== bytes[i]) return false;
  return true;
}

/** The 4 or 16 bytes of an IPv4 or IPv6 address in text form; undefined when not an address. */
export function parseIpAddress(text: string): Buffer | undefined {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text)) return undefined;
  let head = text;
  let tailV4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tailV4 = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const [left = '', right] = head.split('::');
  const leftGroups = left === '' ? [] : left.split(':');
  const rightGroups = right === undefined || right === '' ? [] : right.split(':');
  const missing = 8 - leftGroups.length - rightGroups.length;
  const groups = [...leftGroups, ...Array<string>(right === undefined ? 0 : missing).fill('0'), ...rightGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  if (tailV4.length === 4) Buffer.from(tailV4).copy(bytes, 12);
  return bytes;
}

/** Copies an address (4 or 16 bytes); a byte loop beats Buffer#copy's native call at this size. */
export function copyAddress(from: Buffer, fromOffset: number, to: Buffer, toOffset: number, length: number): void {
  for (let i = 0; i < length; i++) to[toOffset + i] = from[fromOffset + i]!;
}

/**
 * The key of the per-source budget an address belongs to: its network at the configured prefix
 * length (`2001:db8:1:2::/64`, `198.51.100.0/24`), or the address's own text at full length.
 * An IPv6 client holds a whole /64: counted per address it would have 2^64 budgets. From packet
 * bytes nothing is allocated at full length or when the network repeats (a flood from one
 * network); a new network costs one string, as a new address's text does.
 */
export class SourcePrefixKey {
  private readonly masked = Buffer.alloc(16);
  private readonly last = Buffer.alloc(16);
  private lastLength = 0;
  private lastKey = '';

  constructor(
    readonly prefixV4: number,
    readonly prefixV6: number,
  ) {}

  /** `text`: the address at `offset` as already formatted (the key itself at full length). */
  ofBytes(packet: Buffer, offset: number, family: 4 | 6, text: string): string {
    const length = family === 4 ? 4 : 16;
    const bits = family === 4 ? this.prefixV4 : this.prefixV6;
    if (bits >= length * 8) return text;
    for (let i = 0; i < length; i++) {
      const kept = bits - i * 8;
      this.masked[i] = kept >= 8 ? packet[offset + i]! : kept <= 0 ? 0 : packet[offset + i]! & (0xff << (8 - kept));
    }
    if (length === this.lastLength && sameBytes(this.masked, 0, this.last, length)) return this.lastKey;
    copyAddress(this.masked, 0, this.last, 0, length);
    this.lastLength = length;
    this.lastKey = `${family === 4 ? formatIPv4(this.masked, 0) : formatIPv6(this.masked, 0)}/${bits}`;
    return this.lastKey;
  }

  /**
   * The network of the address at `offset` as bytes, for keys that must not cost a string per
   * packet: its masked address (zero-padded to 16 bytes) into `out[0..16)`, then the family and
   * the prefix length into `out[16]` and `out[17]`. Returns the number of bytes written (18).
   */
  maskInto(packet: Buffer, offset: number, family: 4 | 6, out: Uint8Array): number {
    const length = family === 4 ? 4 : 16;
    const bits = Math.min(family === 4 ? this.prefixV4 : this.prefixV6, length * 8);
    for (let i = 0; i < 16; i++) {
      const kept = bits - i * 8;
      out[i] = i >= length || kept <= 0 ? 0 : kept >= 8 ? packet[offset + i]! : packet[offset + i]! & (0xff << (8 - kept));
    }
    out[16] = family;
    out[17] = bits;
    return 18;
  }

  /** The key of an address in text form (canonical, see sessions/address.ts); anything else is its own key. */
  ofText(ip: string): string {
    const bytes = parseIpAddress(ip);
    return bytes === undefined ? ip : this.ofBytes(bytes, 0, bytes.length === 4 ? 4 : 6, ip);
  }
}
