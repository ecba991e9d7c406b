import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerCheck(program: Command): void {
  addConfigOptions(program.command('check').description('validate a config file and print a summary')).action(() => {
    throw new NotAvailableYetError('check');
  });
}
