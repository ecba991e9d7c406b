/**
 * `knock-port user add`: a new user of an app, with fresh keys stored as digests (in
 * users.d/NAME.yaml, or the config itself) and a client bundle printed once.
 */
import type { Command } from 'commander';
import { addExamples } from '../help.js';
import { DEFAULT_CONFIG_PATH, loadConfigFromOptions } from '../options.js';
import { printBundle } from '../provision/print-bundle.js';
import { addUser } from '../provision/user-file.js';
import { processTerminal, type Terminal } from '../terminal.js';

interface UserAddOptions {
  config: string;
  app: string;
  totp?: boolean;
  inConfig?: boolean;
  host?: string;
}

export function registerUser(program: Command, terminal: Terminal = processTerminal()): void {
  const user = program.command('user').description("add users: fresh keys stored as digests, and the client's bundle printed once");
  const add = user
    .command('add')
    .description(
      'add a user to an app: keys as digests in users.d/NAME.yaml, then print the client bundle (key file, curl lines, phone recipes, TOTP QR code) once',
    )
    .argument('<name>', 'user name: a letter or digit then up to 63 of A-Z a-z 0-9 _ . @ -')
    .requiredOption('--app <name>', 'the app (a section of the config) the user may open')
    .option('--totp', 'also require a TOTP code in step 2: prints the secret as a QR code to scan')
    .option('--in-config', 'write the user into the config file itself instead of users.d/NAME.yaml')
    .option('--host <host>', 'the gateway name or address clients use, for the bundle (default: an address of interface_ext)')
    .option('-c, --config <file>', 'config file (YAML)', DEFAULT_CONFIG_PATH);
  addExamples(add, [
    {
      command: 'knock-port user add alice --app ssh --totp --host gw.example.net',
      what: "alice may open ssh with a key and a TOTP code; send her the bundle's key file",
    },
    { command: 'knock-port user add backup --app rsync --in-config', what: 'a user kept in config.yaml itself' },
  ]).action(async (name: string, opts: UserAddOptions) => {
    const config = loadConfigFromOptions({ config: opts.config });
    const added = addUser({ configPath: opts.config, name, app: opts.app, totp: opts.totp === true, inConfig: opts.inConfig === true }, config);
    terminal.stderr.write(`added ${name} to app ${opts.app} in ${added.file}; apply it: systemctl reload knock-port\n`);
    await printBundle(terminal, { config: added.config, app: opts.app, user: name, secrets: added.secrets, ...(opts.host ? { host: opts.host } : {}) });
  });
}
