/**
 * Entry point of the `knock-port` command: builds the commander program and, when run as the
 * binary, parses argv. Every command reports errors the same way: one line starting with
 * `knock-port: `, exit code 2 for a usage error (commander's convention) and 1 for a failure.
 */
import { packageVersion } from '../shared/version.js';
import { Command, CommanderError } from 'commander';
import { errorFields, KnockPortError } from '../shared/errors.js';
import { KnockUsageError } from '../client/errors.js';
import { registerCommands } from './commands/index.js';
import { ExitCode } from '../client/exit-codes.js';
import { ERROR_PREFIX, processTerminal, type Terminal } from './terminal.js';

/**
 * Settings every command inherits, so set before any is added: errors thrown instead of exiting
 * (runProgram picks the code), output on the terminal, and commander's `error: ` prefix replaced
 * by the one every command uses.
 */
export function configureProgram(program: Command, terminal: Terminal): Command {
  return program
    .exitOverride()
    .configureOutput({
      writeOut: (text) => terminal.stdout.write(text),
      writeErr: (text) => terminal.stderr.write(text),
      outputError: (text, write) => write(text.replace(/^error: /, ERROR_PREFIX)),
    })
    .showHelpAfterError('(run with --help for usage)');
}

/** Builds the `knock-port` program; exported so tests can run commands in-process. */
export function buildProgram(terminal: Terminal = processTerminal()): Command {
  const program = configureProgram(new Command('knock-port'), terminal)
    .description('Two-step port knocking for Linux gateways (stealth step-1 knock, HTTPS step 2, kernel-side grants).')
    .version(packageVersion())
    .enablePositionalOptions();
  registerCommands(program, terminal);
  return program;
}

/**
 * Runs a program set up by configureProgram. Returns the exit code when the command line was
 * refused (2; commander has printed why; 0 for --help and --version) or the command threw (1, or
 * 2 for a usage error, printed here); undefined when the command ran, having set its own code.
 */
export async function runProgram(program: Command, args: readonly string[], terminal: Terminal, from: 'node' | 'user' = 'node'): Promise<number | undefined> {
  try {
    await program.parseAsync(args, { from });
    return undefined;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    // An operator error is its one-line message; anything else is a bug, shown with where it was thrown.
    const { err: message, stack } = errorFields(err);
    terminal.stderr.write(`${ERROR_PREFIX}${stack ?? message}\n`);
    if (err instanceof KnockUsageError) return ExitCode.usage;
    // An error with a code of its own (a TLS file, a missing capability: see SetupExitCode).
    return (err instanceof KnockPortError ? err.exitCode : undefined) ?? ExitCode.failed;
  }
}

const isEntryPoint = process.argv[1] !== undefined && /knock-port(\.js)?$|cli[\\/]main\.js$/.test(process.argv[1]);

if (isEntryPoint) {
  const terminal = processTerminal();
  void runProgram(buildProgram(terminal), process.argv, terminal).then((code) => {
    // Exit now on an error: a command that failed half-way may have left handles open.
    if (code !== undefined) process.exit(code);
  });
}
