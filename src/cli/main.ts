/**
 * Entry point of the `knock-port` command: builds the commander program and, when run as the
 * binary, parses argv and turns an uncaught error into a one-line message and exit code 1.
 */
import { Command, CommanderError } from 'commander';
import { describeError } from '../shared/errors.js';
import { registerCommands } from './commands/index.js';

/** Builds the `knock-port` program; exported so tests can run commands in-process. */
export function buildProgram(): Command {
  const program = new Command('knock-port')
    .description('Two-step port knocking for Linux gateways (stealth step-1 knock, HTTPS step 2, kernel-side grants).')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();
  registerCommands(program);
  return program;
}

const isEntryPoint = process.argv[1] !== undefined && /knock-port(\.js)?$|cli[\\/]main\.js$/.test(process.argv[1]);

if (isEntryPoint) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      if (err instanceof CommanderError) process.exit(err.exitCode);
      process.stderr.write(`knock-port: ${describeError(err)}\n`);
      process.exit(1);
    });
}
