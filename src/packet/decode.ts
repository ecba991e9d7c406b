/**
 * Zero-copy decoding of one IP packet carrying TCP: IPv4 (with options) or IPv6 (with its
 * extension-header chain), then the TCP header and options. Every length is checked against
 * the bytes present; nothing is copied and, on success, nothing is allocated: the caller
 * passes a view object that is filled in place.
 */

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

const PROTO_TCP = 6;
const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_DESTINATION_OPTIONS = 60;
/** More extension headers than this in one packet is an attack, not a client. */
const MAX_IPV6_EXTENSION_HEADERS = 8;

/** Why a packet could not be decoded as one whole TCP segment. */
export type DecodeFailure =
  | 'truncated'
  | 'bad-ip-version'
  | 'bad-ip-header'
  | 'bad-ip-options'
  | 'bad-ipv6-extension'
  | 'fragment'
  | 'non-first-fragment'
  | 'not-tcp'
  | 'bad-tcp-header'
  | 'bad-tcp-options';

/** A decoded TCP segment: offsets into `packet`, which is not copied. */
export class TcpSegmentView {
  packet: Buffer = Buffer.alloc(0);
  family: 4 | 6 = 4;
  /** Offset of the source and destination addresses (4 or 16 bytes each). */
  srcOffset = 0;
  dstOffset = 0;
  /** Start of the TCP header and end of the segment (the IP datagram's end, padding excluded). */
  tcpOffset = 0;
  end = 0;
  sport = 0;
  dport = 0;
  seq = 0;
  ack = 0;
  flags = 0;
  window = 0;
  /** Client's MSS option, or 0 when absent. */
  mss = 0;
  payloadOffset = 0;

  get payloadLength(): number {
    return this.end - this.payloadOffset;
  }

  get addressLength(): number {
    return this.family === 4 ? 4 : 16;
  }
}

/**
 * Fills `view` from `packet` (which starts at the IP header). Returns undefined on success,
 * or why the packet is not a whole, unfragmented TCP segment. `family` is set as soon as the
 * version nibble is read, and the addresses as soon as the fixed IP header is present.
 */
export function decodeTcpPacket(packet: Buffer, view: TcpSegmentView): DecodeFailure | undefined {
  view.packet = packet;
  if (packet.length < 1) return 'truncated';
  const version = packet[0]! >> 4;
  if (version === 4) return decodeIPv4(packet, view);
  if (version === 6) return decodeIPv6(packet, view);
  return 'bad-ip-version';
}

function decodeIPv4(packet: Buffer, view: TcpSegmentView): DecodeFailure | undefined {
  view.family = 4;
  if (packet.length < 20) return 'truncated';
  view.srcOffset = 12;
  view.dstOffset = 16;
  const headerLength = (packet[0]! & 0x0f) * 4;
  const totalLength = uint16(packet, 2);
  if (headerLength < 20 || totalLength < headerLength) return 'bad-ip-header';
  if (packet.length < headerLength || packet.length < totalLength) return 'truncated';
  if (!optionsWellFormed(packet, 20, headerLength, 0)) return 'bad-ip-options';
  const fragmentField = uint16(packet, 6);
  if ((fragmentField & 0x1fff) !== 0) return 'non-first-fragment';
  if ((fragmentField & 0x2000) !== 0) return 'fragment';
  if (packet[9] !== PROTO_TCP) return 'not-tcp';
  return decodeTcp(packet, view, headerLength, totalLength);
}

