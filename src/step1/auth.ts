/** Who a well-formed knock names: the app, then the user by step-1 key, then the one-time code. */
import { findUserByKey } from '../auth/keys.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { AppConfig, User } from '../config/types.js';
import type { KnockFields } from './http.js';

export type AuthFailure = 'unknown-app' | 'bad-key' | 'otp-required' | 'bad-otp';

export type KnockAuth = { ok: true; app: AppConfig; user: User } | { ok: false; reason: AuthFailure };

export function authenticateKnock(apps: ReadonlyMap<string, AppConfig>, fields: KnockFields, totp: TotpVerifier): KnockAuth {
  const app = apps.get(fields.app);
  if (!app) return { ok: false, reason: 'unknown-app' };
  const user = findUserByKey(app.users, fields.accessKey, 'http');
  if (!user) return { ok: false, reason: 'bad-key' };
  if (user.step1OtpSecret !== undefined) {
    if (fields.otp === undefined) return { ok: false, reason: 'otp-required' };
    // Scoped per app and user, so the used-code cache refuses a sniffed packet replayed later.
    if (!totp.verify(user.step1OtpSecret, fields.otp, `step1/${app.name}/${user.name}`)) return { ok: false, reason: 'bad-otp' };
  }
  return { ok: true, app, user };
}
