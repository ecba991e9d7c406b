/**
 * A config file that holds keys in clear must not be readable by every user of the host: anyone
 * who reads it can knock. Only warned about (the file may sit on a single-user box), never refused.
 */
import { statSync } from 'node:fs';
import type { Config } from './types.js';

/**
 * Why the file `config` was loaded from exposes its keys, with what to do, when it holds keys in
 * clear and every user can read it (mode & 0o004); undefined when it does not, or cannot be read.
 */
export function exposedKeysWarning(config: Pick<Config, 'source' | 'keysInClear'>): string | undefined {
  if (!config.keysInClear) return undefined;
  const path = config.source;
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    return undefined;
  }
  if ((mode & 0o004) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return (
    `${path} holds keys in clear and every user of this host can read it (mode ${octal}): ` +
    `chmod 640 ${path} && chown root:knock-port ${path}, or store the keys as sha256: digests (knock-port hash-key)`
  );
}
