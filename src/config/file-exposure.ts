/**
 * A config file that holds keys in clear must not be readable by every user of the host: anyone
 * who reads it can knock. Only warned about (the file may sit on a single-user box), never refused.
 */
import { readFileSync, statSync } from 'node:fs';
import { parseYaml } from './yaml-source.js';

const KEY_FIELDS = ['access_key_http', 'access_key_https'] as const;

/** Keys written in clear (not `sha256:` digests) in any app section, its user list included. */
export function holdsClearKeys(data: unknown): boolean {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return false;
  // A key is a string or (unquoted digits) a number; only `sha256:` strings are digests.
  const isClear = (value: unknown) => (typeof value === 'string' && !value.startsWith('sha256:')) || typeof value === 'number';
  for (const [name, section] of Object.entries(data as Record<string, unknown>)) {
    if (name === 'global' || section === null || typeof section !== 'object') continue;
    const app = section as Record<string, unknown>;
    for (const field of KEY_FIELDS) {
      const keys = app[field];
      if ((Array.isArray(keys) ? keys : [keys]).some(isClear)) return true;
    }
    const users = Array.isArray(app.users) ? (app.users as unknown[]) : [];
    for (const user of users) {
      if (user !== null && typeof user === 'object' && KEY_FIELDS.some((field) => isClear((user as Record<string, unknown>)[field]))) return true;
    }
  }
  return false;
}

/**
 * Why the config file at `path` exposes its keys, with what to do, when it holds keys in clear
 * and every user can read it (mode & 0o004); undefined when it does not, or cannot be read.
 */
export function exposedKeysWarning(path: string): string | undefined {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    if ((mode & 0o004) === 0) return undefined;
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  if (!holdsClearKeys(parseYaml(text).data)) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return (
    `${path} holds keys in clear and every user of this host can read it (mode ${octal}): ` +
    `chmod 640 ${path} && chown root:knock-port ${path}, or store the keys as sha256: digests (knock-port hash-key)`
  );
}
