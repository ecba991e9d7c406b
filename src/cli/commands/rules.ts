import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerRules(program: Command): void {
  addConfigOptions(program.command('rules').description('print the firewall rules that would be installed')).action(() => {
    throw new NotAvailableYetError('rules');
  });
}
