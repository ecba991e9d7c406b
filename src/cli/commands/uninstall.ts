import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerUninstall(program: Command): void {
  addConfigOptions(program.command('uninstall').description('remove every firewall rule and set knock-port installed')).action(() => {
    throw new NotAvailableYetError('uninstall');
  });
}
