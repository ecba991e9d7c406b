import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerRun(program: Command): void {
  addConfigOptions(program.command('run').description('run the daemon (step-1 inspector, step-2 HTTPS, firewall)')).action(() => {
    throw new NotAvailableYetError('run');
  });
}
