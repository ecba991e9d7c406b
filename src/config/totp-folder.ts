/**
 * The original knock-port enabled step-1 2FA per step-1 key with a file
 * `<2fa_config_folder>/<access_key_http>.json` holding `{ secret, interval, created_at }`.
 * Reading those files keeps such setups working: the user then needs a one-time `otp` in step 1.
 *
 * A configured folder is a promise that users have a second factor, so it is kept or the config
 * is refused: a folder that is missing, and a user with no readable, valid file (and no
 * `step1_otp_secret`), are errors, never a user quietly knocking with the key alone. The file
 * name is the key itself, so no message names the file or quotes its content.
 */
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { TOTP_PERIOD_SECONDS } from '../shared/otp-format.js';
import type { PathIssue } from './issues.js';
import type { AppUser } from './users.js';
import { parseTotpSecret, Refusal } from './values.js';

export interface FolderSecrets {
  /** Step-1 OTP secret per user found in the folder. */
  secrets: Map<AppUser, string>;
  errors: PathIssue[];
}

const FOLDER_PATH = ['global', '2fa_config_folder'];
const OR_SECRET = 'or give this user step1_otp_secret (knock-port totp new makes one)';

/** `folder` relative paths resolve against the working directory, as in the original. */
export function readFolderSecrets(folder: string, users: readonly AppUser[]): FolderSecrets {
  const result: FolderSecrets = { secrets: new Map(), errors: [] };
  const directory = resolve(folder);
  const problem = directoryProblem(directory);
  if (problem !== undefined) {
    const relative = isAbsolute(folder) ? '' : ` (a relative path is resolved against the working directory, ${process.cwd()})`;
    result.errors.push({ path: FOLDER_PATH, message: `${problem}${relative}: with 2fa_config_folder set, every user's step-1 key needs its 2FA file there` });
    return result;
  }
  for (const user of users) {
    if (user.step1OtpSecret !== undefined) continue; // an explicit secret wins over the folder
    const key = user.step1Key.clear;
    const refusal =
      key === undefined
        ? new Refusal(`a hashed key names no file in 2fa_config_folder; ${OR_SECRET}`)
        : !isPlainFileName(key)
          ? new Refusal(`this key cannot name a file in 2fa_config_folder (it contains '/' or is '.' or '..'); ${OR_SECRET}`)
          : readSecretFile(join(directory, `${key}.json`));
    if (refusal instanceof Refusal) result.errors.push({ path: user.step1KeyPath, message: refusal.message });
    else result.secrets.set(user, refusal);
  }
  return result;
}

/** Why `directory` is no usable folder, or undefined when it is one. */
function directoryProblem(directory: string): string | undefined {
  try {
    return statSync(directory).isDirectory() ? undefined : 'is not a directory';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no such directory' : `cannot be read (${code ?? 'error'})`;
  }
}

function isPlainFileName(name: string): boolean {
  return name !== '.' && name !== '..' && !/[/\0]/.test(name);
}

/** The file's secret, or why not; messages say "the 2FA file for this key", never its name or content. */
function readSecretFile(file: string): string | Refusal {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new Refusal(`no 2FA file for this key in 2fa_config_folder (<step-1 key>.json); every user needs one, ${OR_SECRET}`);
    return new Refusal(`the 2FA file for this key in 2fa_config_folder cannot be read (${code ?? 'error'})`);
  }
  let content: unknown;
  try {
    content = JSON.parse(text);
  } catch {
    // The parser's message quotes the text, which holds the secret.
    return new Refusal('the 2FA file for this key in 2fa_config_folder is not JSON: expected an object with a "secret" string');
  }
  if (content === null || typeof content !== 'object' || Array.isArray(content))
    return new Refusal('the 2FA file for this key in 2fa_config_folder: expected a JSON object with a "secret" field');
  const { secret, interval } = content as { secret?: unknown; interval?: unknown };
  if (typeof secret !== 'string') return new Refusal('the 2FA file for this key in 2fa_config_folder: expected a "secret" string field');
  if (interval !== undefined && interval !== TOTP_PERIOD_SECONDS) {
    return new Refusal(
      `the 2FA file for this key in 2fa_config_folder: interval ${JSON.stringify(interval)} is not supported (codes change every ${TOTP_PERIOD_SECONDS} s); enrol the user again with knock-port totp`,
    );
  }
  const parsed = parseTotpSecret(secret);
  return parsed instanceof Refusal ? new Refusal(`the 2FA file for this key in 2fa_config_folder: ${parsed.message}`) : parsed;
}
