/**
 * The step-1 authentication policy written plainly over parsed strings: the reference that
 * KnockAuthenticator (src/step1/auth.ts, byte ranges, nothing allocated) is compared with.
 */
import { findUserByKey } from '../../../src/auth/keys.js';
import type { SecretLockout } from '../../../src/auth/lockout.js';
import type { TotpVerifier } from '../../../src/auth/totp.js';
import type { AppConfig, User } from '../../../src/config/types.js';
import type { AuthFailure } from '../../../src/step1/auth.js';
import type { KnockFields } from './knock-request.js';

export type KnockAuth = { ok: true; app: AppConfig; user: User } | { ok: false; reason: AuthFailure };

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
  const user = findUserByKey(app.users, fields.accessKey, 'step1');
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
