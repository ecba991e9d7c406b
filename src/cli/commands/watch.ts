import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerWatch(program: Command): void {
  addConfigOptions(program.command('watch').description('watch live step-1 traffic with libpcap, without touching the firewall')).action(() => {
    throw new NotAvailableYetError('watch');
  });
}
