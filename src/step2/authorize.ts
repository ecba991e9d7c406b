/**
 * The step-2 decision, apart from HTTP: which user, if any, may open the app's service. Every
 * refusal looks the same from outside and costs the same work, so none confirms a right key.
 */
import { findUserByKey } from '../auth/keys.js';
import type { SecretLockout } from '../auth/lockout.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { UsedCode } from '../auth/used-codes.js';
import type { AppConfig, Config, User } from '../config/types.js';
import type { Step2Window } from '../shared/kinds.js';
import type { Step2Fields } from './form.js';

export type ForbiddenReason = 'unknown-app' | 'no-window' | 'bad-key' | 'no-token' | 'bad-token' | 'locked';

export type Step2Decision =
  | { outcome: 'granted'; app: AppConfig; user: User; /** The one-time code it used up, when the user has TOTP. */ code?: UsedCode }
  | { outcome: 'forbidden'; reason: ForbiddenReason };

/**
 * Step 2 succeeds only for a user of the requested app who opened a step-2 window from this
 * IP for this app in step 1, with that user's HTTPS key (and TOTP token when configured).
 * The key comparison runs whatever the outcome (over an empty list when there is no window),
 * so failures differ only in which branch names them, not in the work done. A missing token
 * is refused like a wrong key (no "token required" answer that would confirm the key), and a
 * token sent with a wrong key costs the same TOTP work as with the right one.
 *
 * A wrong key from an address with a window counts against the app, a wrong token with the
 * right key against that user (see SecretLockout). A locked app or token gets the same 403 as
 * a wrong one, whether the key or token presented was right or not.
 */
export function authorizeStep2(
  fields: Step2Fields,
  windows: readonly Step2Window[],
  config: Config,
  totp: TotpVerifier,
  lockout: SecretLockout,
): Step2Decision {
  const app = config.apps.find((candidate) => candidate.name === fields.app);
  const windowUsers = new Set(windows.filter((w) => w.app === fields.app).map((w) => w.user));
  const candidates = app ? app.users.filter((user) => windowUsers.has(user.name)) : [];
  const user = findUserByKey(candidates, fields.accessKey, 'step2');
  if (!app) return { outcome: 'forbidden', reason: 'unknown-app' };
  if (candidates.length === 0) return { outcome: 'forbidden', reason: 'no-window' };
  if (lockout.isLocked('step2-key', app.name)) return { outcome: 'forbidden', reason: 'locked' };
  if (!user) {
    lockout.fail('step2-key', app.name);
    if (fields.token !== undefined) totp.verifyNothing(fields.token);
    return { outcome: 'forbidden', reason: 'bad-key' };
  }
  if (user.totpSecret === undefined) return { outcome: 'granted', app, user };
  if (fields.token === undefined) return { outcome: 'forbidden', reason: 'no-token' };
  // Not verified while locked: a right token is neither accepted nor used up.
  if (lockout.isLocked('step2-token', app.name, user.name)) {
    totp.verifyNothing(fields.token);
    return { outcome: 'forbidden', reason: 'locked' };
  }
  const code = totp.accept(user.totpSecret, fields.token);
  if (!code) {
    lockout.fail('step2-token', app.name, user.name);
    return { outcome: 'forbidden', reason: 'bad-token' };
  }
  return { outcome: 'granted', app, user, code };
}
