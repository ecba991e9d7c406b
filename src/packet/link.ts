/**
 * From a captured link-layer frame to its IP packet, for the link types libpcap gives on
 * Linux and that capture files carry. Zero-copy: returns a view into the frame.
 */

export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = [0x8100, 0x88a8, 0x9100];

/** The IP packet inside `frame`, or undefined when the frame carries something else. */
export function ipPacketOf(linkType: number, frame: Buffer): Buffer | undefined {
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      return ethernetPayload(frame);
    case LINKTYPE_RAW:
    case 12: // DLT_RAW as some systems number it in pcap headers (12 on most, 14 on OpenBSD)
    case 14:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      return frame;
    case LINKTYPE_LINUX_SLL:
      return frame.length >= 16 ? byEthertype(frame.readUInt16BE(14), frame, 16) : undefined;
    case LINKTYPE_LINUX_SLL2:
      return frame.length >= 20 ? byEthertype(frame.readUInt16BE(0), frame, 20) : undefined;
    case LINKTYPE_NULL:
      return loopbackPayload(frame);
    default:
      return undefined;
  }
}

function ethernetPayload(frame: Buffer): Buffer | undefined {
  let offset = 12;
  while (frame.length >= offset + 2) {
    const type = frame.readUInt16BE(offset);
    if (!ETHERTYPE_VLAN.includes(type)) return byEthertype(type, frame, offset + 2);
    offset += 4; // 802.1Q / 802.1ad tag
  }
  return undefined;
}

function byEthertype(type: number, frame: Buffer, offset: number): Buffer | undefined {
  return type === ETHERTYPE_IPV4 || type === ETHERTYPE_IPV6 ? frame.subarray(offset) : undefined;
}

/** BSD loopback: a 4-byte address family in the capturing host's byte order. */
function loopbackPayload(frame: Buffer): Buffer | undefined {
  if (frame.length < 4) return undefined;
  const family = frame.readUInt32LE(0) > 0xffff ? frame.readUInt32BE(0) : frame.readUInt32LE(0);
  return family === 2 || family === 24 || family === 28 || family === 30 ? frame.subarray(4) : undefined;
}
