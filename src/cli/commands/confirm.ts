/** `knock-port confirm`: keeps the gate of a daemon started with `run --trial`, via the control socket. */
import type { Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, type ControlSocketOptions } from '../options.js';
import { addExamples } from '../help.js';

/** Exit 0 once the trial is confirmed; 1 when the daemon is not in a trial (or cannot be reached), saying why. */
export function registerConfirm(program: Command, terminal: Terminal = processTerminal()): void {
  const confirm = addControlSocketOptions(
    program.command('confirm').description('keep the gate of a daemon started with run --trial (else it removes the gate when the trial ends)'),
  );
  addExamples(confirm, [{ command: 'knock-port confirm', what: 'after `run --trial 300` and a knock that worked from outside: keep the gate' }]).action(
    async (options: ControlSocketOptions) => {
      const { askDaemon } = await import('../actions/control.js');
      const confirmed = await askDaemon(options, { cmd: 'confirm' }, 'confirmed');
      terminal.stdout.write(`trial confirmed with ${confirmed.secondsLeft} s left: the gate stays\n`);
    },
  );
}
