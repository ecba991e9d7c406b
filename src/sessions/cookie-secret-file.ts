/**
 * The step-1 cookie secret kept in state_dir, so that a restart does not break a knock in flight;
 * the cookie arithmetic itself is step1/cookie.ts.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { COOKIE_SECRET_BYTES, CookieSecretError, randomCookieSecret } from '../step1/cookie.js';

export const COOKIE_SECRET_FILE = 'step1-cookie.key';

/**
 * The stable secret kept in `<stateDir>/step1-cookie.key` (hex, mode 0600), created on first
 * use, so a restart does not break a knock in flight.
 */
export async function loadOrCreateCookieSecret(stateDir: string): Promise<Buffer> {
  const path = join(stateDir, COOKIE_SECRET_FILE);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, `${randomCookieSecret().toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new CookieSecretError(`cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
  const text = (await readFile(path, 'utf8')).trim();
  if (!/^[0-9a-f]{32}$/i.test(text))
    throw new CookieSecretError(`${path} must hold ${COOKIE_SECRET_BYTES} bytes as 32 hex digits; delete it to create a new one`);
  if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  return Buffer.from(text, 'hex');
}
