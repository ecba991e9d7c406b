import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('check that the running daemon answers (via the control socket)')
    .action(() => {
      throw new NotAvailableYetError('health');
    });
}
