import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerRevoke(program: Command): void {
  program
    .command('revoke')
    .description('revoke grants for an IP now (via the control socket)')
    .action(() => {
      throw new NotAvailableYetError('revoke');
    });
}
