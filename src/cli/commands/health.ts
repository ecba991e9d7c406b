/** `knock-port health`: asks the running daemon over its control socket whether it is healthy. */
import type { Command } from 'commander';
import { processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, resolveControlSocket, type ControlSocketOptions } from '../options.js';
import { callDaemon } from '../../control/client.js';

/** Exit 0 when the daemon answers healthy; 1 when unhealthy or unreachable, saying why. */
export function registerHealth(program: Command, terminal: Terminal = processTerminal()): void {
  addControlSocketOptions(program.command('health').description('check that the running daemon answers and is healthy (exit 0), else exit 1')).action(
    async (options: ControlSocketOptions) => {
      const health = await callDaemon(resolveControlSocket(options), { cmd: 'health' }, 'health');
      if (health.healthy) {
        terminal.stdout.write('healthy\n');
        return;
      }
      terminal.stderr.write(`unhealthy: ${health.problems.join('; ') || 'no reason given'}\n`);
      terminal.setExitCode(1);
    },
  );
}
