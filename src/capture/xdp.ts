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
import { buildSynAck } from '../packet/build.js';
import { ipv4HeaderChecksum } from '../packet/checksum.js';
import { TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../packet/decode.js';
import { KnockPortError } from '../shared/errors.js';
import { COOKIE_SECRET_BYTES, COOKIE_SLOT_MS, KeyedCookieSource } from '../step1/cookie.js';
import { prefilterPrefix } from '../step1/prefilter.js';

/** The program's counters, in the order of `enum kp_xdp_counter` (native/xdp/step1.h). */
export const XDP_COUNTER_NAMES = ['syn_answered', 'bad_cookie', 'bad_prefix', 'syn_dropped', 'passed_knock', 'passed_other', 'bad_options'] as const;
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

/** Documentation addresses the self-test answers for, before the real ones are set. */
const SELF_TEST = { 4: ['192.0.2.7', '192.0.2.1'], 6: ['2001:db8::7', '2001:db8::1'] } as const;
const SELF_TEST_ETHERNET = { 4: '0200000000010200000000020800', 6: '02000000000102000000000286dd' } as const;

/** A SYN from SELF_TEST[family][0] to [1] at `port`: its IP packet, and the Ethernet frame around it. */
function selfTestSyn(family: 4 | 6, port: number): { packet: Buffer; frame: Buffer } {
  const [src, dst] = SELF_TEST[family].map((a) => parseIpAddress(a)!);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(port, 2);
  tcp.writeUInt32BE(0x12345678, 4);
  tcp[12] = 5 << 4;
  tcp[13] = TCP_SYN;
  tcp.writeUInt16BE(64240, 14);
  const ip = Buffer.alloc(family === 4 ? 20 : 40);
  if (family === 4) {
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = 6;
    src!.copy(ip, 12);
    dst!.copy(ip, 16);
    ip.writeUInt16BE(ipv4HeaderChecksum(ip, 0, 20), 10);
  } else {
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(20, 4);
    ip[6] = 6;
    ip[7] = 64;
    src!.copy(ip, 8);
    dst!.copy(ip, 24);
  }
  const packet = Buffer.concat([ip, tcp]);
  return { packet, frame: Buffer.concat([Buffer.from(SELF_TEST_ETHERNET[family], 'hex'), packet]) };
}

/**
 * Before the program is attached anywhere: a SYN run through it (BPF_PROG_TEST_RUN) must come
 * back as the very SYN-ACK the daemon builds with the same secret. Returns what differed, or
 * undefined. Leaves the self-test's addresses in the map: set the real ones next.
 */
export function selfTestXdp(program: Step1XdpProgram, settings: XdpSettings): string | undefined {
  const cookie = new KeyedCookieSource(settings.cookieSecret);
  program.setAddresses([SELF_TEST[4][1], SELF_TEST[6][1]]);
  program.configure({ ...settings, handshake: 'cookie', reply: 'silent', ipv6: true });
  try {
    for (const family of [4, 6] as const) {
      const { packet, frame } = selfTestSyn(family, settings.step1Port);
      const view = new TcpSegmentView();
      decodeTcpPacket(packet, view);
      // Run again when a cookie slot began in between (one 64-second boundary at most).
      for (let attempt = 0; attempt < 2; attempt++) {
        const slot = Math.floor(Date.now() / COOKIE_SLOT_MS);
        const { action, frame: out } = program.testRun(frame);
        const now = Date.now();
        if (Math.floor(now / COOKIE_SLOT_MS) !== slot) continue;
        if (action !== XDP_ACTION.tx) return `IPv${family} SYN: XDP action ${action}, not XDP_TX`;
        const expected = buildSynAck(view, cookie.issue(view, now));
        if (!out.subarray(14).equals(expected)) return `IPv${family} SYN-ACK ${out.subarray(14).toString('hex')}, the daemon's ${expected.toString('hex')}`;
        break;
      }
    }
    return undefined;
  } finally {
    program.configure(settings);
  }
}
