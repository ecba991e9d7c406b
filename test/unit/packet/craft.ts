/** Builds IPv4/IPv6 TCP packets for tests, including shapes no real client sends. */
import { parseIpAddress } from '../../../src/packet/address.js';
import { ipv4HeaderChecksum, tcpChecksum } from '../../../src/packet/checksum.js';

export interface CraftOptions {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  /** Raw TCP option bytes (padded to 4 with zeros). */
  tcpOptions?: number[];
  payload?: Buffer | string;
  /** Raw IPv4 option bytes (padded to 4 with zeros). */
  ipOptions?: number[];
  /** IPv4 flags+fragment offset field. */
  fragmentField?: number;
  /** IPv6 extension headers, each [nextHeaderType, bytes...] (bytes exclude next-header). */
  ipv6Extensions?: Array<{ type: number; body: number[] }>;
}

function pad4(bytes: number[]): Buffer {
  const out = Buffer.alloc(Math.ceil(bytes.length / 4) * 4);
  Buffer.from(bytes).copy(out);
  return out;
}

export function craftTcp(o: CraftOptions): Buffer {
  const src = parseIpAddress(o.src)!;
  const dst = parseIpAddress(o.dst)!;
  const payload = typeof o.payload === 'string' ? Buffer.from(o.payload, 'latin1') : (o.payload ?? Buffer.alloc(0));
  const tcpOptions = pad4(o.tcpOptions ?? []);
  const tcp = Buffer.alloc(20 + tcpOptions.length + payload.length);
  tcp.writeUInt16BE(o.sport ?? 40000, 0);
  tcp.writeUInt16BE(o.dport ?? 80, 2);
  tcp.writeUInt32BE((o.seq ?? 1000) >>> 0, 4);
  tcp.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  tcp[12] = ((20 + tcpOptions.length) / 4) << 4;
  tcp[13] = o.flags ?? 0x02;
  tcp.writeUInt16BE(o.window ?? 64240, 14);
  tcpOptions.copy(tcp, 20);
  payload.copy(tcp, 20 + tcpOptions.length);

  if (src.length === 4) {
    const ipOptions = pad4(o.ipOptions ?? []);
    const headerLength = 20 + ipOptions.length;
    const packet = Buffer.alloc(headerLength + tcp.length);
    packet[0] = 0x40 | (headerLength / 4);
    packet.writeUInt16BE(packet.length, 2);
    packet.writeUInt16BE(o.fragmentField ?? 0x4000, 6);
    packet[8] = 64;
    packet[9] = 6;
    src.copy(packet, 12);
    dst.copy(packet, 16);
    ipOptions.copy(packet, 20);
    packet.writeUInt16BE(ipv4HeaderChecksum(packet, 0, headerLength), 10);
    tcp.copy(packet, headerLength);
    packet.writeUInt16BE(tcpChecksum(packet, 4, 12, 16, headerLength, packet.length), headerLength + 16);
    return packet;
  }
  const extensions = o.ipv6Extensions ?? [];
  const extBytes: Buffer[] = [];
  let firstNext = 6;
  for (let i = extensions.length - 1; i >= 0; i--) {
    const ext = extensions[i]!;
    const nextAfter = i === extensions.length - 1 ? 6 : extensions[i + 1]!.type;
    extBytes.unshift(Buffer.from([nextAfter, ...ext.body]));
    if (i === 0) firstNext = ext.type;
  }
  const ext = Buffer.concat(extBytes);
  const packet = Buffer.alloc(40 + ext.length + tcp.length);
  packet.writeUInt32BE(0x60000000, 0);
  packet.writeUInt16BE(ext.length + tcp.length, 4);
  packet[6] = firstNext;
  packet[7] = 64;
  src.copy(packet, 8);
  dst.copy(packet, 24);
  ext.copy(packet, 40);
  const l4 = 40 + ext.length;
  tcp.copy(packet, l4);
  packet.writeUInt16BE(tcpChecksum(packet, 6, 8, 24, l4, packet.length), l4 + 16);
  return packet;
}

/** A curl-like step-1 request. */
export function knockRequest(path: string, body: string, extraHeaders = ''): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n${extraHeaders}` +
    `Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n${body}`
  );
}
