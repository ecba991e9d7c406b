import type { Command } from 'commander';
import { NotAvailableYetError } from '../not-yet.js';
import { addConfigOptions } from '../options.js';

export function registerReplay(program: Command): void {
  addConfigOptions(program.command('replay').description('replay a pcap/pcapng file through the step-1 inspector')).action(() => {
    throw new NotAvailableYetError('replay');
  });
}
