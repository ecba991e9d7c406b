/**
 * `knock-port run`: reads the config, certificate and key, starts the daemon with its logger and
 * systemd notifier, and stops it on SIGTERM/SIGINT (reload on SIGHUP is the daemon's).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Daemon } from '../../daemon.js';
import { describeError, errorFields, SetupExitCode } from '../../shared/errors.js';
import { MAX_TRIAL_SECONDS } from '../../control/trial.js';
import { createLogger } from '../../shared/log.js';
import { SystemdNotifier } from '../../systemd/notify.js';
import { logFields } from '../../step2/served-certificate.js';
import { requireCapabilities } from '../capabilities.js';
import { loadNativeAddon } from '../../native/addon.js';
import { addTlsOptions, checkedTlsFor, type TlsPathOptions } from '../tls-options.js';
import { exposedKeysWarning } from '../../config/file-exposure.js';
import type { Config } from '../../config/types.js';
import { recordInstall } from '../../firewall/install-record.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { sshLockoutWarning } from '../../config/ssh-session.js';
import {
  addConfigOptions,
  addIptablesVariantOption,
  addLogLevelOption,
  loadConfigFromOptions,
  type FirewallCommandOptions,
  type LogLevelOptions,
} from '../options.js';
import { addExamples } from '../help.js';

/** `--trial SECONDS`: a whole number of seconds, 1 to MAX_TRIAL_SECONDS. */
export function parseTrialSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || seconds < 1 || seconds > MAX_TRIAL_SECONDS) {
    throw new InvalidArgumentError(`expected a whole number of seconds from 1 to ${MAX_TRIAL_SECONDS}, e.g. --trial 300`);
  }
  return seconds;
}

interface RunOptions extends FirewallCommandOptions, LogLevelOptions, TlsPathOptions {
  trial?: number;
  /** The original's flag: accepted, ignored with a note (capabilities replace sudo). */
  useSudo?: boolean;
}

const USE_SUDO_NOTE =
  '--use-sudo is accepted for compatibility and ignored: knock-port needs no sudo; it runs as root, or as a user given CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (the systemd unit does)';

export function registerRun(program: Command): void {
  const run = addTlsOptions(
    addLogLevelOption(
      addIptablesVariantOption(addConfigOptions(program.command('run').description('run the daemon (step-1 inspector, step-2 HTTPS, firewall)'))),
    ),
    'required here or in the config',
  )
    .addOption(new Option('--use-sudo').hideHelp())
    .addOption(
      new Option(
        '--trial <seconds>',
        'install the gate, then remove it again (every protected port open, as after uninstall) and exit 12 unless `knock-port confirm` runs within SECONDS',
      ).argParser(parseTrialSeconds),
    )
    .addHelpText(
      'after',
      '\nSignals: SIGTERM/SIGINT stop (the firewall stays closed, grants expire in the kernel);\nSIGHUP reloads the config, certificate and key (what fails a check keeps the running one).\nExit codes: 10 TLS certificate or key unusable, 11 missing capability (nothing is installed);\n12 --trial not confirmed in time (the gate was removed on purpose).',
    );
  addExamples(run, [
    { command: 'knock-port run -c /etc/knock-port/config.yaml', what: 'run in the foreground with the TLS files the config names' },
    { command: 'knock-port run --trial 300', what: 'try a new gate: it is removed again in 5 minutes unless `knock-port confirm` runs' },
  ]).action(async (opts: RunOptions) => {
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
      const config = loadChecked();
      // Before anything is touched: a certificate or key that cannot serve step 2, or a missing
      // capability, exits with its own code and no rule installed (no lockout by a typo).
      const tls = checkedTlsFor(config, opts);
      requireCapabilities(config);
      // The addon too: without it the step-1 workers would fail once the gate is installed.
      loadNativeAddon();
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
      // Loaded here, not at the top: the daemon's modules (metrics, cluster store) are most of
      // what `knock-port --help` would otherwise load.
      const { Daemon } = await import('../../daemon.js');
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
  });
}
