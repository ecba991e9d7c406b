/**
 * `knock-port demo`: runs the whole knock, step by step, in throwaway network namespaces on
 * this host (root); the work is in demo/run-demo.ts.
 */
import type { Command } from 'commander';
import { addExamples } from '../help.js';

export function registerDemo(program: Command): void {
  const demo = program
    .command('demo')
    .description('show knock-port working, step by step, in a throwaway network of namespaces on this host (root)')
    .option('--keep', 'leave the demo network and daemon running after the steps, until Ctrl-C')
    .option('-q, --quiet', 'print one line per step instead of every command and its output')
    .addHelpText(
      'after',
      '\nNeeds root and the ip, nft, curl and openssl commands. Everything it makes (three network\nnamespaces, a config with random secrets, a self-signed certificate) is removed when it ends.\nExit code 0 when every step behaved as expected.',
    );
  addExamples(demo, [
    { command: 'sudo knock-port demo', what: 'watch a knock open a port, step by step' },
    { command: 'sudo knock-port demo --keep', what: 'then try it yourself; Ctrl-C removes everything' },
  ]).action(async (opts: { keep?: boolean; quiet?: boolean }) => {
    const { runDemo } = await import('../../demo/run-demo.js');
    await runDemo({ keep: opts.keep === true, quiet: opts.quiet === true });
  });
}
