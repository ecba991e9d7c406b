/**
 * What the shared flags (options.ts) resolve to when a command runs: the config file with its
 * overrides applied, and the control socket of the running daemon.
 */
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/types.js';
import { DEFAULT_CONTROL_SOCKET, type ConfigOptions, type ControlSocketOptions } from './options.js';

/** The config named by `-c`, with the command-line overrides applied; throws ConfigError listing every problem. */
export function loadConfigFromOptions(opts: ConfigOptions): Config {
  return loadConfigFile(opts.config, {
    ...(opts.firewallType ? { firewallType: opts.firewallType } : {}),
    ...(opts.httpPort ? { step1Port: opts.httpPort } : {}),
    ...(opts.httpsPort ? { step2Port: opts.httpsPort } : {}),
    ...(opts.capture ? { capture: opts.capture } : {}),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    ...(opts.wafHttpsPort ? { step2PublicPort: opts.wafHttpsPort } : {}),
    ...(opts.wafTrustedIps ? { trustedProxies: opts.wafTrustedIps } : {}),
  });
}

/** `--socket`, else `control_socket` of `-c`'s config, else the default path. */
export function resolveControlSocket(options: ControlSocketOptions): string {
  if (options.socket !== undefined) return options.socket;
  if (options.config !== undefined) return loadConfigFile(options.config).global.controlSocket;
  return DEFAULT_CONTROL_SOCKET;
}
