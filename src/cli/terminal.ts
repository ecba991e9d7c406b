/**
 * The process's streams, environment, prompts and exit code, as the user-facing commands use
 * them, so that tests can drive those commands with a fake terminal.
 */
import { createInterface } from 'node:readline/promises';
import type { ReadStream } from 'node:tty';
import { PromptCancelledError } from '../client/errors.js';

/** How every command's errors and warnings start (commander's own `error: ` included). */
export const ERROR_PREFIX = 'knock-port: ';

/**
 * What a user-facing command needs from the process: streams, environment, a way to ask a
 * question and to set the exit code. Commands take one so that tests can drive them.
 */
export interface Terminal {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdinIsTTY: boolean;
  readonly stdoutIsTTY: boolean;
  readonly env: NodeJS.ProcessEnv;
  /** Asks on stderr and reads one line from the terminal; `echo: false` hides what is typed. */
  ask(question: string, options: { echo: boolean }): Promise<string>;
  setExitCode(code: number): void;
}

export function processTerminal(): Terminal {
  return {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    get stdinIsTTY() {
      return process.stdin.isTTY === true;
    },
    get stdoutIsTTY() {
      return process.stdout.isTTY === true;
    },
    env: process.env,
    ask: (question, { echo }) => (echo ? askWithEcho(question) : askWithoutEcho(question, process.stdin, process.stderr)),
    setExitCode: (code) => {
      process.exitCode = code;
    },
  };
}

/** All of stdin as text (for piped input). */
export async function readAll(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function askWithEcho(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Reads one line in raw mode so nothing typed is echoed; Ctrl-C or Ctrl-D cancels. */
function askWithoutEcho(question: string, input: ReadStream, output: NodeJS.WritableStream): Promise<string> {
  output.write(question);
  return new Promise((resolve, reject) => {
    let line = '';
    const finish = (outcome: () => void): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      output.write('\n');
      outcome();
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n') return finish(() => resolve(line));
        if (ch === '\u0003' || ch === '\u0004') return finish(() => reject(new PromptCancelledError()));
        if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
        else line += ch;
      }
    };
    input.setRawMode(true);
    input.resume();
    input.on('data', onData);
  });
}
