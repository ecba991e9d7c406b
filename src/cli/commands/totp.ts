import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerTotp(program: Command): void {
  program
    .command('totp')
    .description('manage TOTP secrets')
    .action(() => {
      throw new NotAvailableYetError('totp');
    });
}
