"""
Crafts and injects TCP segments from a client namespace (stdlib only), for attack tests.

One JSON argument describes what to send; one JSON line on stdout says what happened.
  iface      interface the SYN-ACK arrives on (read through AF_PACKET)
  src, dst   addresses (IPv4 or IPv6; src need not be configured on the host: spoofing)
  dport      destination port; sport: source port (random when absent)
  handshake  true: send a SYN, wait for the SYN-ACK and acknowledge its sequence (the cookie);
             false: send the data with a random sequence and acknowledgement (no handshake)
  segments   payloads (hex), one TCP segment each, in sequence order
  fragment   IPv4: split every data datagram into IP fragments of this many payload bytes;
             IPv6: the same with Fragment headers
  extension  IPv6 only: "hop-by-hop", "destination" or "atomic-fragment" header before TCP
  replay     {"pcap": path, "src": address}: re-send the first TCP data segment to dport found
             in the capture, with its source rewritten (no handshake), and nothing else
"""
import json
import os
import random
import select
import socket
import struct
import sys
import time

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_TCP, PROTO_HOP, PROTO_FRAG, PROTO_DEST = 6, 0, 44, 60


def family_of(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload=b"", mss=None):
    options = struct.pack("!BBH", 2, 4, mss) if mss else b""
    header_length = 20 + len(options)
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (header_length // 4) << 4, flags, 64240, 0, 0) + options
    segment = header + payload
    family = family_of(src)
    s, d = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    if family == socket.AF_INET:
        pseudo = s + d + struct.pack("!BBH", 0, PROTO_TCP, len(segment))
    else:
        pseudo = s + d + struct.pack("!I3xB", len(segment), PROTO_TCP)
    return segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]


def ipv4_packet(src, dst, payload, ident, offset=0, more=False, dont_fragment=True):
    flags = (0x2000 if more else 0) | (0x4000 if dont_fragment and not more and offset == 0 else 0)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags | (offset // 8), 64, PROTO_TCP, 0,
                         socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6_packet(src, dst, next_header, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), next_header, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + payload


def ipv6_options_header(next_header):
    """Hop-by-hop or destination options header: 8 bytes, one PadN option."""
    return struct.pack("!BB", next_header, 0) + bytes([1, 4, 0, 0, 0, 0])


def fragment_header(next_header, offset, more, ident):
    return struct.pack("!BBHI", next_header, 0, offset | (1 if more else 0), ident)


def datagrams(src, dst, segment, fragment=0, extension=None):
    """The IP datagram(s) carrying one TCP segment, fragmented or with an extension header as asked."""
    ident = random.randrange(1, 0xFFFF)
    chunks = [(0, segment, False)]
    if fragment:
        chunks = [(o, segment[o:o + fragment], o + fragment < len(segment)) for o in range(0, len(segment), fragment)]
    if family_of(src) == socket.AF_INET:
        return [ipv4_packet(src, dst, chunk, ident, offset, more, dont_fragment=not fragment) for offset, chunk, more in chunks]
    packets = []
    for offset, chunk, more in chunks:
        if fragment:
            packets.append(ipv6_packet(src, dst, PROTO_FRAG, fragment_header(PROTO_TCP, offset, more, ident) + chunk))
        elif extension == "hop-by-hop":
            packets.append(ipv6_packet(src, dst, PROTO_HOP, ipv6_options_header(PROTO_TCP) + chunk))
        elif extension == "destination":
            packets.append(ipv6_packet(src, dst, PROTO_DEST, ipv6_options_header(PROTO_TCP) + chunk))
        elif extension == "atomic-fragment":
            packets.append(ipv6_packet(src, dst, PROTO_FRAG, fragment_header(PROTO_TCP, 0, False, ident) + chunk))
        else:
            packets.append(ipv6_packet(src, dst, PROTO_TCP, chunk))
    return packets


class Wire:
    def __init__(self, iface):
        self.tap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
        self.tap.bind((iface, 0))
        self.raw = {
            socket.AF_INET: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
            socket.AF_INET6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW),
        }

    def send(self, packet):
        if packet[0] >> 4 == 4:
            self.raw[socket.AF_INET].sendto(packet, (socket.inet_ntop(socket.AF_INET, packet[16:20]), 0))
        else:
            self.raw[socket.AF_INET6].sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))

    def syn_ack(self, src, dst, sport, dport, timeout):
        """The SYN-ACK's sequence number, or None when none arrives in time."""
        deadline = time.monotonic() + timeout
        family = family_of(src)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.tap], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                break
            packet, address = self.tap.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            tcp = tcp_of(packet, family, dst, src)
            if tcp is None:
                continue
            psport, pdport, seq, _, _, flags = struct.unpack("!HHIIBB", tcp[:14])
            if psport == dport and pdport == sport and flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
                return seq
        return None


