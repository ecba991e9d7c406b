/** Writes pcap and pcapng files in memory, to test the reader on every variant it accepts. */
export interface Frame {
  timeMs: number;
  frame: Buffer;
}

/** 16- and 32-bit integers as bytes in the file's byte order. */
function integerWriters(bigEndian: boolean): { u16: (value: number) => Buffer; u32: (value: number) => Buffer } {
  const write = (size: 2 | 4, value: number) => {
    const b = Buffer.alloc(size);
    if (size === 4) b[bigEndian ? 'writeUInt32BE' : 'writeUInt32LE'](value >>> 0);
    else b[bigEndian ? 'writeUInt16BE' : 'writeUInt16LE'](value);
    return b;
  };
  return { u16: (value) => write(2, value), u32: (value) => write(4, value) };
}

export function writePcap(frames: Frame[], linkType: number, options: { bigEndian?: boolean; nano?: boolean } = {}): Buffer {
  const { u16, u32 } = integerWriters(options.bigEndian === true);
  const parts: Buffer[] = [u32(options.nano ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(65535), u32(linkType)];
  for (const { timeMs, frame } of frames) {
    const seconds = Math.floor(timeMs / 1000);
    const fraction = Math.round((timeMs - seconds * 1000) * (options.nano ? 1e6 : 1e3));
    parts.push(u32(seconds), u32(fraction), u32(frame.length), u32(frame.length), frame);
  }
  return Buffer.concat(parts);
}

/** pcapng with one section and one interface; `tsresol` is the if_tsresol byte (6 = µs, 9 = ns). */
export function writePcapng(frames: Frame[], linkType: number, options: { bigEndian?: boolean; tsresol?: number } = {}): Buffer {
  const { u16, u32 } = integerWriters(options.bigEndian === true);
  const block = (type: number, body: Buffer) => {
    const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
    const length = padded.length + 12;
    return Buffer.concat([u32(type), u32(length), padded, u32(length)]);
  };
  const tsresol = options.tsresol ?? 6;
  const parts: Buffer[] = [
    block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d), u16(1), u16(0), Buffer.alloc(8, 0xff)])),
    block(1, Buffer.concat([u16(linkType), u16(0), u32(65535), u16(9), u16(1), Buffer.from([tsresol, 0, 0, 0]), u16(0), u16(0)])),
  ];
  for (const { timeMs, frame } of frames) {
    const ticks = BigInt(Math.round(timeMs * 10 ** (tsresol - 3)));
    parts.push(block(6, Buffer.concat([u32(0), u32(Number(ticks >> 32n)), u32(Number(ticks & 0xffffffffn)), u32(frame.length), u32(frame.length), frame])));
  }
  return Buffer.concat(parts);
}
