/**
 * `knock-port uninstall`'s work: the rules removed as the config or the state directory's record
 * says. It refuses while a daemon holds the control socket, because the daemon would re-install
 * them seconds later.
 */
import { connect } from 'node:net';
import { describeError, KnockPortError } from '../../shared/errors.js';
import type { Config } from '../../config/types.js';
import { createFirewall, type FirewallBackend, type FirewallOptions } from '../../firewall/index.js';
import {
  configForUninstall,
  describeInstall,
  forgetInstalls,
  installRecordPath,
  readInstallRecord,
  type InstalledFirewall,
} from '../../firewall/install-record.js';
import type { Terminal } from '../terminal.js';
import type { FirewallCommandOptions } from '../options.js';
import { loadConfigFromOptions } from '../resolve-options.js';

/** A daemon still runs: it would put the rules back on its next maintenance tick. */
export class DaemonRunningError extends KnockPortError {}

const PROBE_TIMEOUT_MS = 2_000;

/**
 * Whether a daemon holds the control socket: `running` when something accepts a connection
 * there (even a daemon too busy to answer), `stopped` when there is no socket or only a stale
 * one, and `unknown` (with the reason) when this user cannot tell.
 */
export function probeDaemon(path: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<{ state: 'running' | 'stopped' } | { state: 'unknown'; reason: string }> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (result: { state: 'running' | 'stopped' } | { state: 'unknown'; reason: string }) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done({ state: 'running' }));
    socket.once('connect', () => done({ state: 'running' }));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') done({ state: 'stopped' });
      else if (err.code === 'EAGAIN') done({ state: 'running' });
      else done({ state: 'unknown', reason: `${err.code ?? 'error'} on ${path}` });
    });
  });
}

/** Refuses while a daemon runs, since its self-heal re-installs the rules seconds later. */
async function refuseWhileRunning(path: string): Promise<void> {
  const probe = await probeDaemon(path);
  if (probe.state === 'running') {
    throw new DaemonRunningError(
      `knock-port is running (its control socket ${path} accepts connections), and it would re-install the rules within seconds. Stop it first (systemctl stop knock-port), then run uninstall again.`,
    );
  }
  if (probe.state === 'unknown') {
    throw new DaemonRunningError(`cannot tell whether knock-port is running (${probe.reason}); run uninstall as root, with the daemon stopped.`);
  }
}

/** Builds the backend to remove; tests pass one that touches no firewall. */
export type FirewallFactory = (config: Config, options: FirewallOptions) => FirewallBackend;

export interface UninstallOptions extends FirewallCommandOptions {
  fromState?: string;
}

export async function runUninstall(opts: UninstallOptions, terminal: Terminal, firewallFor: FirewallFactory = createFirewall): Promise<void> {
  if (opts.fromState !== undefined) return uninstallRecorded(opts.fromState, terminal, firewallFor);
  const config = loadConfigFromOptions(opts);
  await refuseWhileRunning(config.global.controlSocket);
  const firewall = firewallFor(config, { iptablesVariant: opts.iptablesVariant });
  await firewall.uninstall();
  terminal.stdout.write(`removed knock-port's ${firewall.type} rules and sets; its protected ports are no longer filtered by knock-port\n`);
}

/**
 * Removes every install recorded in `stateDir`, each on its own (one failure does not keep the
 * others in place), then drops the removed ones from the record; throws if any is left.
 */
async function uninstallRecorded(stateDir: string, terminal: Terminal, firewallFor: FirewallFactory): Promise<void> {
  const installs = readInstallRecord(stateDir);
  if (installs === undefined) {
    terminal.stdout.write(`no firewall install is recorded in ${stateDir} (no ${installRecordPath(stateDir)}); nothing removed\n`);
    return;
  }
  for (const socket of new Set(installs.map((install) => install.controlSocket))) await refuseWhileRunning(socket);
  const removed: InstalledFirewall[] = [];
  const failures: string[] = [];
  for (const install of installs) {
    try {
      await firewallFor(configForUninstall(install, installRecordPath(stateDir)), { iptablesVariant: install.iptablesVariant }).uninstall();
      removed.push(install);
      terminal.stdout.write(`removed knock-port's ${describeInstall(install)}; its protected ports are no longer filtered by knock-port\n`);
    } catch (err) {
      failures.push(`${describeInstall(install)}: ${describeError(err)}`);
    }
  }
  forgetInstalls(stateDir, removed);
  if (failures.length > 0) {
    throw new KnockPortError(`could not remove every recorded install (kept in ${installRecordPath(stateDir)}):\n  ${failures.join('\n  ')}`);
  }
}
