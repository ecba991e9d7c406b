/** knock-port's version, as package.json says. */
import { readFileSync } from 'node:fs';

/** The version in package.json, which sits two levels above this file in a checkout, an npm install and the Debian package alike. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}
