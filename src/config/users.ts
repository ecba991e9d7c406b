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
  http: AccessKey;
  https: AccessKey;
  httpPath: KeyPath;
  httpsPath: KeyPath;
  totpSecret?: string;
  step1OtpSecret?: string;
}

/**
 * The original's parallel lists pair `access_key_http[i]` with `access_key_https[i]` as user
 * `key<i>`; `users:` entries follow. Unpaired list entries are left to the policy to report.
 */
export function appUsers(appName: string, app: AppSection): AppUser[] {
  const users: AppUser[] = [];
  const httpKeys = app.access_key_http ?? [];
  const httpsKeys = app.access_key_https ?? [];
  for (let i = 0; i < Math.min(httpKeys.length, httpsKeys.length); i++) {
    users.push({
      name: `key${i}`,
      index: i,
      http: httpKeys[i]!,
      https: httpsKeys[i]!,
      httpPath: [appName, 'access_key_http', i],
      httpsPath: [appName, 'access_key_https', i],
    });
  }
  for (const [i, user] of (app.users ?? []).entries()) {
    users.push({
      name: user.name,
      index: users.length,
      http: user.access_key_http,
      https: user.access_key_https,
      httpPath: [appName, 'users', i, 'access_key_http'],
      httpsPath: [appName, 'users', i, 'access_key_https'],
      ...(user.totp_secret ? { totpSecret: user.totp_secret } : {}),
      ...(user.step1_otp_secret ? { step1OtpSecret: user.step1_otp_secret } : {}),
    });
  }
  return users;
}
