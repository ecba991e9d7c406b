/**
 * `knock-port user add` and `user remove`: a user of an app with fresh keys stored as digests
 * (in users.d/NAME.yaml, or the config itself) and a client bundle printed once; a user removed
 * from wherever it is defined, its live grants revoked by the daemon's reload. The work is in
 * actions/user.ts.
 */
import type { Command } from 'commander';
import type { UserAddOptions, UserRemoveOptions } from '../actions/user.js';
import { addExamples } from '../help.js';
import { DEFAULT_CONFIG_PATH } from '../options.js';
import { processTerminal, type Terminal } from '../terminal.js';

export function registerUser(program: Command, terminal: Terminal = processTerminal()): void {
  const user = program
    .command('user')
    .description("add and remove users: fresh keys stored as digests and the client's bundle printed once; removal revokes live grants");
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
    const { addUserCommand } = await import('../actions/user.js');
    await addUserCommand(name, opts, terminal);
  });

  const remove = user
    .command('remove')
    .description(
      "remove a user (its users.d/NAME.yaml, or its entries in the config or a drop-in), then reload the running daemon, which revokes the user's live grants",
    )
    .argument('<name>', 'the user to remove')
    .option('--app <name>', "only this app's entry (default: the user's entries in every app)")
    .option('-c, --config <file>', 'config file (YAML)', DEFAULT_CONFIG_PATH)
    .option('--socket <path>', 'control socket of the running daemon (default: control_socket of the config)');
  addExamples(remove, [
    { command: 'knock-port user remove alice', what: "alice's keys no longer knock, and her open grants close now" },
    { command: 'knock-port user remove backup --app rsync', what: 'backup keeps its other apps' },
  ]).action(async (name: string, opts: UserRemoveOptions) => {
    const { removeUserCommand } = await import('../actions/user.js');
    await removeUserCommand(name, opts, terminal);
  });
}
