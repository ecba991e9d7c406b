/**
 * Where the client's secrets come from (flag, then key file, then environment), and parsing of
 * the key file, which gets a warning when other users can read it.
 */
import { readFileSync, statSync } from 'node:fs';
import { base32Decode } from '../shared/otp-format.js';
import { KnockUsageError } from './errors.js';

/** Secrets a knock needs; every one can come from a flag, a key file or the environment. */
export interface KnockCredentials {
  step1Key: string;
  step2Key: string;
  /** Step-2 TOTP code, when known up front. */
  token?: string;
  /** Base32 secret from which the step-1 one-time `otp` is computed. */
  otpSecret?: string;
  /**
   * The user has a step-2 TOTP, so step 2 needs a token. The gateway cannot say so (it refuses a
   * missing token exactly like a wrong key), so the client is told: `--totp` or `totp=yes`.
   */
  totp?: boolean;
}

export interface CredentialFlags {
  step1Key?: string;
  step2Key?: string;
  token?: string;
  otpSecret?: string;
  keyFile?: string;
  totp?: boolean;
}

/** Environment variables read when a secret is not given otherwise. */
export const CREDENTIAL_ENV = {
  step1Key: 'KNOCK_PORT_HTTP_KEY',
  step2Key: 'KNOCK_PORT_HTTPS_KEY',
  token: 'KNOCK_PORT_TOKEN',
  otpSecret: 'KNOCK_PORT_OTP_SECRET',
} as const;

type SecretName = keyof typeof CREDENTIAL_ENV;

type KeyFileField = SecretName | 'totp';

/** Names a key file may use, one `name=value` per line. */
const KEY_FILE_NAMES: Record<string, KeyFileField> = {
  http_key: 'step1Key',
  https_key: 'step2Key',
  otp_secret: 'otpSecret',
  totp: 'totp',
};

export interface ResolvedCredentials {
  credentials: KnockCredentials;
  /** Things the user should fix but that do not stop the knock (e.g. a key file others can read). */
  warnings: string[];
}

/** Precedence, most specific first: the flag, then `--key-file`, then the environment. */
export function resolveCredentials(flags: CredentialFlags, env: NodeJS.ProcessEnv): ResolvedCredentials {
  const warnings: string[] = [];
  const fromFile: Partial<Record<KeyFileField, string>> = flags.keyFile === undefined ? {} : readKeyFile(flags.keyFile, warnings);
  const pick = (name: SecretName): string | undefined => nonEmpty(flags[name]) ?? nonEmpty(fromFile[name]) ?? nonEmpty(env[CREDENTIAL_ENV[name]]);
  const step1Key = pick('step1Key');
  const step2Key = pick('step2Key');
  if (step1Key === undefined) throw new KnockUsageError(`no step-1 key: give --http-key, http_key= in --key-file, or ${CREDENTIAL_ENV.step1Key}`);
  if (step2Key === undefined) throw new KnockUsageError(`no step-2 key: give --https-key, https_key= in --key-file, or ${CREDENTIAL_ENV.step2Key}`);
  const credentials: KnockCredentials = { step1Key, step2Key };
  const token = pick('token');
  if (token !== undefined) credentials.token = token;
  const otpSecret = pick('otpSecret');
  if (otpSecret !== undefined) {
    if (!base32Decode(otpSecret)) throw new KnockUsageError('the step-1 otp secret is not valid base32 (letters A-Z and digits 2-7)');
    credentials.otpSecret = otpSecret;
  }
  if (fromFile.totp !== undefined && fromFile.totp !== 'yes' && fromFile.totp !== 'no') throw new KnockUsageError(`${flags.keyFile}: totp must be yes or no`);
  if (flags.totp === true || fromFile.totp === 'yes') credentials.totp = true;
  return { credentials, warnings };
}

/**
 * Parses a key file: `http_key=...`, `https_key=...`, `otp_secret=...`, `totp=yes|no`, blank
 * lines and `#` comments. Values are taken verbatim after the first `=` (keys may contain `=`).
 */
export function parseKeyFile(text: string, source: string): Partial<Record<KeyFileField, string>> {
  const values: Partial<Record<KeyFileField, string>> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${source}:${index + 1}`;
    const separator = line.indexOf('=');
    if (separator < 0) throw new KnockUsageError(`${where}: expected name=value`);
    const name = line.slice(0, separator).trim();
    const field = KEY_FILE_NAMES[name];
    if (field === undefined) throw new KnockUsageError(`${where}: unknown name "${name}" (expected ${Object.keys(KEY_FILE_NAMES).join(', ')})`);
    if (values[field] !== undefined) throw new KnockUsageError(`${where}: "${name}" given twice`);
    values[field] = line.slice(separator + 1).trim();
  });
  return values;
}

function readKeyFile(path: string, warnings: string[]): Partial<Record<KeyFileField, string>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KnockUsageError(`cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if ((statSync(path).mode & 0o077) !== 0) warnings.push(`key file ${path} can be read by other users: chmod 600 ${path}`);
  return parseKeyFile(text, path);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
