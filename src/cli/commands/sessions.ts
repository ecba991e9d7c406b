import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerSessions(program: Command): void {
  program
    .command('sessions')
    .description('list live grants (via the control socket)')
    .action(() => {
      throw new NotAvailableYetError('sessions');
    });
}
