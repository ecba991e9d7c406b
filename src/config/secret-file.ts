/** Secrets the config names by file (the cluster key, passwords, the metrics token), read at load time. */
import { readFileSync, statSync } from 'node:fs';
import type { KeyPath, PathIssue } from './issues.js';
import { Refusal, type Parsed } from './values.js';

/**
 * The file's text without its final line break (`openssl rand -hex 32 > FILE` writes one), with a
 * warning in `warnings` when every user of the host can read it. Messages never quote the content.
 */
export function readSecretFile(file: string, what: string, path: KeyPath, warnings: PathIssue[]): Parsed<string> {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return new Refusal(code === 'ENOENT' ? `${what} does not exist` : `${what} cannot be read (${code ?? 'error'})`);
  }
  if ((mode & 0o004) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    warnings.push({ path, message: `${what} can be read by every user of this host (mode ${octal}): chmod 640 ${file} && chown root:knock-port ${file}` });
  }
  return text.replace(/\r?\n$/, '');
}
