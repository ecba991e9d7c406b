/**
 * Help that teaches: each command's examples are data, shown at the end of its `--help` and
 * read again by the man page generator (cli/docs/), so both say the same.
 */
import type { Command } from 'commander';

/** One example: a command line and what it does. */
export interface Example {
  command: string;
  what: string;
}

const EXAMPLES = new WeakMap<Command, readonly Example[]>();

/** Adds `examples` to the command and to the end of its `--help`. */
export function addExamples(command: Command, examples: readonly Example[]): Command {
  EXAMPLES.set(command, examples);
  return command.addHelpText('after', `\nExamples:\n${examples.map(formatExample).join('\n')}\n`);
}

export function examplesOf(command: Command): readonly Example[] {
  return EXAMPLES.get(command) ?? [];
}

function formatExample({ command, what }: Example): string {
  return `  # ${what}\n  ${command}`;
}
