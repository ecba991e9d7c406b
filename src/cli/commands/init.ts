/**
 * `knock-port init`: a working minimal config in one command (random paths, the interface of
 * the default route, the TLS files found or a self-signed pair, a first user with keys stored
 * as digests), checked as `check` checks it, then the client bundle and the next steps.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { KnockUsageError } from '../../client/errors.js';
import { APP_NAME } from '../../config/schema.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { addExamples } from '../help.js';
import { DEFAULT_CONFIG_PATH, parsePort } from '../options.js';
import { defaultRouteInterface, findTlsPair, interfaceAddress, interfaceAddresses, makeSelfSignedPair, minimalConfigYaml } from '../provision/init.js';
import { printBundle } from '../provision/print-bundle.js';
import { addUser, writeProtected } from '../provision/user-file.js';
import { processTerminal, type Terminal } from '../terminal.js';
import { checkedTlsFor } from '../tls-options.js';

interface InitOptions {
  config: string;
  interface?: string;
  host?: string;
  app: string;
  port: number;
  user: string;
  totp?: boolean;
  force?: boolean;
}

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
    if (existsSync(opts.config) && opts.force !== true) throw new KnockUsageError(`${opts.config} exists; give --force to replace it, or -c another file`);
    const interfaceExt = opts.interface ?? defaultRouteInterface();
    if (interfaceExt === undefined) throw new KnockUsageError('no default route to take the external interface from: give --interface NAME');
    const host = opts.host ?? interfaceAddress(interfaceExt);
    mkdirSync(dirname(opts.config), { recursive: true, mode: 0o755 });
    const tls = findTlsPair(opts.config) ?? makeSelfSignedPair(opts.config, [...(opts.host ? [opts.host] : []), ...interfaceAddresses(interfaceExt)]);
    writeProtected(opts.config, minimalConfigYaml({ interfaceExt, tls, app: opts.app, port: opts.port }), opts.config);
    const { secrets, file, config } = addUser(
      { configPath: opts.config, name: opts.user, app: opts.app, totp: opts.totp === true, inConfig: false },
      { source: opts.config, apps: [{ name: opts.app, users: [] }] },
    );
    // What `check` checks: the interfaces of this host and the TLS pair as run loads it.
    requireInterfaces(config);
    checkedTlsFor(config, {});
    terminal.stderr.write(
      `wrote ${opts.config} (interface ${interfaceExt}, ${tls.selfSigned ? 'a new self-signed certificate' : 'the certificate'} ${tls.cert}) and ${file}; knock-port check passes\n`,
    );
    await printBundle(terminal, { config, app: opts.app, user: opts.user, secrets, ...(host ? { host } : {}) });
    terminal.stdout.write(nextSteps(opts));
  });
}

function nextSteps(opts: InitOptions): string {
  return `
Next steps:
  1. Review the rules:            knock-port rules -c ${opts.config}
  2. Keep a way back in: start with a trial that removes the gate unless confirmed,
                                  knock-port run -c ${opts.config} --trial 300
     knock from outside with the lines above, then: knock-port confirm
  3. Run it for good:             systemctl enable --now knock-port
  4. More users:                  knock-port user add NAME --app ${opts.app}
`;
}
