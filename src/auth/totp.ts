import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { secretScope, UsedCodes } from './used-codes.js';

/** RFC 6238 TOTP with the common authenticator-app parameters: SHA-1, 6 digits, 30 s. */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32Encode(data: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored); undefined if invalid. */
export function base32Decode(text: string): Buffer | undefined {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  if (clean.length === 0) return undefined;
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const index = BASE32_ALPHABET.indexOf(ch);
    if (index < 0) return undefined;
    value = ((value << 5) | index) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** A new random TOTP secret (160 bits, as RFC 4226 recommends), base32. */
export function newTotpSecret(): string {
  return base32Encode(randomBytes(20));
}

/** The code for a given time step counter (RFC 4226 HOTP). */
export function hotp(secret: Buffer, counter: number): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', secret).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** TOTP_DIGITS;
  return binary.toString().padStart(TOTP_DIGITS, '0');
}

export function totpAt(secretBase32: string, unixSeconds: number): string {
  const secret = base32Decode(secretBase32);
  if (!secret) throw new Error('invalid base32 TOTP secret');
  return hotp(secret, Math.floor(unixSeconds / TOTP_PERIOD_SECONDS));
}

export function otpauthUri(secretBase32: string, account: string, issuer = 'knock-port'): string {
  const label = encodeURIComponent(`${issuer}:${account}`);
  return `otpauth://totp/${label}?secret=${secretBase32}&issuer=${encodeURIComponent(issuer)}&algorithm=SHA1&digits=${TOTP_DIGITS}&period=${TOTP_PERIOD_SECONDS}`;
}

/**
 * Verifies TOTP codes within ±`window` steps and refuses a code already accepted for the same
 * secret (a sniffed or shoulder-surfed code cannot be used twice, in either step, for any app).
 * The used-code cache is injected: the daemon shares one across steps, reloads and restarts.
 */
export class TotpVerifier {
  constructor(
    private readonly window = 1,
    private readonly now: () => number = () => Date.now() / 1000,
    private readonly used: UsedCodes = new UsedCodes(),
  ) {}

  verify(secretBase32: string, code: string): boolean {
    if (!/^\d{6}$/.test(code)) return false;
    const secret = base32Decode(secretBase32);
    if (!secret) return false;
    const nowSeconds = this.now();
    const matched = this.match(secret, code, nowSeconds);
    if (matched === undefined) return false;
    const scope = secretScope(secret);
    if (this.used.isUsed(scope, matched, nowSeconds)) return false;
    return this.used.add({ scope, counter: matched, expiresAt: (matched + this.window + 1) * TOTP_PERIOD_SECONDS }, nowSeconds);
  }

  /**
   * The work of `verify` for a request whose key was wrong (or whose code may not be checked),
   * against a secret nobody has: the time taken then does not tell whether the key was right.
   */
  verifyNothing(code: string): void {
    if (/^\d{6}$/.test(code)) this.match(DECOY_SECRET, code, this.now());
  }

  /** The time step whose code is `code`, within the window; every candidate is compared. */
  private match(secret: Buffer, code: string, nowSeconds: number): number | undefined {
    const current = Math.floor(nowSeconds / TOTP_PERIOD_SECONDS);
    const presented = Buffer.from(code);
    let matched: number | undefined;
    for (let delta = -this.window; delta <= this.window; delta++) {
      const candidate = Buffer.from(hotp(secret, current + delta));
      if (timingSafeEqual(candidate, presented) && matched === undefined) matched = current + delta;
    }
    return matched;
  }
}

const DECOY_SECRET = randomBytes(20);
