import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerKnock(program: Command): void {
  program
    .command('knock')
    .description('knock as a client: step 1 then step 2')
    .action(() => {
      throw new NotAvailableYetError('knock');
    });
}
