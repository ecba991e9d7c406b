/**
 * `knock-port hash-key`: reads a key from stdin or a prompt that does not echo it, and prints the
 * `sha256:` form, so a config can hold digests instead of the keys themselves.
 */
import type { Command } from 'commander';
import { hashedKeyString } from '../../config/key-digest.js';
import { KnockUsageError } from '../../client/errors.js';
import { processTerminal, readAll, type Terminal } from '../terminal.js';
import { addExamples } from '../help.js';

/** The config refuses shorter keys; refuse them here too rather than print a useless hash. */
export const MIN_KEY_LENGTH = 10;

export function registerHashKey(program: Command, terminal: Terminal = processTerminal()): void {
  const hashKey = program.command('hash-key').description('read a key on stdin (not echoed on a terminal) and print its sha256: form for the config');
  addExamples(hashKey, [
    { command: 'knock-port hash-key < key.txt', what: 'print sha256:<64 hex digits> for the key in key.txt' },
    { command: 'openssl rand -hex 16 | tee key.txt | knock-port hash-key', what: 'make a key, keep it for the client, print its digest' },
  ]).action(async () => {
    const key = await readKey(terminal);
    if (key.length < MIN_KEY_LENGTH) throw new KnockUsageError(`the key has ${key.length} characters; use at least ${MIN_KEY_LENGTH}`);
    terminal.stdout.write(`${hashedKeyString(key)}\n`);
  });
}

async function readKey(terminal: Terminal): Promise<string> {
  if (terminal.stdinIsTTY) return terminal.ask('Key (not shown): ', { echo: false });
  const text = (await readAll(terminal.stdin)).replace(/\r?\n$/, '');
  if (/[\r\n]/.test(text)) throw new KnockUsageError('expected one key on one line on stdin');
  return text;
}
