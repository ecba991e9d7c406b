/**
 * The native addon (`native/`, built by node-gyp into build/Release): thin packet I/O. This
 * module loads it, types its surface, and turns its errors into operator errors.
 */
import { createRequire } from 'node:module';
import { KnockPortError } from '../shared/errors.js';

interface NativeNfqueueOptions {
  copyRange?: number;
  maxLen?: number;
  receiveBuffer?: number;
  maxBatch?: number;
}

interface NativeNflogOptions {
  copyRange?: number;
  receiveBuffer?: number;
}

/** `(data, meta, count)`: payloads packed in `data`, PACKET_FIELDS Uint32 per packet in `meta`. */
type NativeBatchCallback = (data: Buffer, meta: Uint32Array, count: number) => void;

export interface NativeNfqueueStats {
  received: number;
  batches: number;
  enobufs: number;
  verdicts: number;
  verdictMessages: number;
  batchVerdicts: number;
  /** Verdict messages the kernel refused. */
  kernelErrors: number;
  /** Times receiving resumed after the socket overflowed (see enobufs). */
  pollRestarts: number;
}

export interface NativeNflogStats {
  received: number;
  batches: number;
  enobufs: number;
  /** Times receiving resumed after the socket overflowed (see enobufs). */
  pollRestarts: number;
}

export interface NativeNfqueue {
  /** Drops the first `count` packets of `ids` (the only verdict the addon gives). */
  drop(ids: Uint32Array, count?: number): void;
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
  stage(packet: Uint8Array): void;
  flush(): RawFlushOutcome;
  close(): void;
}

interface NativeNftResult {
  status: number;
  output: string;
  error: string;
}

export interface NativeNftContext {
  run(script: string, options?: { json?: boolean; dryRun?: boolean }): NativeNftResult;
  /**
   * Sends the table flags owner and persist through this context's netlink socket: 0 when the
   * table is now this context's (created, adopted from a closed owner, or already its own), else
   * the kernel's errno (EPERM: another open socket owns it; EOPNOTSUPP: it exists without
   * persist). Throws when this libnftables keeps its socket elsewhere. Missing from addons built
   * from older sources.
   */
  ownTable?(family: 'inet' | 'ip' | 'ip6', name: string): number;
  close(): void;
}

interface NativeNftContextClass {
  new (): NativeNftContext;
  /** 0 when the kernel accepts a table with the flags owner and persist (6.9+), else its errno. Missing from older addons. */
  probeTableOwnership?: () => number;
}

/** Counters of the step-1 XDP program, summed over CPUs, in the order of native/xdp/step1.h. */
export type NativeXdpCounters = number[];

export interface NativeXdp {
  /** Throws with the kernel's errno: EBUSY (another XDP program is there), EOPNOTSUPP/EINVAL (no native XDP). */
  attach(ifindex: number, mode: 'native' | 'generic'): void;
  /** True when this program was attached there. */
  detach(ifindex: number): boolean;
  attached(): number[];
  /** The config map's value, `configSize` bytes laid out as struct kp_xdp_config. */
  configure(bytes: Uint8Array): void;
  /** This host's addresses, 16 bytes each (IPv4 mapped into IPv6). */
  setAddresses(bytes: Uint8Array): void;
  counters(): NativeXdpCounters;
  /** One run on an Ethernet frame (BPF_PROG_TEST_RUN): the XDP action and the frame after it. */
  testRun(frame: Uint8Array): { action: number; frame: Buffer };
  /** Detaches what it attached, unloads the program. */
  close(): void;
}

interface NativeXdpClass {
  /** Loads the program; throws with the errno (EPERM without CAP_BPF/CAP_SYS_ADMIN, EOPNOTSUPP when built without it). */
  new (): NativeXdp;
  configSize: number;
  /** CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds: what the program adds to its clock. */
  clockOffset(): bigint;
}

export interface NativeAddon {
  abiVersion: number;
  NfQueue: new (queue: number, options: NativeNfqueueOptions, onBatch: NativeBatchCallback) => NativeNfqueue;
  NfLog: new (group: number, options: NativeNflogOptions, onBatch: NativeBatchCallback) => NativeNflog;
  RawSender: new (options: { mark?: number; ipv6?: boolean }) => NativeRawSender;
  NftContext: NativeNftContextClass;
  /** A TCP socket fd whose first write goes out in the SYN (client Fast Open, no cookie). Missing from addons built from older sources. */
  fastOpenSocket?: (family: 4 | 6) => number;
  /** One sd_notify datagram to `socketPath` (a path, or an abstract socket when it starts with '@'); throws with the errno. */
  notify: (socketPath: string, message: string) => void;
  /** The step-1 XDP program. Missing from addons built from older sources. */
  Xdp?: NativeXdpClass;
}

const ADDON_PATH = '../../build/Release/knockport_native.node';
/** Bumped with every change of the addon's surface (native/addon.cc). */
const ABI_VERSION = 5;

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
  if (process.platform !== 'linux') {
    throw new NativeAddonMissingError(
      `the gateway commands need Linux (netfilter); this is ${process.platform}. On this machine knock-port knock works: it needs no native code`,
    );
  }
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
    throw new NativeAddonMissingError(`the native addon is out of date (version ${addon.abiVersion}, need ${ABI_VERSION}): run \`npx node-gyp rebuild\``);
  }
  cached = addon;
  return addon;
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
