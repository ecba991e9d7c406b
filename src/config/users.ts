/**
 * Every user of an app in one shape, whether the config gave the original's paired key lists or
 * `users:` entries, with where each key was written, for validation messages.
 */
import type { KeyPath } from './issues.js';
import type { AppSection } from './schema.js';
import type { AccessKey } from './values.js';

/** One user of an app, whichever form the config used, with where its keys were written. */
export interface AppUser {
  name: string;
  index: number;
  step1Key: AccessKey;
  step2Key: AccessKey;
  step1KeyPath: KeyPath;
  step2KeyPath: KeyPath;
  totpSecret?: string;
  step1OtpSecret?: string;
}

/**
 * The original's parallel lists pair `access_key_http[i]` with `access_key_https[i]` as user
 * `key<i>`; `users:` entries follow. Unpaired list entries are left to the policy to report.
 */
export function appUsers(appName: string, app: AppSection): AppUser[] {
  const users: AppUser[] = [];
  const step1Keys = app.access_key_http ?? [];
  const step2Keys = app.access_key_https ?? [];
  for (let i = 0; i < Math.min(step1Keys.length, step2Keys.length); i++) {
    users.push({
      name: `key${i}`,
      index: i,
      step1Key: step1Keys[i]!,
      step2Key: step2Keys[i]!,
      step1KeyPath: [appName, 'access_key_http', i],
      step2KeyPath: [appName, 'access_key_https', i],
    });
  }
  for (const [i, user] of (app.users ?? []).entries()) {
    users.push({
      name: user.name,
      index: users.length,
      step1Key: user.access_key_http,
      step2Key: user.access_key_https,
      step1KeyPath: [appName, 'users', i, 'access_key_http'],
      step2KeyPath: [appName, 'users', i, 'access_key_https'],
      ...(user.totp_secret ? { totpSecret: user.totp_secret } : {}),
      ...(user.step1_otp_secret ? { step1OtpSecret: user.step1_otp_secret } : {}),
    });
  }
  return users;
}
