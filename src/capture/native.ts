/**
 * The native addon (`native/`, built by node-gyp into build/Release): thin packet I/O.
 * This module loads it, types its surface, and turns its errors into operator errors.
 */
import { createRequire } from 'node:module';
import { KnockPortError } from '../errors.js';

export interface NativeNfqueueOptions {
  copyRange?: number;
  maxLen?: number;
  receiveBuffer?: number;
  maxBatch?: number;
}

export interface NativeNflogOptions {
  copyRange?: number;
  /** Kernel flush timeout in 1/100 s. */
  flushTimeout?: number;
  kernelBuffer?: number;
  receiveBuffer?: number;
  maxBatch?: number;
}

/** `(data, meta, count)`: payloads packed in `data`, PACKET_FIELDS Uint32 per packet in `meta`. */
export type NativeBatchCallback = (data: Buffer, meta: Uint32Array, count: number) => void;

export interface NativeNfqueueStats {
  received: number;
  batches: number;
  enobufs: number;
  truncated: number;
  receiveErrors: number;
  verdicts: number;
  verdictMessages: number;
  batchVerdicts: number;
  kernelErrors: number;
  lastKernelErrno: number;
  outstanding: number;
  portId: number;
  /** Times receiving resumed after the socket overflowed (see enobufs). */
  pollRestarts: number;
}

export interface NativeNflogStats {
  received: number;
  batches: number;
  enobufs: number;
  truncated: number;
  receiveErrors: number;
  /** Times receiving resumed after the socket overflowed (see enobufs). */
  pollRestarts: number;
}

export interface NativeNfqueue {
  verdict(ids: Uint32Array, verdicts: Uint8Array | number, count?: number): void;
  flush(): void;
  stats(): NativeNfqueueStats;
  close(): void;
}

export interface NativeNflog {
  stats(): NativeNflogStats;
  close(): void;
}

/** What happened to the packets staged since the previous flush. */
export interface RawFlushOutcome {
  sent: number;
  /** Lost because the socket or device queue was full. */
  bufferFull: number;
  /** Refused for another reason (no route, a firewall rule); `errno`/`code` are the last one's. */
  failed: number;
  errno: number;
  /** Like 'EHOSTUNREACH'; '' when nothing failed. */
  code: string;
}

export interface NativeRawSender {
  send(packet: Uint8Array): boolean;
  stage(packet: Uint8Array): void;
  flush(): RawFlushOutcome;
  close(): void;
}

export interface NativeNftResult {
  status: number;
  output: string;
  error: string;
}

export interface NativeNftContext {
  run(script: string, options?: { json?: boolean; dryRun?: boolean }): NativeNftResult;
  close(): void;
}

export interface NativeAddon {
  abiVersion: number;
  NfQueue: new (queue: number, options: NativeNfqueueOptions, onBatch: NativeBatchCallback) => NativeNfqueue;
  NfLog: new (group: number, options: NativeNflogOptions, onBatch: NativeBatchCallback) => NativeNflog;
  RawSender: new (options: { mark?: number; ipv4?: boolean; ipv6?: boolean }) => NativeRawSender;
  NftContext: new () => NativeNftContext;
  /** A TCP socket fd whose first write goes out in the SYN (client Fast Open, no cookie). Missing from addons built from older sources. */
  fastOpenSocket?: (family: 4 | 6) => number;
}

const ADDON_PATH = '../../build/Release/knockport_native.node';
const ABI_VERSION = 3;

export class NativeAddonMissingError extends KnockPortError {}

