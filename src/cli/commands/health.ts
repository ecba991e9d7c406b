/** `knock-port health`: asks the running daemon over its control socket whether it is healthy. */
import type { Command } from 'commander';
import { ERROR_PREFIX, processTerminal, type Terminal } from '../terminal.js';
import { addControlSocketOptions, type ControlSocketOptions } from '../options.js';
import { formatClusterHealth, formatGateHealth, formatTrialHealth, formatXdpHealth } from '../../control/format.js';
import { ExitCode } from '../../client/exit-codes.js';
import { addExamples } from '../help.js';

/** Exit 0 when the daemon answers healthy; 1 when unhealthy or unreachable, saying why. */
export function registerHealth(program: Command, terminal: Terminal = processTerminal()): void {
  const health = addControlSocketOptions(
    program
      .command('health')
      .description('check that the running daemon answers and is healthy (exit 0), else exit 1')
      .option(
        '--json',
        'print the health report as JSON: {healthy, problems, warnings, tls} (and cluster when clustered, gate in report mode, trial while one waits for confirm)',
      ),
  );
  addExamples(health, [
    { command: 'knock-port health', what: 'is the daemon up and its gate in place? (exit 0 or 1)' },
    { command: 'knock-port health --json', what: 'the whole report, for monitoring' },
  ]).action(async (options: ControlSocketOptions & { json?: boolean }) => {
    const { askDaemon } = await import('../actions/control.js');
    const health = await askDaemon(options, { cmd: 'health' }, 'health');
    if (options.json === true) terminal.stdout.write(`${JSON.stringify(health, null, 2)}\n`);
    else if (health.healthy) terminal.stdout.write('healthy\n');
    else terminal.stderr.write(`unhealthy: ${health.problems.join('; ') || 'no reason given'}\n`);
    if (options.json !== true) for (const warning of health.warnings ?? []) terminal.stderr.write(`${ERROR_PREFIX}warning: ${warning}\n`);
    if (options.json !== true && health.cluster) terminal.stdout.write(formatClusterHealth(health.cluster));
    if (options.json !== true && health.gate) terminal.stdout.write(formatGateHealth(health.gate));
    if (options.json !== true && health.trial) terminal.stdout.write(formatTrialHealth(health.trial));
    if (options.json !== true && health.xdp) terminal.stdout.write(formatXdpHealth(health.xdp));
    if (!health.healthy) terminal.setExitCode(ExitCode.failed);
  });
}
