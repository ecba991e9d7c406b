/** `knock-port user add` and `user remove`: the config edited and checked, then the bundle printed or the daemon reloaded. */
import { callDaemon } from '../../control/client.js';
import { ControlCommandError, ControlUnreachableError } from '../../control/errors.js';
import { printBundle } from '../provision/print-bundle.js';
import { addUser, removeUser } from '../provision/user-file.js';
import { loadConfigFromOptions } from '../resolve-options.js';
import type { Terminal } from '../terminal.js';

export interface UserAddOptions {
  config: string;
  app: string;
  totp?: boolean;
  inConfig?: boolean;
  host?: string;
}

export interface UserRemoveOptions {
  config: string;
  app?: string;
  socket?: string;
}

/** A reload can install a whole firewall: longer than a query's answer takes. */
const RELOAD_TIMEOUT_MS = 60_000;

export async function addUserCommand(name: string, opts: UserAddOptions, terminal: Terminal): Promise<void> {
  const config = loadConfigFromOptions({ config: opts.config });
  const added = addUser({ configPath: opts.config, name, app: opts.app, totp: opts.totp === true, inConfig: opts.inConfig === true }, config);
  terminal.stderr.write(`added ${name} to app ${opts.app} in ${added.file}; apply it: systemctl reload knock-port\n`);
  await printBundle(terminal, { config: added.config, app: opts.app, user: name, secrets: added.secrets, ...(opts.host ? { host: opts.host } : {}) });
}

/**
 * Removes the user from the config, then asks the running daemon to reload it: the reload
 * revokes every grant of the user (and its keys stop knocking). When no daemon answers, the
 * config change stands and the command fails saying so: the daemon revokes them when it next
 * reloads or starts with this config.
 */
export async function removeUserCommand(name: string, opts: UserRemoveOptions, terminal: Terminal): Promise<void> {
  const config = loadConfigFromOptions({ config: opts.config });
  const removed = removeUser({ configPath: opts.config, name, ...(opts.app !== undefined ? { app: opts.app } : {}) }, config);
  const where = [...removed.deleted.map((file) => `deleted ${file}`), ...removed.edited.map((file) => `edited ${file}`)].join(', ');
  terminal.stderr.write(`removed ${name} from app ${removed.apps.join(', ')} (${where})\n`);
  const socket = opts.socket ?? removed.config.global.controlSocket;
  try {
    const reloaded = await callDaemon(socket, { cmd: 'reload' }, 'reloaded', RELOAD_TIMEOUT_MS);
    terminal.stdout.write(`the daemon reloaded the config: ${name}'s keys no longer knock; ${reloaded.voided} live grant(s) revoked\n`);
  } catch (err) {
    const pending = `${name} is removed from the config, but`;
    const then = `the daemon revokes ${name}'s grants when it next reloads (systemctl reload knock-port) or starts with this config`;
    if (err instanceof ControlUnreachableError) throw new ControlUnreachableError(`${pending} no daemon took the change: ${err.message}; ${then}`);
    if (err instanceof ControlCommandError) throw new ControlCommandError(`${pending} ${err.message}`);
    throw err;
  }
}
