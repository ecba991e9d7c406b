/**
 * `knock-port run`: reads the config, certificate and key, starts the daemon with its logger and
 * systemd notifier, and stops it on SIGTERM/SIGINT (reload on SIGHUP is the daemon's).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Daemon } from '../../daemon.js';
import { describeError, KnockPortError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { SystemdNotifier } from '../../systemd/notify.js';
import { KnockUsageError } from '../../client/errors.js';
import { exposedKeysWarning } from '../../config/file-exposure.js';
import type { Config } from '../../config/types.js';
import { recordInstall } from '../../firewall/install-record.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import {
  addConfigOptions,
  addIptablesVariantOption,
  addLogLevelOption,
  loadConfigFromOptions,
  type FirewallCommandOptions,
  type LogLevelOptions,
} from '../options.js';

interface RunOptions extends FirewallCommandOptions, LogLevelOptions {
  cert?: string;
  key?: string;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new KnockPortError(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`);
  }
}

export function registerRun(program: Command): void {
  addLogLevelOption(addIptablesVariantOption(addConfigOptions(program.command('run').description('run the daemon (step-1 inspector, step-2 HTTPS, firewall)'))))
    .option('--cert <file>', 'TLS certificate (PEM, chain allowed) for the step-2 HTTPS port (required)')
    .option('--key <file>', 'TLS private key (PEM) for the step-2 HTTPS port (required)')
    .addHelpText(
      'after',
      '\nSignals: SIGTERM/SIGINT stop (the firewall stays closed, grants expire in the kernel);\nSIGHUP reloads the config (an invalid file keeps the running one).',
    )
    .action(async (opts: RunOptions) => {
      // Step 2 is never served over plain HTTP: no certificate, no daemon.
      if (!opts.cert || !opts.key) throw new KnockUsageError('--cert and --key are required: step 2 is only ever served over HTTPS');
      const cert = readPem(opts.cert, 'certificate');
      const key = readPem(opts.key, 'key');
      const logger = createLogger(opts.logLevel);
      // Under systemd (Type=notify): READY=1 once serving, reload and stop messages, watchdog pings from now on.
      const notifier = SystemdNotifier.fromEnvironment(logger);
      let daemon: Daemon;
      // Like `check`: an exact interface name that matches nothing is refused, before any rule and on reload
      // (the daemon logs and reports the names written to be absent for a while).
      const loadChecked = (): Config => {
        const loaded = loadConfigFromOptions(opts);
        requireInterfaces(loaded);
        return loaded;
      };
      try {
        const config = loadChecked();
        // The same warning as `knock-port check`: keys in clear that every user of the host can read.
        const exposed = exposedKeysWarning(config);
        if (exposed !== undefined) logger.warn({ config: opts.config }, exposed);
        // What is about to be installed, so that removal finds it whatever the config says by then.
        const { firewallType, tableName, controlSocket } = config.global;
        recordInstall(config.global.stateDir, { firewallType, tableName, iptablesVariant: opts.iptablesVariant, controlSocket });
        daemon = await Daemon.start({
          config,
          reloadConfig: loadChecked,
          cert,
          key,
          logger,
          firewall: { iptablesVariant: opts.iptablesVariant },
          notifier,
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
            logger.error({ err: (err as Error).message }, 'stop failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      // A reload logs its own failures and keeps the running config; this only guards against a bug.
      process.on('SIGHUP', () => {
        daemon.reload().catch((err: unknown) => logger.error({ err: (err as Error).message }, 'config reload failed'));
      });
    });
}
