import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a self-contained demo in network namespaces')
    .action(() => {
      throw new NotAvailableYetError('demo');
    });
}
