/** `knock-port check`: validates a config file and prints a summary without secrets. */
import type { Command } from 'commander';
import { summarizeConfig } from '../../config/summary.js';
import { interfaceWarnings } from '../../firewall/interface-presence.js';
import { addConfigOptions, loadConfigFromOptions, type ConfigOptions } from '../options.js';

/**
 * Exit 0 with a summary, or exit 1 with every problem found (thrown as ConfigError). Interface
 * names that match nothing on this host are warnings: the interface may come later (ppp, wg).
 */
export function registerCheck(program: Command): void {
  addConfigOptions(program.command('check').description('validate a config file and print a summary (no secrets)')).action((opts: ConfigOptions) => {
    const config = loadConfigFromOptions(opts);
    process.stdout.write(summarizeConfig(config, interfaceWarnings(config)));
  });
}
