/** Who a well-formed knock names: the app, then the user by step-1 key, then the one-time code. */
import { KeyMatcher } from '../auth/keys.js';
import type { SecretLockout } from '../auth/lockout.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { AppConfig, User } from '../config/types.js';
import type { FieldRange, KnockScan } from './request.js';

export type AuthFailure = 'unknown-app' | 'bad-key' | 'otp-required' | 'bad-otp' | 'locked';

/** One app with what matching a knock against it needs, computed once. */
interface AppEntry {
  app: AppConfig;
  /** The name's UTF-8 bytes, compared with the knock's `app` bytes. */
  name: Buffer;
  keys: KeyMatcher;
}

/**
 * Who a `KnockScan` names (byte ranges, no strings), with every app's name bytes
 * and key digests prepared at construction: a flood of knocks allocates nothing here. Same checks
 * in the same order, so the same reasons: the app is looked up first (app names are not secret),
 * then the key digest is compared with every user's, then the locks.
 * On success the app and user are in `app` and `user` until the next call.
 */
export class KnockAuthenticator {
  private readonly entries: readonly AppEntry[];
  app: AppConfig | undefined;
  user: User | undefined;

  constructor(apps: ReadonlyMap<string, AppConfig>) {
    this.entries = [...apps].map(([name, app]) => ({ app, name: Buffer.from(name, 'utf8'), keys: new KeyMatcher(app.users, 'step1') }));
  }

  /**
   * Undefined when the knock is granted, else why not. A wrong key counts against the app, a
   * wrong code with the right key against that user (see SecretLockout); a locked app or code
   * refuses the knock before the secret decides anything. `countKeyFailures: false` (no
   * handshake: the source may be forged) keeps anyone from locking an app with forged knocks.
   */
  authenticate(scan: KnockScan, totp: TotpVerifier, lockout: SecretLockout, countKeyFailures: boolean): AuthFailure | undefined {
    this.app = undefined;
    this.user = undefined;
    const entry = this.entryFor(scan.app);
    if (entry === undefined) return 'unknown-app';
    const app = entry.app;
    const key = scan.accessKey;
    // Compared before the lock is looked at, so the work done does not depend on the lock either.
    const user = entry.keys.match(key.bytes, key.start, key.end);
    if (lockout.isLocked('step1-key', app.name)) return 'locked';
    if (!user) {
      if (countKeyFailures) lockout.fail('step1-key', app.name);
      return 'bad-key';
    }
    if (user.step1OtpSecret !== undefined) {
      if (!scan.otp.present) return 'otp-required';
      // Not verified while locked: a right code is neither accepted nor used up.
      if (lockout.isLocked('step1-otp', app.name, user.name)) return 'locked';
      // Once per secret, for any app and across restarts: a sniffed packet replayed later is refused.
      if (!totp.verify(user.step1OtpSecret, scan.otp.text())) {
        lockout.fail('step1-otp', app.name, user.name);
        return 'bad-otp';
      }
    }
    this.app = app;
    this.user = user;
    return undefined;
  }

  private entryFor(name: FieldRange): AppEntry | undefined {
    for (const entry of this.entries) if (sameBytes(entry.name, name.bytes, name.start, name.end)) return entry;
    return undefined;
  }
}

function sameBytes(expected: Buffer, bytes: Buffer, start: number, end: number): boolean {
  if (end - start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (bytes[start + i] !== expected[i]) return false;
  return true;
}
