/**
 * `knock-port watch`: captures live step-1 traffic with libpcap and prints what the daemon would
 * decide for each packet; a dry run that never touches the firewall (the work is in actions/watch.ts).
 */
import type { Command } from 'commander';
import { addConfigOptions, type ConfigOptions } from '../options.js';
import { addExamples } from '../help.js';

export function registerWatch(program: Command): void {
  const watch = addConfigOptions(
    program
      .command('watch')
      .description('watch live step-1 traffic with libpcap and print what the daemon would decide, without touching the firewall')
      .requiredOption('--iface <name>', 'interface to capture on (e.g. the external interface)')
      .option('--json', 'one JSON object per line, as replay --json'),
    ['--http-port'],
  );
  addExamples(watch, [{ command: 'knock-port watch --iface eth0', what: 'see what the daemon would decide for each knock arriving on eth0' }]).action(
    async (opts: ConfigOptions & { iface: string; json?: boolean }) => {
      const { runWatch } = await import('../actions/watch.js');
      await runWatch(opts);
    },
  );
}
