/** `knock-port sessions`: lists the running daemon's live grants, as a table or JSON. */
import type { Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, type ControlSocketOptions } from '../options.js';
import { formatSessionsTable } from '../../control/format.js';
import { addExamples } from '../help.js';

export function registerSessions(program: Command, terminal: Terminal = processTerminal()): void {
  const sessions = addControlSocketOptions(
    program
      .command('sessions')
      .description('list live grants of the running daemon: ip, app, user, step, seconds left (via the control socket)')
      .option('--json', 'print JSON instead of a table'),
  );
  addExamples(sessions, [
    { command: 'knock-port sessions', what: 'who holds a grant now' },
    { command: 'knock-port sessions --json | jq \'.[] | select(.app == "ssh")\'', what: "the ssh app's grants, for a script" },
  ]).action(async (options: ControlSocketOptions & { json?: boolean }) => {
    const { askDaemon } = await import('../actions/control.js');
    const sessions = await askDaemon(options, { cmd: 'sessions' }, 'sessions');
    terminal.stdout.write(options.json ? `${JSON.stringify(sessions, null, 2)}\n` : formatSessionsTable(sessions));
  });
}
