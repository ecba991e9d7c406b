import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Daemon } from '../../daemon.js';
import { KnockPortError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { addConfigOptions, addIptablesVariantOption, loadConfigFromOptions, type FirewallCommandOptions } from '../options.js';

interface RunOptions extends FirewallCommandOptions {
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
  addIptablesVariantOption(addConfigOptions(program.command('run').description('run the daemon (step-1 inspector, step-2 HTTPS, firewall)')))
    .option('--cert <file>', 'TLS certificate (PEM, chain allowed) for the step-2 HTTPS port (required)')
    .option('--key <file>', 'TLS private key (PEM) for the step-2 HTTPS port (required)')
    .addHelpText(
      'after',
      '\nSignals: SIGTERM/SIGINT stop (the firewall stays closed, grants expire in the kernel);\nSIGHUP reloads the config (an invalid file keeps the running one).',
    )
    .action(async (opts: RunOptions) => {
      // Step 2 is never served over plain HTTP: no certificate, no daemon.
      if (!opts.cert || !opts.key) throw new KnockPortError('--cert and --key are required: step 2 is only ever served over HTTPS');
      const cert = readPem(opts.cert, 'certificate');
      const key = readPem(opts.key, 'key');
      const logger = createLogger(opts.logLevel);
      const daemon = await Daemon.start({
        config: loadConfigFromOptions(opts),
        reloadConfig: () => loadConfigFromOptions(opts),
        cert,
        key,
        logger,
        firewall: { iptablesVariant: opts.iptablesVariant },
      });
      const stop = (signal: NodeJS.Signals) => {
        logger.info({ signal }, 'stopping');
        daemon.stop().then(
          () => process.exit(0),
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
