/**
 * `knock-port init`: a working minimal config in one command (random paths, the interface of
 * the default route, the TLS files found or a self-signed pair, a first user with keys stored
 * as digests), checked as `check` checks it, then the client bundle and the next steps; the
 * work is in actions/init.ts.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { InitOptions } from '../actions/init.js';
import { APP_NAME } from '../../config/names.js';
import { addExamples } from '../help.js';
import { DEFAULT_CONFIG_PATH, parsePort } from '../options.js';
import { processTerminal, type Terminal } from '../terminal.js';

function parseAppName(value: string): string {
  if (!APP_NAME.test(value)) throw new InvalidArgumentError('expected 1-32 of A-Z a-z 0-9 _ -');
  return value;
}

export function registerInit(program: Command, terminal: Terminal = processTerminal()): void {
  const init = program
    .command('init')
    .description('write a working minimal config (random paths, a first user with keys as digests, TLS files), check it, and print the next steps')
    .option('-c, --config <file>', 'the config file to write', DEFAULT_CONFIG_PATH)
    .option('--interface <name>', 'external interface (default: the interface of the default route)')
    .option('--host <host>', "the gateway's name or address as clients reach it (default: an address of the interface)")
    .option('--app <name>', 'the first app to protect', parseAppName, 'ssh')
    .option('--port <port>', "the first app's port", parsePort, 22)
    .option('--user <name>', 'the first user', 'admin')
    .option('--totp', 'the first user also needs a TOTP code in step 2')
    .option('--force', 'replace an existing config file');
  addExamples(init, [
    { command: 'sudo knock-port init --host gw.example.net', what: 'protect ssh (port 22) on this gateway, with a first user admin' },
    { command: 'knock-port init -c ./gw.yaml --interface eth0 --app openvpn --port 1194 --user alice --totp', what: 'a config to try elsewhere first' },
  ]).action(async (opts: InitOptions) => {
    const { runInit } = await import('../actions/init.js');
    await runInit(opts, terminal);
  });
}
