/**
 * Command-line flags shared by several commands: the config file and its overrides (flag names
 * compatible with the original tool), the log level, the iptables variant, and finding the
 * control socket. Each command takes only the flags that change what it does. Building the
 * options loads nothing heavy (`--help` and the man page generator build them all); what the
 * flags resolve to when a command runs is in resolve-options.ts.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { IptablesVariant } from '../firewall/index.js';
import { parseNetwork, Refusal } from '../config/values.js';
import { LOG_LEVELS, LOG_TIMES, type LogTime } from '../shared/log-options.js';

/** Default config location, as an operator would install it. */
export const DEFAULT_CONFIG_PATH = '/etc/knock-port/config.yaml';

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new InvalidArgumentError('expected a port number 1-65535');
  return port;
}

/** `--waf-trusted-ips 127.0.0.1,10.0.0.0/8`: each entry checked as `trusted_proxies` entries are. */
export function parseTrustedIps(value: string): string[] {
  const networks = value
    .split(',')
    .filter((entry) => entry.trim() !== '')
    .map(parseNetwork);
  const refusal = networks.find((entry): entry is Refusal => entry instanceof Refusal);
  if (refusal) throw new InvalidArgumentError(refusal.message);
  if (networks.length === 0) throw new InvalidArgumentError('expected a comma-separated list of IPs or networks, e.g. 127.0.0.1');
  return networks as string[];
}

/** The original's --waf-http-port: there is no HTTP server that a proxy could forward step 1 to. */
function refuseWafHttpPort(): never {
  throw new InvalidArgumentError(
    'not supported: step 1 is read from packets on http_port itself and cannot sit behind a proxy; keep the proxy off that port and drop this flag (--waf-https-port and --waf-trusted-ips are supported)',
  );
}

/** The command-line overrides of config keys; each command offers those that change what it does. */
export type ConfigOverride = '--firewall-type' | '--http-port' | '--https-port' | '--capture' | '--state-dir' | '--waf-https-port' | '--waf-trusted-ips';

/** Every override: what `run` (the daemon) accepts. */
export const ALL_OVERRIDES: readonly ConfigOverride[] = [
  '--firewall-type',
  '--http-port',
  '--https-port',
  '--capture',
  '--state-dir',
  '--waf-https-port',
  '--waf-trusted-ips',
];

/** What the firewall rules depend on: every override but the state directory. */
export const FIREWALL_OVERRIDES: readonly ConfigOverride[] = ALL_OVERRIDES.filter((flag) => flag !== '--state-dir');

const OVERRIDE_OPTIONS: Record<ConfigOverride, () => Option> = {
  '--firewall-type': () => new Option('--firewall-type <type>', 'override global.firewall_type').choices(['nftables', 'iptables', 'vyos']),
  '--http-port': () => new Option('--http-port <port>', 'override global.http_port (step 1)').argParser(parsePort),
  '--https-port': () => new Option('--https-port <port>', 'override global.https_port (step 2)').argParser(parsePort),
  '--capture': () => new Option('--capture <mode>', 'override global.capture').choices(['auto', 'nfqueue', 'nflog']),
  '--state-dir': () => new Option('--state-dir <dir>', 'override global.state_dir'),
  '--waf-https-port': () =>
    new Option('--waf-https-port <port>', 'override global.https_public_port (a reverse proxy serves step 2 there)').argParser(parsePort),
  '--waf-trusted-ips': () =>
    new Option('--waf-trusted-ips <list>', 'override global.trusted_proxies (comma-separated IPs or networks)').argParser(parseTrustedIps),
};

/**
 * `-c FILE` and the overrides (names compatible with the original) that change what this command
 * does; a flag that would do nothing for it is not offered.
 */
export function addConfigOptions(command: Command, overrides: readonly ConfigOverride[] = ALL_OVERRIDES): Command {
  command.option('-c, --config <file>', 'config file (YAML)', DEFAULT_CONFIG_PATH);
  for (const flag of overrides) command.addOption(OVERRIDE_OPTIONS[flag]());
  // The original's --waf-http-port: refused with the reason, wherever its sibling is offered.
  if (overrides.includes('--waf-https-port')) command.addOption(new Option('--waf-http-port <port>').hideHelp().argParser(refuseWafHttpPort));
  return command;
}

/** `--log-level` and `--log-time`, for the commands that log (the daemon). */
export function addLogLevelOption(command: Command): Command {
  return command
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .addOption(new Option('--log-time <format>', 'the "time" field: epoch milliseconds or ISO 8601 (UTC)').choices([...LOG_TIMES]).default('epoch'));
}

export interface LogLevelOptions {
  logLevel: (typeof LOG_LEVELS)[number];
  logTime: LogTime;
}

/** The parsed flags, named as the option parser names them after `--http-port`, `--waf-https-port`, .... */
export interface ConfigOptions {
  config: string;
  firewallType?: 'nftables' | 'iptables' | 'vyos';
  httpPort?: number;
  httpsPort?: number;
  capture?: 'auto' | 'nfqueue' | 'nflog';
  stateDir?: string;
  wafHttpsPort?: number;
  wafTrustedIps?: string[];
}

export interface FirewallCommandOptions extends ConfigOptions {
  iptablesVariant: IptablesVariant;
}

/** `--iptables-variant`, shared by the commands that build the firewall backend. */
export function addIptablesVariantOption(command: Command): Command {
  return command.addOption(
    new Option('--iptables-variant <variant>', 'iptables binaries: system default, iptables-nft or iptables-legacy')
      .choices(['default', 'nft', 'legacy'])
      .default('default'),
  );
}

/** Where the daemon listens when neither --socket nor -c says otherwise. */
export const DEFAULT_CONTROL_SOCKET = '/run/knock-port/control.sock';

export interface ControlSocketOptions {
  socket?: string;
  config?: string;
}

/** `--socket PATH` and `-c FILE` (its `control_socket`), shared by sessions, revoke and health. */
export function addControlSocketOptions(command: Command): Command {
  return command
    .option('--socket <path>', `control socket of the running daemon (default: control_socket from -c, else ${DEFAULT_CONTROL_SOCKET})`)
    .option('-c, --config <file>', 'config file whose control_socket to use');
}

export interface TlsPathOptions {
  cert?: string;
  key?: string;
}

/** `--cert` and `--key` of `run` and `check`; tls-options.ts finds and checks the files. */
export function addTlsOptions(command: Command, purpose: string): Command {
  return command
    .option('--cert <file>', `TLS certificate (PEM, chain allowed) of the step-2 HTTPS port, ${purpose} (overrides global.tls_cert)`)
    .option('--key <file>', `TLS private key (PEM) of the step-2 HTTPS port, ${purpose} (overrides global.tls_key)`);
}
