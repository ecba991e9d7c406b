/**
 * `knock-port run`: the daemon, started with its logger and systemd notifier and stopped on
 * SIGTERM/SIGINT (reload on SIGHUP is the daemon's); the work is in actions/run.ts.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { RunOptions } from '../actions/run.js';
import { MAX_TRIAL_SECONDS } from '../../control/trial.js';
import { addConfigOptions, addIptablesVariantOption, addLogLevelOption, addTlsOptions } from '../options.js';
import { addExamples } from '../help.js';

/** `--trial SECONDS`: a whole number of seconds, 1 to MAX_TRIAL_SECONDS. */
export function parseTrialSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || seconds < 1 || seconds > MAX_TRIAL_SECONDS) {
    throw new InvalidArgumentError(`expected a whole number of seconds from 1 to ${MAX_TRIAL_SECONDS}, e.g. --trial 300`);
  }
  return seconds;
}

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
    const { runDaemon } = await import('../actions/run.js');
    await runDaemon(opts);
  });
}
