/**
 * Reading pcap and pcapng capture files (either byte order, any timestamp resolution) into
 * frames with their link type and time. Whole-file, synchronous: replay is an offline tool.
 */
import { readFileSync } from 'node:fs';
import { KnockPortError } from '../shared/errors.js';

export interface CapturedFrame {
  /** Milliseconds since the epoch. */
  timeMs: number;
  linkType: number;
  frame: Buffer;
}

export class CaptureFileError extends KnockPortError {}

const PCAP_MICRO = 0xa1b2c3d4;
const PCAP_NANO = 0xa1b23c4d;
const PCAPNG_SECTION_HEADER = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_INTERFACE = 1;
const PCAPNG_OBSOLETE_PACKET = 2;
const PCAPNG_SIMPLE_PACKET = 3;
const PCAPNG_ENHANCED_PACKET = 6;
const PCAPNG_OPTION_TSRESOL = 9;

export function readCaptureFile(path: string): CapturedFrame[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new CaptureFileError(`cannot read capture file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return [...parseCapture(bytes, path)];
}

/** Frames of a pcap or pcapng file held in memory; `name` is used in error messages. */
export function* parseCapture(bytes: Buffer, name = 'capture'): Generator<CapturedFrame> {
  if (bytes.length < 4) throw new CaptureFileError(`${name}: too short to be a pcap or pcapng file`);
  const magicBE = bytes.readUInt32BE(0);
  if (magicBE === PCAPNG_SECTION_HEADER) {
    yield* parsePcapng(bytes, name);
    return;
  }
  for (const littleEndian of [false, true]) {
    const magic = littleEndian ? bytes.readUInt32LE(0) : magicBE;
    if (magic === PCAP_MICRO || magic === PCAP_NANO) {
      yield* parsePcap(bytes, name, littleEndian, magic === PCAP_NANO ? 1e-6 : 1e-3);
      return;
    }
  }
  throw new CaptureFileError(`${name}: not a pcap or pcapng file (unknown magic 0x${magicBE.toString(16)})`);
}

function* parsePcap(bytes: Buffer, name: string, le: boolean, fractionToMs: number): Generator<CapturedFrame> {
  const u32 = (offset: number) => (le ? bytes.readUInt32LE(offset) : bytes.readUInt32BE(offset));
  if (bytes.length < 24) throw new CaptureFileError(`${name}: truncated pcap header`);
  const linkType = u32(20) & 0xffff; // upper bits may carry the FCS length
  for (let offset = 24; offset < bytes.length;) {
    if (offset + 16 > bytes.length) throw new CaptureFileError(`${name}: truncated record header at byte ${offset}`);
    const capturedLength = u32(offset + 8);
    const start = offset + 16;
    if (start + capturedLength > bytes.length) throw new CaptureFileError(`${name}: truncated record at byte ${offset}`);
    yield { timeMs: u32(offset) * 1000 + u32(offset + 4) * fractionToMs, linkType, frame: bytes.subarray(start, start + capturedLength) };
    offset = start + capturedLength;
  }
}

interface PcapngInterface {
  linkType: number;
  /** Milliseconds per timestamp unit. */
  unitMs: number;
}

function* parsePcapng(bytes: Buffer, name: string): Generator<CapturedFrame> {
  let le = true;
  let interfaces: PcapngInterface[] = [];
  for (let offset = 0; offset < bytes.length;) {
    if (offset + 12 > bytes.length) throw new CaptureFileError(`${name}: truncated block at byte ${offset}`);
    if (bytes.readUInt32BE(offset) === PCAPNG_SECTION_HEADER) {
      const order = bytes.readUInt32BE(offset + 8);
      if (order !== PCAPNG_BYTE_ORDER_MAGIC && bytes.readUInt32LE(offset + 8) !== PCAPNG_BYTE_ORDER_MAGIC)
        throw new CaptureFileError(`${name}: bad pcapng byte-order magic at byte ${offset}`);
      le = order !== PCAPNG_BYTE_ORDER_MAGIC;
      interfaces = [];
    }
    const u32 = (at: number) => (le ? bytes.readUInt32LE(at) : bytes.readUInt32BE(at));
    const u16 = (at: number) => (le ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at));
    const type = u32(offset);
    const length = u32(offset + 4);
    if (length < 12 || length % 4 !== 0 || offset + length > bytes.length) throw new CaptureFileError(`${name}: bad block length ${length} at byte ${offset}`);
    const body = offset + 8;
    const bodyEnd = offset + length - 4;
    if (type === PCAPNG_INTERFACE) {
      interfaces.push({ linkType: u16(body), unitMs: timestampUnitMs(bytes, body + 8, bodyEnd, le) });
    } else if (type === PCAPNG_ENHANCED_PACKET || type === PCAPNG_OBSOLETE_PACKET) {
      const enhanced = type === PCAPNG_ENHANCED_PACKET;
      const iface = interfaces[enhanced ? u32(body) : u16(body)];
      if (!iface) throw new CaptureFileError(`${name}: packet for an undeclared interface at byte ${offset}`);
      const capturedLength = u32(body + 12);
      if (body + 20 + capturedLength > bodyEnd) throw new CaptureFileError(`${name}: truncated packet block at byte ${offset}`);
      const timestamp = u32(body + 4) * 2 ** 32 + u32(body + 8);
      yield { timeMs: timestamp * iface.unitMs, linkType: iface.linkType, frame: bytes.subarray(body + 20, body + 20 + capturedLength) };
    } else if (type === PCAPNG_SIMPLE_PACKET) {
      const iface = interfaces[0];
      if (!iface) throw new CaptureFileError(`${name}: packet before any interface at byte ${offset}`);
      const capturedLength = Math.min(u32(body), bodyEnd - body - 4);
      yield { timeMs: 0, linkType: iface.linkType, frame: bytes.subarray(body + 4, body + 4 + capturedLength) };
    }
    offset += length;
  }
}

/** if_tsresol: 10^-n seconds, or 2^-n when the top bit is set; microseconds by default. */
function timestampUnitMs(bytes: Buffer, start: number, end: number, le: boolean): number {
  for (let at = start; at + 4 <= end;) {
    const code = le ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at);
    const length = le ? bytes.readUInt16LE(at + 2) : bytes.readUInt16BE(at + 2);
    if (code === 0) break;
    if (code === PCAPNG_OPTION_TSRESOL && length >= 1) {
      const value = bytes[at + 4]!;
      return (value & 0x80 ? 2 ** -(value & 0x7f) : 10 ** -value) * 1000;
    }
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return 1e-3;
}
