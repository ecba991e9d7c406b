/**
 * `knock-port run`'s work: the config, certificate, key, capabilities and addon checked before
 * anything is installed, then the daemon, its signals and its exit codes.
 */
import { Daemon } from '../../daemon.js';
import { describeError, errorFields, SetupExitCode } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { SystemdNotifier } from '../../systemd/notify.js';
import { logFields } from '../../step2/served-certificate.js';
import { requireCapabilities } from '../capabilities.js';
import { loadNativeAddon } from '../../native/addon.js';
import { checkedTlsFor } from '../tls-options.js';
import { exposedKeysWarning } from '../../config/file-exposure.js';
import type { Config } from '../../config/types.js';
import { recordInstall } from '../../firewall/install-record.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { sshLockoutWarning } from '../../config/ssh-session.js';
import type { FirewallCommandOptions, LogLevelOptions, TlsPathOptions } from '../options.js';
import { loadConfigFromOptions } from '../resolve-options.js';

export interface RunOptions extends FirewallCommandOptions, LogLevelOptions, TlsPathOptions {
  trial?: number;
  /** The original's flag: accepted, ignored with a note (capabilities replace sudo). */
  useSudo?: boolean;
}

const USE_SUDO_NOTE =
  '--use-sudo is accepted for compatibility and ignored: knock-port needs no sudo; it runs as root, or as a user given CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (the systemd unit does)';

export async function runDaemon(opts: RunOptions): Promise<void> {
  const logger = createLogger(opts.logLevel, undefined, { time: opts.logTime });
  if (opts.useSudo === true) logger.info(USE_SUDO_NOTE);
  // Under systemd (Type=notify): READY=1 once serving, reload and stop messages, watchdog pings from now on.
  const notifier = SystemdNotifier.fromEnvironment(logger);
  let daemon: Daemon;
  // The trial ran out: the daemon removed the gate and stopped; 12 says so, 1 when the removal failed.
  const endTrial = (removalError?: unknown): void => {
    notifier.close();
    process.exit(removalError === undefined ? SetupExitCode.trialNotConfirmed : 1);
  };
  // Like `check`: an exact interface name that matches nothing is refused, before any rule and on reload
  // (the daemon logs and reports the names written to be absent for a while).
  const loadChecked = (): Config => {
    const loaded = loadConfigFromOptions(opts);
    requireInterfaces(loaded);
    return loaded;
  };
  try {
    // First: a client-only install (no addon, or not Linux) says so before reading any file.
    loadNativeAddon();
    const config = loadChecked();
    // Before anything is touched: a certificate or key that cannot serve step 2, or a missing
    // capability, exits with its own code and no rule installed (no lockout by a typo).
    const tls = checkedTlsFor(config, opts);
    requireCapabilities(config);
    logger.info(logFields(tls.certificate), 'TLS certificate checked');
    for (const warning of tls.warnings) logger.warn(warning);
    // The same warning as `knock-port check`: keys in clear that every user of the host can read.
    const exposed = exposedKeysWarning(config);
    if (exposed !== undefined) logger.warn({ config: opts.config }, exposed);
    const ssh = sshLockoutWarning(config, process.env.SSH_CONNECTION);
    if (ssh !== undefined) logger.warn(ssh);
    // What is about to be installed, so that removal finds it whatever the config says by then.
    const { firewallType, tableName, controlSocket } = config.global;
    recordInstall(config.global.stateDir, { firewallType, tableName, iptablesVariant: opts.iptablesVariant, controlSocket });
    daemon = await Daemon.start({
      config,
      reloadConfig: loadChecked,
      tls,
      // SIGHUP: the same files (the flags, or the running config's keys), checked again.
      reloadTls: (running) => checkedTlsFor(running, opts),
      logger,
      firewall: { iptablesVariant: opts.iptablesVariant },
      notifier,
      ...(opts.trial !== undefined ? { trial: { seconds: opts.trial, ended: (removalError?: unknown) => endTrial(removalError) } } : {}),
    });
  } catch (err) {
    notifier.status(`start failed: ${describeError(err)}`);
    notifier.close();
    throw err;
  }
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'stopping');
    notifier.stopping();
    daemon.stop().then(
      () => {
        notifier.close();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error(errorFields(err), 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // A reload logs its own failures and keeps the running config; this only guards against a bug.
  process.on('SIGHUP', () => {
    daemon.reload().catch((err: unknown) => logger.error(errorFields(err), 'config reload failed'));
  });
}