/** A failed socket operation in the addon, with the errno the kernel gave. */
export class CaptureError extends KnockPortError {
  constructor(
    message: string,
    readonly errno?: number,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

let cached: NativeAddon | undefined;

/** Loads the addon once; throws NativeAddonMissingError with the fix when it is absent or stale. */
export function loadNativeAddon(): NativeAddon {
  if (cached) return cached;
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (e) {
    throw new NativeAddonMissingError(
      'the native addon (build/Release/knockport_native.node) is missing or cannot load: ' +
        'install libnetfilter-queue-dev libnetfilter-log-dev libnftables-dev libmnl-dev and a C++ compiler, ' +
        `then run \`npx node-gyp rebuild\` in the package directory (${(e as Error).message.split('\n')[0]})`,
      { cause: e },
    );
  }
  if (addon.abiVersion !== ABI_VERSION) {
    throw new NativeAddonMissingError(
      `the native addon is out of date (version ${addon.abiVersion}, need ${ABI_VERSION}): run \`npx node-gyp rebuild\``,
    );
  }
  cached = addon;
  return addon;
}

/** True when the addon loads; for `auto` choices that fall back to something else. */
export function nativeAddonAvailable(): boolean {
  try {
    loadNativeAddon();
    return true;
  } catch {
    return false;
  }
}

/** Runs an addon call, rethrowing its errno-carrying errors as CaptureError. */
export function callNative<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof KnockPortError) throw e;
    const err = e as Error & { errno?: number; code?: string };
    throw new CaptureError(err.message, err.errno, err.code, { cause: e });
  }
}

/** Uint32 fields per packet in a batch's `meta` array (native/common.h, PacketBatch). */
export const PACKET_FIELDS = 10;
const enum Field {
  Id = 0,
  Offset,
  Length,
  WireLength,
  InIfindex,
  OutIfindex,
  TsSec,
  TsUsec,
  HwProtocol,
  Mark,
}

/** One received packet, as an object (allocates: use the indexed accessors on hot paths). */
export interface CapturedPacket {
  /** NFQUEUE packet id (the verdict key); NFLOG sequence number. */
  id: number;
  /** Bytes from the IP header on, up to the copy range. */
  payload: Buffer;
  /** Length on the wire, before the copy range cut it. */
  wireLength: number;
  inIfindex: number;
  outIfindex: number;
  /** Kernel timestamp in ms since the epoch, or undefined when the kernel attached none. */
  timestampMs: number | undefined;
  /** Ethertype: 0x0800 IPv4, 0x86dd IPv6. */
  hwProtocol: number;
  mark: number;
}

/**
 * The packets of one wake-up, as the addon packs them: one Buffer of payloads and one
 * Uint32Array of metadata. Accessors read in place, so a batch costs two allocations.
 */
export class PacketBatch {
  constructor(
    readonly data: Buffer,
    readonly meta: Uint32Array,
    readonly count: number,
  ) {}

  private field(index: number, field: Field): number {
    if (index < 0 || index >= this.count) throw new RangeError(`packet ${index} is not in this batch of ${this.count}`);
    return this.meta[index * PACKET_FIELDS + field]!;
  }

  id(index: number): number {
    return this.field(index, Field.Id);
  }

  /** The packet's bytes (a view into the batch buffer, not a copy). */
  payload(index: number): Buffer {
    const offset = this.field(index, Field.Offset);
    return this.data.subarray(offset, offset + this.field(index, Field.Length));
  }

  /** Every packet id in the batch, in arrival order, ready for a verdict call. */
  ids(): Uint32Array {
    const ids = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) ids[i] = this.meta[i * PACKET_FIELDS + Field.Id]!;
    return ids;
  }

  packet(index: number): CapturedPacket {
    const tsSec = this.field(index, Field.TsSec);
    return {
      id: this.id(index),
      payload: this.payload(index),
      wireLength: this.field(index, Field.WireLength),
      inIfindex: this.field(index, Field.InIfindex),
      outIfindex: this.field(index, Field.OutIfindex),
      timestampMs: tsSec === 0 ? undefined : tsSec * 1000 + this.field(index, Field.TsUsec) / 1000,
      hwProtocol: this.field(index, Field.HwProtocol),
      mark: this.field(index, Field.Mark),
    };
  }

  *[Symbol.iterator](): IterableIterator<CapturedPacket> {
    for (let i = 0; i < this.count; i++) yield this.packet(i);
  }
}
