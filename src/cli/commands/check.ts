/** `knock-port check`: validates a config file and prints a summary without secrets (the work is in actions/check.ts). */
import type { Command } from 'commander';
import type { CheckOptions } from '../actions/check.js';
import { processTerminal, type Terminal } from '../terminal.js';
import { addConfigOptions, addTlsOptions, FIREWALL_OVERRIDES } from '../options.js';
import { addExamples } from '../help.js';

/**
 * Exit 0 with a summary, or exit 1 with every problem found. An exact interface name that
 * matches no interface of this host is an error, as in `run`; a wildcard or optional one
 * (`ppp+`, `wg0?`: the interface may come later) is a warning, and so is a file that holds
 * keys in clear and every user can read (on stderr). `--json` prints one object instead: the
 * summary and every warning, or the errors; never a path, key or TOTP secret.
 */
export function registerCheck(program: Command, terminal: Terminal = processTerminal()): void {
  const check = addTlsOptions(
    addConfigOptions(program.command('check').description('validate a config file and print a summary (no secrets)'), FIREWALL_OVERRIDES),
    'checked as run checks it',
  )
    .option('--json', 'print one JSON object: {ok, config, summary, warnings, xdp} or {ok: false, config, errors}')
    .option('--no-interface-check', "do not compare the interface names with this host's interfaces (a config written for another host; run still does)");
  addExamples(check, [
    { command: 'knock-port check -c /etc/knock-port/config.yaml', what: 'check the config (and the TLS files it names) before a restart' },
    { command: 'knock-port check --json --no-interface-check -c gw-b.yaml', what: 'check a config written for another host, for a script' },
  ]).action(async (opts: CheckOptions) => {
    const { runCheck } = await import('../actions/check.js');
    runCheck(opts, terminal);
  });
}
