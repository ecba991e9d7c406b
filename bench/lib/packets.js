/**
 * Step-1 packets for the benchmarks, built byte by byte: SYNs, junk data segments and
 * knock requests whose ACK carries a valid cookie (computed with the daemon's own secret,
 * exactly as a client that completed the handshake would send them).
 */
import { ipv4HeaderChecksum, tcpChecksum } from '../../dist/packet/checksum.js';
import { TcpSegmentView, decodeTcpPacket } from '../../dist/packet/decode.js';

export const TCP_SYN = 0x02;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

const ipv4Bytes = (text) => Buffer.from(text.split('.').map(Number));

/** An IPv4 TCP packet (no options) with correct checksums. */
export function ipv4Tcp({ src, dst, sport, dport, seq, ack = 0, flags, payload = Buffer.alloc(0) }) {
  const packet = Buffer.alloc(40 + payload.length);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(0x4000, 6);
  packet[8] = 64;
  packet[9] = 6;
  ipv4Bytes(src).copy(packet, 12);
  ipv4Bytes(dst).copy(packet, 16);
  packet.writeUInt16BE(ipv4HeaderChecksum(packet, 0, 20), 10);
  packet.writeUInt16BE(sport, 20);
  packet.writeUInt16BE(dport, 22);
  packet.writeUInt32BE(seq >>> 0, 24);
  packet.writeUInt32BE(ack >>> 0, 28);
  packet[32] = 5 << 4;
  packet[33] = flags;
  packet.writeUInt16BE(64240, 34);
  payload.copy(packet, 40);
  packet.writeUInt16BE(tcpChecksum(packet, 4, 12, 16, 20, packet.length), 36);
  return packet;
}

/** The request curl sends for `curl -d BODY http://HOST/PATH`, as one segment. */
export function knockRequest(host, path, body) {
  return Buffer.from(
    `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n${body}`,
    'latin1',
  );
}

/**
 * The data segment a client sends after our cookie SYN-ACK: seq = ISN + 1, ack = cookie + 1.
 * `cookie` is a CookieSource (the daemon's KeyedCookieSource with its secret).
 */
export function cookieDataSegment(cookie, nowMs, { src, dst, sport, dport, isn, payload }) {
  const view = new TcpSegmentView();
  const syn = ipv4Tcp({ src, dst, sport, dport, seq: isn, flags: TCP_SYN });
  decodeTcpPacket(syn, view);
  const ours = cookie.issue(view, nowMs);
  return ipv4Tcp({ src, dst, sport, dport, seq: isn + 1, ack: ours + 1, flags: TCP_ACK | TCP_PSH, payload });
}

/** `count` distinct addresses in 10.99.128.0/17, as used by the extra clients. */
export function extraAddress(i) {
  const n = 128 * 256 + 1 + (i % 32_766);
  return `10.99.${n >> 8}.${n & 0xff}`;
}
