/**
 * `knock-port uninstall`: removes every rule and set knock-port installed. It refuses while a
 * daemon holds the control socket, because the daemon would re-install them seconds later.
 */
import { connect } from 'node:net';
import type { Command } from 'commander';
import { KnockPortError } from '../../shared/errors.js';
import { createFirewall } from '../../firewall/index.js';
import { addConfigOptions, addIptablesVariantOption, FIREWALL_OVERRIDES, loadConfigFromOptions, type FirewallCommandOptions } from '../options.js';

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

export function registerUninstall(program: Command): void {
  addIptablesVariantOption(
    addConfigOptions(
      program.command('uninstall').description('remove every firewall rule and set knock-port installed (stop the daemon first)'),
      FIREWALL_OVERRIDES,
    ),
  ).action(async (opts: FirewallCommandOptions) => {
    const config = loadConfigFromOptions(opts);
    await refuseWhileRunning(config.global.controlSocket);
    const firewall = createFirewall(config, { iptablesVariant: opts.iptablesVariant });
    await firewall.uninstall();
    process.stdout.write(`removed knock-port's ${firewall.type} rules and sets; its protected ports are no longer filtered by knock-port\n`);
  });
}
