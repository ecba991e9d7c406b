import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';

export function registerHashKey(program: Command): void {
  program
    .command('hash-key')
    .description('read a key on stdin and print its sha256: form for the config')
    .action(() => {
      throw new NotAvailableYetError('hash-key');
    });
}
