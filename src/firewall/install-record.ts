/**
 * What `knock-port run` installed, recorded in its state directory before it touches the
 * firewall, so that removal takes out exactly that (`knock-port uninstall --from-state`, the
 * package's prerm) whatever the config says by then: a config edited since, or one that no
 * longer loads, must never leave rules in the kernel. The record holds no secret: the firewall
 * type, table name, iptables variant and control socket of each distinct install.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { describeError, KnockPortError } from '../shared/errors.js';

export const INSTALL_RECORD_FILE = 'firewall-installs.json';

export class InstallRecordError extends KnockPortError {}

const installSchema = z.object({
  firewallType: z.enum(['nftables', 'iptables', 'vyos']),
  tableName: z.string().min(1),
  iptablesVariant: z.enum(['default', 'nft', 'legacy']),
  controlSocket: z.string().min(1),
});

const recordSchema = z.object({ version: z.literal(1), installs: z.array(installSchema) });

/** One install: enough to remove it again without the config it came from. */
export type InstalledFirewall = z.infer<typeof installSchema>;

export const installRecordPath = (stateDir: string): string => join(stateDir, INSTALL_RECORD_FILE);

/** The same firewall objects: type, table and variant (the control socket is only where to ask whether a daemon runs). */
const sameObjects = (a: InstalledFirewall, b: InstalledFirewall): boolean =>
  a.firewallType === b.firewallType && a.tableName === b.tableName && a.iptablesVariant === b.iptablesVariant;

/** The installs recorded in `stateDir`, or undefined when nothing is recorded there; throws when the file cannot be trusted. */
export function readInstallRecord(stateDir: string): InstalledFirewall[] | undefined {
  const path = installRecordPath(stateDir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InstallRecordError(`cannot read the install record ${path}: ${describeError(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InstallRecordError(`the install record ${path} is not JSON (${describeError(err)}); remove the rules with knock-port uninstall -c CONFIG`);
  }
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) {
    throw new InstallRecordError(`the install record ${path} is not one knock-port wrote; remove the rules with knock-port uninstall -c CONFIG`);
  }
  return parsed.data.installs;
}

/** Replaces the record atomically (a crash leaves the old or the new one), or deletes it when nothing is left. */
function writeInstallRecord(stateDir: string, installs: readonly InstalledFirewall[]): void {
  const path = installRecordPath(stateDir);
  if (installs.length === 0) {
    rmSync(path, { force: true });
    return;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ version: 1, installs }, null, 2)}\n`, { mode: 0o640 });
  renameSync(temporary, path);
}

/**
 * Adds `install` to the record before it is made (a crash half-way still leaves it recorded);
 * an install of the same objects replaces its older entry. Throws an operator-facing error when
 * the state directory is not writable: `run` then stops before touching the firewall.
 */
export function recordInstall(stateDir: string, install: InstalledFirewall): void {
  try {
    const earlier = readInstallRecord(stateDir) ?? [];
    writeInstallRecord(stateDir, [...earlier.filter((entry) => !sameObjects(entry, install)), install]);
  } catch (err) {
    throw new InstallRecordError(
      `cannot record the firewall install in ${installRecordPath(stateDir)}: ${describeError(err)}. knock-port records what it installs so that removing it never leaves rules behind: make state_dir writable by the daemon's user (nothing was installed)`,
    );
  }
}

/** Drops the removed installs from the record (the file goes with the last one). */
export function forgetInstalls(stateDir: string, removed: readonly InstalledFirewall[]): void {
  const left = (readInstallRecord(stateDir) ?? []).filter((entry) => !removed.some((gone) => sameObjects(entry, gone)));
  writeInstallRecord(stateDir, left);
}

const randomSecret = (): string => randomBytes(16).toString('hex');

/**
 * A config that builds the recorded firewall (for uninstall only): the recorded type and table,
 * IPv6 on so that every family's objects are removed, and random paths and keys that nothing
 * ever serves. Built by the config loader, so it is valid whatever the config gains later.
 */
export function configForUninstall(install: InstalledFirewall, source: string): Config {
  const text = JSON.stringify({
    global: {
      http_post_path: `/${randomSecret()}`,
      https_post_path: `/${randomSecret()}`,
      interface_ext: 'lo',
      firewall_type: install.firewallType,
      table_name: install.tableName,
      ipv6: true,
      control_socket: install.controlSocket,
    },
    uninstall: { port: 1, duration: 1, step2_https_duration: 1, access_key_http: [randomSecret()], access_key_https: [randomSecret()] },
  });
  return parseConfig(text, source);
}

/** `firewall nftables, table knockport` (with the iptables variant when it is not the default). */
export function describeInstall(install: InstalledFirewall): string {
  const variant = install.firewallType === 'iptables' && install.iptablesVariant !== 'default' ? ` (iptables-${install.iptablesVariant})` : '';
  return `${install.firewallType}${variant} rules and sets of table ${install.tableName}`;
}