def tcp_of(packet, family, src, dst):
    """The TCP header of an unfragmented packet from src to dst (no extension headers), or None."""
    if family == socket.AF_INET and packet and packet[0] >> 4 == 4 and packet[9] == PROTO_TCP:
        if packet[12:16] == socket.inet_pton(family, src) and packet[16:20] == socket.inet_pton(family, dst):
            return packet[(packet[0] & 15) * 4:]
    if family == socket.AF_INET6 and packet and packet[0] >> 4 == 6 and packet[6] == PROTO_TCP:
        if packet[8:24] == socket.inet_pton(family, src) and packet[24:40] == socket.inet_pton(family, dst):
            return packet[40:]
    return None


def first_data_segment(pcap_path, dport):
    """IP packet of the first TCP segment with payload to dport in an Ethernet pcap file."""
    with open(pcap_path, "rb") as f:
        data = f.read()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    offset = 24
    while offset + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
        if ethertype == 0x0800 and ip[9] == PROTO_TCP:
            header_end, end = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
        elif ethertype == 0x86DD and ip[6] == PROTO_TCP:
            header_end, end = 40, 40 + struct.unpack("!H", ip[4:6])[0]
        else:
            continue
        tcp = ip[header_end:end]
        if struct.unpack("!H", tcp[2:4])[0] == dport and len(tcp) > (tcp[12] >> 4) * 4:
            return ip[:end], header_end
    raise SystemExit("no TCP data segment to port %d in %s" % (dport, pcap_path))


def replay(wire, spec):
    packet, header_end = first_data_segment(spec["replay"]["pcap"], spec["dport"])
    v4 = packet[0] >> 4 == 4
    family = socket.AF_INET if v4 else socket.AF_INET6
    source_at, destination_at, length = (12, 16, 4) if v4 else (8, 24, 16)
    packet = bytearray(packet)
    packet[source_at:source_at + length] = socket.inet_pton(family, spec["replay"]["src"])
    if v4:
        packet[10:12] = b"\0\0"
        packet[10:12] = struct.pack("!H", checksum(bytes(packet[:header_end])))
    # Same segment, new source: only the checksum changes, for the new pseudo-header.
    segment = bytearray(packet[header_end:])
    segment[16:18] = b"\0\0"
    addresses = bytes(packet[source_at:source_at + length] + packet[destination_at:destination_at + length])
    pseudo = addresses + (struct.pack("!BBH", 0, PROTO_TCP, len(segment)) if v4 else struct.pack("!I3xB", len(segment), PROTO_TCP))
    segment[16:18] = struct.pack("!H", checksum(pseudo + bytes(segment)))
    wire.send(bytes(packet[:header_end]) + bytes(segment))
    sport, _, seq = struct.unpack("!HHI", segment[:8])
    return {"sport": sport, "seq": seq, "sent": 1}


def knock(wire, spec):
    src, dst, dport = spec["src"], spec["dst"], spec["dport"]
    sport = spec.get("sport") or random.randrange(20000, 60000)
    isn = random.randrange(0, 2**32)
    if spec.get("handshake"):
        mss = 1460 if family_of(src) == socket.AF_INET else 1440
        wire.send(datagrams(src, dst, tcp_segment(src, dst, sport, dport, isn, 0, TCP_SYN, mss=mss))[0])
        cookie = wire.syn_ack(src, dst, sport, dport, spec.get("timeout", 2.0))
        if cookie is None:
            return {"sport": sport, "synAck": False, "sent": 0}
        ack = (cookie + 1) % 2**32
    else:
        cookie, ack = None, random.randrange(0, 2**32)
    seq = (isn + 1) % 2**32
    sent = 0
    for payload_hex in spec.get("segments", []):
        payload = bytes.fromhex(payload_hex)
        segment = tcp_segment(src, dst, sport, dport, seq, ack, TCP_PSH | TCP_ACK, payload)
        for datagram in datagrams(src, dst, segment, spec.get("fragment", 0), spec.get("extension")):
            wire.send(datagram)
            sent += 1
        seq = (seq + len(payload)) % 2**32
    return {"sport": sport, "synAck": cookie is not None, "sent": sent}


def main():
    spec = json.loads(sys.argv[1])
    wire = Wire(spec["iface"])
    result = replay(wire, spec) if "replay" in spec else knock(wire, spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
