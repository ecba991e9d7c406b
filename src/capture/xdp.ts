/**
 * The step-1 XDP program (native/xdp/step1.bpf.c) through the addon: load it, write its config
 * (the cookie secret, the step-1 port, path prefix and settings) and this host's addresses into
 * its maps, attach it to interfaces, read its per-CPU counters. The program answers SYNs with the
 * daemon's own cookie SYN-ACK and drops junk; it decides nothing the daemon does not check again.
 */
import { endianness } from 'node:os';
import type { Step1Handshake, Step1Reply } from '../config/types.js';
import { callNative, loadNativeAddon, type NativeXdp } from '../native/addon.js';
import { parseIpAddress } from '../packet/address.js';
import { KnockPortError } from '../shared/errors.js';
import { COOKIE_SECRET_BYTES } from '../step1/cookie.js';
import { prefilterPrefix } from '../step1/prefilter.js';

/** The program's counters, in the order of `enum kp_xdp_counter` (native/xdp/step1.h). */
export const XDP_COUNTER_NAMES = ['syn_answered', 'bad_cookie', 'bad_prefix', 'syn_dropped', 'passed_knock', 'passed_other'] as const;
export type XdpCounterName = (typeof XDP_COUNTER_NAMES)[number];
export type XdpCounters = Record<XdpCounterName, number>;

/** XDP verdicts (enum xdp_action). */
export const XDP_ACTION = { aborted: 0, drop: 1, pass: 2, tx: 3 } as const;

export type XdpAttachMode = 'native' | 'generic';

/** What the program needs of the config and the daemon. */
export interface XdpSettings {
  cookieSecret: Buffer;
  step1Port: number;
  step1Path: string;
  handshake: Step1Handshake;
  reply: Step1Reply;
  ipv6: boolean;
}

/** The program cannot be used here: built without it, no privilege, a kernel that refuses it. */
export class XdpUnavailableError extends KnockPortError {}

// struct kp_xdp_config (native/xdp/step1.h): offsets of its fields.
const CONFIG = { key: 0, clockOffset: 16, flags: 24, port: 28, prefixLength: 30, prefix: 32 } as const;
const MAX_PREFIX = 256;
const FLAG = { on: 0x1, cookie: 0x2, reset: 0x4, ipv6: 0x8 } as const;

/**
 * The config map's value. The SipHash key words are the secret read little-endian (as
 * SipHash24 reads it), stored in the host's byte order like every field of the struct.
 */
export function xdpConfigBytes(settings: XdpSettings, clockOffsetNs: bigint, size: number): Buffer {
  if (settings.cookieSecret.length !== COOKIE_SECRET_BYTES) throw new RangeError('the cookie secret must be 16 bytes');
  const bytes = Buffer.alloc(size);
  const le = endianness() === 'LE';
  const u64 = (value: bigint, offset: number): number => (le ? bytes.writeBigUInt64LE(value, offset) : bytes.writeBigUInt64BE(value, offset));
  u64(settings.cookieSecret.readBigUInt64LE(0), CONFIG.key);
  u64(settings.cookieSecret.readBigUInt64LE(8), CONFIG.key + 8);
  u64(BigInt.asUintN(64, clockOffsetNs), CONFIG.clockOffset);
  const flags = FLAG.on | (settings.handshake === 'cookie' ? FLAG.cookie : 0) | (settings.reply === 'reset' ? FLAG.reset : 0) | (settings.ipv6 ? FLAG.ipv6 : 0);
  const prefix = prefilterPrefix(settings.step1Path).subarray(0, MAX_PREFIX);
  if (le) {
    bytes.writeUInt32LE(flags, CONFIG.flags);
    bytes.writeUInt16LE(settings.step1Port, CONFIG.port);
    bytes.writeUInt16LE(prefix.length, CONFIG.prefixLength);
  } else {
    bytes.writeUInt32BE(flags, CONFIG.flags);
    bytes.writeUInt16BE(settings.step1Port, CONFIG.port);
    bytes.writeUInt16BE(prefix.length, CONFIG.prefixLength);
  }
  prefix.copy(bytes, CONFIG.prefix);
  return bytes;
}

/** Addresses as the program's map keys: 16 bytes each, IPv4 as ::ffff:a.b.c.d. */
export function addressKeys(addresses: readonly string[]): Buffer {
  const keys: Buffer[] = [];
  for (const text of addresses) {
    const bytes = parseIpAddress(text);
    if (bytes === undefined) continue;
    keys.push(bytes.length === 16 ? bytes : Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), bytes]));
  }
  return Buffer.concat(keys);
}

export class Step1XdpProgram {
  private constructor(
    private readonly handle: NativeXdp,
    private readonly configSize: number,
    private readonly clockOffset: () => bigint,
  ) {}

  /** Loads the program into the kernel (not attached yet); throws XdpUnavailableError with why not. */
  static load(): Step1XdpProgram {
    const addon = loadNativeAddon();
    const Xdp = addon.Xdp;
    if (Xdp === undefined) throw new XdpUnavailableError('the native addon predates the XDP program: run `npx node-gyp rebuild`');
    try {
      return new Step1XdpProgram(new Xdp(), Xdp.configSize, () => Xdp.clockOffset());
    } catch (e) {
      throw new XdpUnavailableError((e as Error).message, { cause: e });
    }
  }

  /** Writes the settings, with the clock offset read now (call again to follow clock steps). */
  configure(settings: XdpSettings): void {
    const bytes = xdpConfigBytes(settings, this.clockOffset(), this.configSize);
    callNative(() => this.handle.configure(bytes));
  }

  /** The addresses SYNs are answered for (the rules' `fib daddr type local`). */
  setAddresses(addresses: readonly string[]): void {
    const keys = addressKeys(addresses);
    callNative(() => this.handle.setAddresses(keys));
  }

  attach(ifindex: number, mode: XdpAttachMode): void {
    callNative(() => this.handle.attach(ifindex, mode));
  }

  detach(ifindex: number): boolean {
    return this.handle.detach(ifindex);
  }

  attached(): number[] {
    return this.handle.attached();
  }

  counters(): XdpCounters {
    const values = callNative(() => this.handle.counters());
    return Object.fromEntries(XDP_COUNTER_NAMES.map((name, i) => [name, values[i] ?? 0])) as XdpCounters;
  }

  /** One run on an Ethernet frame without attaching (BPF_PROG_TEST_RUN). */
  testRun(frame: Uint8Array): { action: number; frame: Buffer } {
    return callNative(() => this.handle.testRun(frame));
  }

  /** Detaches everything it attached and unloads the program. */
  close(): void {
    this.handle.close();
  }
}
