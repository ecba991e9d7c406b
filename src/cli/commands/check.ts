import type { Command } from 'commander';
import { summarizeConfig } from '../../config/summary.js';
import { addConfigOptions, loadConfigFromOptions, type ConfigOptions } from '../options.js';

/** Exit 0 with a summary, or exit 1 with every problem found (thrown as ConfigError). */
export function registerCheck(program: Command): void {
  addConfigOptions(program.command('check').description('validate a config file and print a summary (no secrets)')).action((opts: ConfigOptions) => {
    process.stdout.write(summarizeConfig(loadConfigFromOptions(opts)));
  });
}
