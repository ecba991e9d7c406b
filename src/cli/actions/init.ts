/** `knock-port init`'s work: the config, the TLS pair and the first user written, checked, and the bundle printed. */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { KnockUsageError } from '../../client/errors.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { defaultRouteInterface, findTlsPair, interfaceAddress, interfaceAddresses, makeSelfSignedPair, minimalConfigYaml } from '../provision/init.js';
import { printBundle } from '../provision/print-bundle.js';
import { addUser, writeProtected } from '../provision/user-file.js';
import type { Terminal } from '../terminal.js';
import { checkedTlsFor } from '../tls-options.js';

export interface InitOptions {
  config: string;
  interface?: string;
  host?: string;
  app: string;
  port: number;
  user: string;
  totp?: boolean;
  force?: boolean;
}

export async function runInit(opts: InitOptions, terminal: Terminal): Promise<void> {
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
