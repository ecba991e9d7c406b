/**
 * The original knock-port enabled step-1 2FA per step-1 key with a file
 * `<2fa_config_folder>/<access_key_http>.json` holding `{ secret, interval, created_at }`.
 * Reading those files keeps such setups working: the user then needs a one-time `otp` in step 1.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TOTP_PERIOD_SECONDS } from '../auth/totp.js';
import type { PathIssue } from './issues.js';
import type { AppUser } from './users.js';
import { parseTotpSecret, Refusal } from './values.js';

export interface FolderSecrets {
  /** Step-1 OTP secret per user found in the folder. */
  secrets: Map<AppUser, string>;
  errors: PathIssue[];
  warnings: PathIssue[];
}

const FOLDER_PATH = ['global', '2fa_config_folder'];

/** `folder` relative paths resolve against the working directory, as in the original. */
export function readFolderSecrets(folder: string, users: readonly AppUser[]): FolderSecrets {
  const result: FolderSecrets = { secrets: new Map(), errors: [], warnings: [] };
  const directory = resolve(folder);
  if (!existsSync(directory) || !statSync(directory).isDirectory()) {
    result.warnings.push({ path: FOLDER_PATH, message: `${directory} is not a directory; no step-1 2FA files are read from it` });
    return result;
  }
  for (const user of users) {
    const key = user.http.clear;
    // Hashed keys have no file name; users with an explicit step1_otp_secret keep it.
    if (key === undefined || user.step1OtpSecret !== undefined || !isPlainFileName(key)) continue;
    const file = join(directory, `${key}.json`);
    if (!existsSync(file)) continue;
    const secret = readSecretFile(file);
    // The file name is the key itself, so messages never include it.
    if (secret instanceof Refusal) result.errors.push({ path: user.httpPath, message: `the 2FA file for this key in ${directory}: ${secret.message}` });
    else result.secrets.set(user, secret);
  }
  return result;
}

function isPlainFileName(name: string): boolean {
  return name !== '.' && name !== '..' && !/[/\0]/.test(name);
}

function readSecretFile(file: string): string | Refusal {
  let content: unknown;
  try {
    content = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return new Refusal(`cannot be read as JSON (${(err as Error).message})`);
  }
  if (content === null || typeof content !== 'object') return new Refusal('expected a JSON object with a "secret" field');
  const { secret, interval } = content as { secret?: unknown; interval?: unknown };
  if (typeof secret !== 'string') return new Refusal('expected a "secret" string field');
  if (interval !== undefined && interval !== TOTP_PERIOD_SECONDS) {
    return new Refusal(`interval ${String(interval)} is not supported (codes change every ${TOTP_PERIOD_SECONDS} s); enrol the user again with knock-port totp`);
  }
  return parseTotpSecret(secret);
}
