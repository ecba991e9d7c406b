import { findUserByKey } from '../auth/keys.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { AppConfig, Config, User } from '../config/types.js';
import type { Step2Window } from '../sessions/store.js';
import type { Step2Fields } from './form.js';

export type ForbiddenReason = 'unknown-app' | 'no-window' | 'bad-key' | 'bad-token';

export type Step2Decision =
  | { outcome: 'granted'; app: AppConfig; user: User }
  | { outcome: 'token-required'; app: AppConfig; user: User }
  | { outcome: 'forbidden'; reason: ForbiddenReason };

/**
 * Step 2 succeeds only for a user of the requested app who opened a step-2 window from this
 * IP for this app in step 1, with that user's HTTPS key (and TOTP token when configured).
 * The key comparison runs whatever the outcome (over an empty list when there is no window),
 * so failures differ only in which branch names them, not in the work done.
 */
export function authorizeStep2(fields: Step2Fields, windows: readonly Step2Window[], config: Config, totp: TotpVerifier): Step2Decision {
  const app = config.apps.find((candidate) => candidate.name === fields.app);
  const windowUsers = new Set(windows.filter((w) => w.app === fields.app).map((w) => w.user));
  const candidates = app ? app.users.filter((user) => windowUsers.has(user.name)) : [];
  const user = findUserByKey(candidates, fields.accessKey, 'https');
  if (!app) return { outcome: 'forbidden', reason: 'unknown-app' };
  if (!user) return { outcome: 'forbidden', reason: candidates.length === 0 ? 'no-window' : 'bad-key' };
  if (user.totpSecret === undefined) return { outcome: 'granted', app, user };
  if (fields.token === undefined) return { outcome: 'token-required', app, user };
  if (!totp.verify(user.totpSecret, fields.token, `${app.name}/${user.name}/step2`)) return { outcome: 'forbidden', reason: 'bad-token' };
  return { outcome: 'granted', app, user };
}
