/**
 * TOTP (RFC 6238): new secrets and otpauth:// URIs for `knock-port totp`, codes for the client,
 * and the daemon's verifier, which refuses a reused code and takes as long when the key was wrong.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { base32Decode, base32Encode, TOTP_DIGITS, TOTP_PERIOD_SECONDS } from '../shared/otp-format.js';
import { secretScope, UsedCodes, type UsedCode } from './used-codes.js';

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
    return this.accept(secretBase32, code) !== undefined;
  }

  /** As verify, and the code as now marked used (what the cluster shares); undefined when refused. */
  accept(secretBase32: string, code: string): UsedCode | undefined {
    if (!/^\d{6}$/.test(code)) return undefined;
    const secret = base32Decode(secretBase32);
    if (!secret) return undefined;
    const nowSeconds = this.now();
    const matched = this.match(secret, code, nowSeconds);
    if (matched === undefined) return undefined;
    const scope = secretScope(secret);
    if (this.used.isUsed(scope, matched, nowSeconds)) return undefined;
    const used: UsedCode = { scope, counter: matched, expiresAt: (matched + this.window + 1) * TOTP_PERIOD_SECONDS };
    return this.used.add(used, nowSeconds) ? used : undefined;
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
