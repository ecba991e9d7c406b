/**
 * Stateless SYN cookies: our ISN is a keyed MAC over the connection's addresses, ports, the
 * client's ISN and a time slot, so a data segment proves its sender received our SYN-ACK
 * (the source is not spoofed) without any per-connection memory.
 *
 * Layout of the 32-bit ISN: the MAC's upper 30 bits, then the slot's low 2 bits, so the slot
 * a cookie was issued in is recoverable and one MAC checks it. A cookie is valid in the slot
 * it was issued in and the next one (64 to 128 s).
 */
import { randomBytes } from 'node:crypto';
import { copyAddress } from '../packet/address.js';
import { KnockPortError } from '../shared/errors.js';
import type { TcpSegmentView } from '../packet/decode.js';
import { SipHash24 } from './siphash.js';

export const COOKIE_SLOT_MS = 64_000;
export const COOKIE_SECRET_BYTES = 16;
const SLOT_BITS_MASK = 0x3;

/** Where our ISNs come from and how a data segment's ACK is checked against them. */
export interface CookieSource {
  /** Our ISN for a SYN-ACK answering `syn`. */
  issue(syn: TcpSegmentView, nowMs: number): number;
  /** True when `segment.ack - 1` is an ISN we gave this 4-tuple and client ISN (`seq - 1`). */
  verify(segment: TcpSegmentView, nowMs: number): boolean;
}

/** The live daemon's cookie: SipHash-2-4 keyed with a 16-byte secret. */
export class KeyedCookieSource implements CookieSource {
  private readonly mac: SipHash24;
  /** saddr, daddr (16 bytes each at most), sport, dport, client ISN, slot. */
  private readonly message = Buffer.alloc(16 + 16 + 2 + 2 + 4 + 4);

  constructor(secret: Buffer) {
    if (secret.length !== COOKIE_SECRET_BYTES)
      throw new CookieSecretError(`the step-1 cookie secret must be ${COOKIE_SECRET_BYTES} bytes, got ${secret.length}`);
    this.mac = new SipHash24(secret);
  }

  issue(syn: TcpSegmentView, nowMs: number): number {
    const slot = Math.floor(nowMs / COOKIE_SLOT_MS);
    return this.cookie(syn, syn.seq, slot);
  }

  verify(segment: TcpSegmentView, nowMs: number): boolean {
    const presented = (segment.ack - 1) >>> 0;
    const clientIsn = (segment.seq - 1) >>> 0;
    const current = Math.floor(nowMs / COOKIE_SLOT_MS);
    const slotBits = presented & SLOT_BITS_MASK;
    // The slot bits name the only candidate among the current and previous slot.
    const slot = (current & SLOT_BITS_MASK) === slotBits ? current : ((current - 1) & SLOT_BITS_MASK) === slotBits ? current - 1 : -1;
    return slot >= 0 && this.cookie(segment, clientIsn, slot) === presented;
  }

  private cookie(flow: TcpSegmentView, clientIsn: number, slot: number): number {
    const length = flow.addressLength;
    const m = this.message;
    copyAddress(flow.packet, flow.srcOffset, m, 0, length);
    copyAddress(flow.packet, flow.dstOffset, m, length, length);
    let o = 2 * length;
    // Big-endian by hand: Buffer#write* validates value and offset on every call.
    o = putUInt16(m, o, flow.sport);
    o = putUInt16(m, o, flow.dport);
    o = putUInt32(m, o, clientIsn);
    o = putUInt32(m, o, slot);
    const mac = this.mac.hash(m, o);
    return ((mac & ~SLOT_BITS_MASK) | (slot & SLOT_BITS_MASK)) >>> 0;
  }
}

/** Stores `value` big-endian at `offset`; returns the offset after it. */
function putUInt16(out: Buffer, offset: number, value: number): number {
  out[offset] = (value >>> 8) & 0xff;
  out[offset + 1] = value & 0xff;
  return offset + 2;
}

function putUInt32(out: Buffer, offset: number, value: number): number {
  out[offset] = (value >>> 24) & 0xff;
  out[offset + 1] = (value >>> 16) & 0xff;
  out[offset + 2] = (value >>> 8) & 0xff;
  out[offset + 3] = value & 0xff;
  return offset + 4;
}

export class CookieSecretError extends KnockPortError {}

/** A fresh secret: cookies issued before a restart stop validating. */
export function randomCookieSecret(): Buffer {
  return randomBytes(COOKIE_SECRET_BYTES);
}
