/**
 * Internet checksum (RFC 1071) helpers. Sums are kept unfolded as plain numbers; they stay
 * exact far beyond any packet size (2^53 / 0xffff words).
 */

/** Adds the 16-bit big-endian words of packet[start, end) to `sum` (odd tail padded with 0). */
export function addWords(packet: Buffer, start: number, end: number, sum = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) sum += (packet[i]! << 8) | packet[i + 1]!;
  if (i < end) sum += packet[i]! << 8;
  return sum;
}

/** Folds a sum to 16 bits and complements it: the value to store in a checksum field. */
export function finishChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** IPv4 header checksum over `headerLength` bytes at `offset` (the checksum field must be 0). */
export function ipv4HeaderChecksum(packet: Buffer, offset: number, headerLength: number): number {
  return finishChecksum(addWords(packet, offset, offset + headerLength));
}

/**
 * Checksum of a TCP segment at packet[l4Offset, end) with the pseudo-header of its IP header
 * (addresses at srcOffset/dstOffset, 4 or 16 bytes each). The segment's checksum field must be 0
 * to compute it, or left as is to verify it (a correct segment then yields 0).
 */
export function tcpChecksum(packet: Buffer, family: 4 | 6, srcOffset: number, dstOffset: number, l4Offset: number, end: number): number {
  const addressLength = family === 4 ? 4 : 16;
  let sum = addWords(packet, srcOffset, srcOffset + addressLength);
  sum = addWords(packet, dstOffset, dstOffset + addressLength, sum);
  sum += 6 /* TCP */ + (end - l4Offset);
  return finishChecksum(addWords(packet, l4Offset, end, sum));
}