function decodeIPv6(packet: Buffer, view: TcpSegmentView): DecodeFailure | undefined {
  view.family = 6;
  if (packet.length < 40) return 'truncated';
  view.srcOffset = 8;
  view.dstOffset = 24;
  const payloadLength = uint16(packet, 4);
  if (payloadLength === 0) return 'bad-ip-header'; // jumbograms never carry a knock
  const end = 40 + payloadLength;
  if (packet.length < end) return 'truncated';
  let nextHeader = packet[6]!;
  let offset = 40;
  for (let count = 0; nextHeader !== PROTO_TCP; count++) {
    if (count >= MAX_IPV6_EXTENSION_HEADERS) return 'bad-ipv6-extension';
    if (nextHeader === IPV6_FRAGMENT) {
      if (offset + 8 > end) return 'truncated';
      return (uint16(packet, offset + 2) & 0xfff8) !== 0 ? 'non-first-fragment' : 'fragment';
    }
    if (nextHeader !== IPV6_HOP_BY_HOP && nextHeader !== IPV6_ROUTING && nextHeader !== IPV6_DESTINATION_OPTIONS) return 'not-tcp';
    // Hop-by-hop is only valid right after the fixed header (RFC 8200 4.1).
    if (nextHeader === IPV6_HOP_BY_HOP && count > 0) return 'bad-ipv6-extension';
    if (offset + 8 > end) return 'truncated';
    const length = (packet[offset + 1]! + 1) * 8;
    if (offset + length > end) return 'truncated';
    if (nextHeader === IPV6_ROUTING) {
      // Segments left > 0: this host is a waypoint, not the destination the knock names.
      if (packet[offset + 3] !== 0) return 'bad-ipv6-extension';
    } else if (!optionsWellFormed(packet, offset + 2, offset + length, 0, true)) {
      return 'bad-ipv6-extension';
    }
    nextHeader = packet[offset]!;
    offset += length;
  }
  return decodeTcp(packet, view, offset, end);
}

function decodeTcp(packet: Buffer, view: TcpSegmentView, offset: number, end: number): DecodeFailure | undefined {
  if (offset + 20 > end) return 'truncated';
  const headerLength = (packet[offset + 12]! >> 4) * 4;
  if (headerLength < 20 || offset + headerLength > end) return 'bad-tcp-header';
  view.tcpOffset = offset;
  view.end = end;
  view.sport = uint16(packet, offset);
  view.dport = uint16(packet, offset + 2);
  view.seq = uint32(packet, offset + 4);
  view.ack = uint32(packet, offset + 8);
  view.flags = packet[offset + 13]!;
  view.window = uint16(packet, offset + 14);
  view.payloadOffset = offset + headerLength;
  view.mss = 0;
  if (!optionsWellFormed(packet, offset + 20, offset + headerLength, 2)) return 'bad-tcp-options';
  if (headerLength > 20) view.mss = findMss(packet, offset + 20, offset + headerLength);
  return undefined;
}

/**
 * Type-length-value options (IPv4 and TCP: 0 ends the list, 1 is a one-byte no-op; IPv6
 * extension headers: 0 is Pad1, no end marker). Each option must fit in [start, end);
 * `mssKind`, when not 0, must carry exactly 4 bytes.
 */
function optionsWellFormed(packet: Buffer, start: number, end: number, mssKind: number, ipv6 = false): boolean {
  let i = start;
  while (i < end) {
    const kind = packet[i]!;
    if (kind === 0 && !ipv6) return true;
    if ((kind === 1 && !ipv6) || (kind === 0 && ipv6)) {
      i += 1;
      continue;
    }
    if (i + 1 >= end) return false;
    const length = ipv6 ? packet[i + 1]! + 2 : packet[i + 1]!;
    if (length < 2 || i + length > end) return false;
    if (mssKind !== 0 && kind === mssKind && length !== 4) return false;
    i += length;
  }
  return true;
}

function findMss(packet: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const kind = packet[i]!;
    if (kind === 0) return 0;
    if (kind === 1) {
      i += 1;
      continue;
    }
    if (kind === 2) return uint16(packet, i + 2);
    i += packet[i + 1]!;
  }
  return 0;
}

/*
 * Big-endian reads by hand: Buffer#readUInt16BE/32BE validate the offset on every call, and every
 * offset read here was checked against the packet's length first.
 */
function uint16(packet: Buffer, offset: number): number {
  return (packet[offset]! << 8) | packet[offset + 1]!;
}

function uint32(packet: Buffer, offset: number): number {
  return ((packet[offset]! << 24) | (packet[offset + 1]! << 16) | (packet[offset + 2]! << 8) | packet[offset + 3]!) >>> 0;
}
