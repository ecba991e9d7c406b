import { InvalidArgumentError, Option, type Command } from 'commander';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/types.js';
import { LOG_LEVELS } from '../log.js';

/** Default config location, as an operator would install it. */
export const DEFAULT_CONFIG_PATH = '/etc/knock-port/config.yaml';

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new InvalidArgumentError('expected a port number 1-65535');
  return port;
}

/** Flags shared by every command that reads the config (names compatible with the original). */
export function addConfigOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'config file (YAML)', DEFAULT_CONFIG_PATH)
    .addOption(new Option('--firewall-type <type>', 'override global.firewall_type').choices(['nftables', 'iptables', 'vyos']))
    .option('--http-port <port>', 'override global.http_port (step 1)', parsePort)
    .option('--https-port <port>', 'override global.https_port (step 2)', parsePort)
    .addOption(new Option('--capture <mode>', 'override global.capture').choices(['auto', 'nfqueue', 'nflog']))
    .option('--state-dir <dir>', 'override global.state_dir')
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'));
}

export interface ConfigOptions {
  config: string;
  firewallType?: 'nftables' | 'iptables' | 'vyos';
  httpPort?: number;
  httpsPort?: number;
  capture?: 'auto' | 'nfqueue' | 'nflog';
  stateDir?: string;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** The config named by `-c`, with the command-line overrides applied; throws ConfigError listing every problem. */
export function loadConfigFromOptions(opts: ConfigOptions): Config {
  return loadConfigFile(opts.config, {
    ...(opts.firewallType ? { firewallType: opts.firewallType } : {}),
    ...(opts.httpPort ? { httpPort: opts.httpPort } : {}),
    ...(opts.httpsPort ? { httpsPort: opts.httpsPort } : {}),
    ...(opts.capture ? { capture: opts.capture } : {}),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
  });
}
