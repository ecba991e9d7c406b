/** `knock-port confirm`: keeps the gate of a daemon started with `run --trial`, via the control socket. */
import type { Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, resolveControlSocket, type ControlSocketOptions } from '../options.js';
import { callDaemon } from '../../control/client.js';

/** Exit 0 once the trial is confirmed; 1 when the daemon is not in a trial (or cannot be reached), saying why. */
export function registerConfirm(program: Command, terminal: Terminal = processTerminal()): void {
  addControlSocketOptions(
    program.command('confirm').description('keep the gate of a daemon started with run --trial (else it removes the gate when the trial ends)'),
  ).action(async (options: ControlSocketOptions) => {
    const confirmed = await callDaemon(resolveControlSocket(options), { cmd: 'confirm' }, 'confirmed');
    terminal.stdout.write(`trial confirmed with ${confirmed.secondsLeft} s left: the gate stays\n`);
  });
}
