/** Who a well-formed knock names: the app, then the user by step-1 key, then the one-time code. */
import { findUserByKey } from '../auth/keys.js';
import type { SecretLockout } from '../auth/lockout.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { AppConfig, User } from '../config/types.js';
import type { KnockFields } from './http.js';

export type AuthFailure = 'unknown-app' | 'bad-key' | 'otp-required' | 'bad-otp' | 'locked';

export type KnockAuth = { ok: true; app: AppConfig; user: User } | { ok: false; reason: AuthFailure };

/**
 * A wrong key counts against the app, a wrong code with the right key against that user
 * (see SecretLockout); a locked app or code refuses the knock before the secret decides anything.
 * `countKeyFailures: false` (no handshake: the source may be forged) keeps anyone from locking
 * an app with forged knocks; a forged knock only ever opens a window its sender cannot use.
 */
export function authenticateKnock(
  apps: ReadonlyMap<string, AppConfig>,
  fields: KnockFields,
  totp: TotpVerifier,
  lockout: SecretLockout,
  countKeyFailures = true,
): KnockAuth {
  const app = apps.get(fields.app);
  if (!app) return { ok: false, reason: 'unknown-app' };
  // Compared before the lock is looked at, so the work done does not depend on the lock either.
  const user = findUserByKey(app.users, fields.accessKey, 'http');
  if (lockout.isLocked('step1-key', app.name)) return { ok: false, reason: 'locked' };
  if (!user) {
    if (countKeyFailures) lockout.fail('step1-key', app.name);
    return { ok: false, reason: 'bad-key' };
  }
  if (user.step1OtpSecret !== undefined) {
    if (fields.otp === undefined) return { ok: false, reason: 'otp-required' };
    // Not verified while locked: a right code is neither accepted nor used up.
    if (lockout.isLocked('step1-otp', app.name, user.name)) return { ok: false, reason: 'locked' };
    // Once per secret, for any app and across restarts: a sniffed packet replayed later is refused.
    if (!totp.verify(user.step1OtpSecret, fields.otp)) {
      lockout.fail('step1-otp', app.name, user.name);
      return { ok: false, reason: 'bad-otp' };
    }
  }
  return { ok: true, app, user };
}
