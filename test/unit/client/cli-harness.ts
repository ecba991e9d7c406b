import { Readable, Writable } from 'node:stream';
import { Command } from 'commander';
import { configureProgram, runProgram } from '../../../src/cli/main.js';
import type { Terminal } from '../../../src/cli/terminal.js';

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Questions asked on the (fake) terminal. */
  asked: string[];
}

export interface CliInput {
  stdin?: string;
  stdinIsTTY?: boolean;
  stdoutIsTTY?: boolean;
  env?: NodeJS.ProcessEnv;
  /** What the user types at each prompt, in order. */
  answers?: string[];
}

type Register = (program: Command, terminal: Terminal) => void;

/**
 * Runs one command as `knock-port <args>` would, in-process, with a fake terminal and the real
 * entry point's settings and error handling: exit codes as it produces them (2 for a usage
 * error, the command's own, or 1 for a thrown error with its message on stderr).
 */
export async function runCli(register: Register, args: string[], input: CliInput = {}): Promise<CliRun> {
  const stdout = collector();
  const stderr = collector();
  const asked: string[] = [];
  const answers = [...(input.answers ?? [])];
  let exitCode = 0;
  const terminal: Terminal = {
    stdin: Readable.from([Buffer.from(input.stdin ?? '')]),
    stdout: stdout.stream,
    stderr: stderr.stream,
    stdinIsTTY: input.stdinIsTTY ?? false,
    stdoutIsTTY: input.stdoutIsTTY ?? false,
    env: input.env ?? {},
    ask: async (question) => {
      asked.push(question);
      const answer = answers.shift();
      if (answer === undefined) throw new Error(`unexpected prompt: ${question}`);
      return answer;
    },
    setExitCode: (code) => {
      exitCode = code;
    },
  };
  const program = configureProgram(new Command('knock-port'), terminal);
  register(program, terminal);
  const failed = await runProgram(program, args, terminal, 'user');
  if (failed !== undefined) exitCode = failed;
  return { exitCode, stdout: stdout.text(), stderr: stderr.text(), asked };
}

/** A stream that keeps what is written, synchronously, so it can be read right after. */
function collector(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}
