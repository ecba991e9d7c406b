/**
 * Whole IP packets the daemon sends from its raw socket in answer to a client's segment:
 * a SYN-ACK carrying the cookie, and an optional RST. Addresses and ports are the
 * received segment's, swapped; checksums are computed here (the raw socket sends bytes as is).
 */
import { copyAddress } from './address.js';
import { ipv4HeaderChecksum, tcpChecksum } from './checksum.js';
import { TCP_ACK, TCP_RST, TCP_SYN, type TcpSegmentView } from './decode.js';

/** Receive window of our SYN-ACK: room for a whole request in one segment. */
export const SYN_ACK_WINDOW = 64240;
/** MSS we advertise: what fits a 1500-byte link without fragmentation. */
export const ADVERTISED_MSS_V4 = 1460;
export const ADVERTISED_MSS_V6 = 1440;
const HOP_LIMIT = 64;

interface ReplyFields {
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss?: number;
}

/** SYN-ACK answering the SYN in `syn`, with `isn` (the cookie) as our sequence number. */
export function buildSynAck(syn: TcpSegmentView, isn: number): Buffer {
  return buildReply(syn, {
    seq: isn,
    ack: (syn.seq + 1) >>> 0,
    flags: TCP_SYN | TCP_ACK,
    window: SYN_ACK_WINDOW,
    mss: syn.family === 4 ? ADVERTISED_MSS_V4 : ADVERTISED_MSS_V6,
  });
}

/**
 * RST ending the connection a segment belongs to. For an ACK-bearing segment, the RST's
 * sequence is that ACK (RFC 9293 3.10.7.1), which is exactly what the client expects next.
 */
export function buildRst(segment: TcpSegmentView): Buffer {
  const consumed = segment.payloadLength + ((segment.flags & TCP_SYN) !== 0 ? 1 : 0);
  const hasAck = (segment.flags & TCP_ACK) !== 0;
  return buildReply(segment, {
    seq: hasAck ? segment.ack : 0,
    ack: (segment.seq + consumed) >>> 0,
    flags: TCP_RST | TCP_ACK,
    window: 0,
  });
}

function buildReply(to: TcpSegmentView, fields: ReplyFields): Buffer {
  const ipHeaderLength = to.family === 4 ? 20 : 40;
  const tcpLength = fields.mss === undefined ? 20 : 24;
  const packet = Buffer.allocUnsafe(ipHeaderLength + tcpLength);
  const received = to.packet;
  const addressLength = to.addressLength;
  let srcOffset: number;
  let dstOffset: number;
  if (to.family === 4) {
    packet[0] = 0x45;
    packet[1] = 0;
    packet.writeUInt16BE(ipHeaderLength + tcpLength, 2);
    packet.writeUInt32BE(0x00004000, 4); // id 0, don't fragment
    packet[8] = HOP_LIMIT;
    packet[9] = 6;
    packet.writeUInt16BE(0, 10);
    srcOffset = 12;
    dstOffset = 16;
  } else {
    packet.writeUInt32BE(0x60000000, 0);
    packet.writeUInt16BE(tcpLength, 4);
    packet[6] = 6;
    packet[7] = HOP_LIMIT;
    srcOffset = 8;
    dstOffset = 24;
  }
  copyAddress(received, to.dstOffset, packet, srcOffset, addressLength);
  copyAddress(received, to.srcOffset, packet, dstOffset, addressLength);
  if (to.family === 4) packet.writeUInt16BE(ipv4HeaderChecksum(packet, 0, 20), 10);

  const t = ipHeaderLength;
  packet.writeUInt16BE(to.dport, t);
  packet.writeUInt16BE(to.sport, t + 2);
  packet.writeUInt32BE(fields.seq >>> 0, t + 4);
  packet.writeUInt32BE(fields.ack >>> 0, t + 8);
  packet[t + 12] = (tcpLength / 4) << 4;
  packet[t + 13] = fields.flags;
  packet.writeUInt16BE(fields.window, t + 14);
  packet.writeUInt32BE(0, t + 16); // checksum, urgent pointer
  if (fields.mss !== undefined) {
    packet[t + 20] = 2;
    packet[t + 21] = 4;
    packet.writeUInt16BE(fields.mss, t + 22);
  }
  packet.writeUInt16BE(tcpChecksum(packet, to.family, srcOffset, dstOffset, t, packet.length), t + 16);
  return packet;
}
