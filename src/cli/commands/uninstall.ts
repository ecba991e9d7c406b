/**
 * `knock-port uninstall`: removes every rule and set knock-port installed, as the config says
 * (`-c`) or as the daemon recorded in its state directory when it installed them
 * (`--from-state`, which needs no valid config: the package's removal uses it). The work, and
 * the refusal while a daemon runs, are in actions/uninstall.ts.
 */
import { Option, type Command } from 'commander';
import type { FirewallFactory, UninstallOptions } from '../actions/uninstall.js';
import { processTerminal, type Terminal } from '../terminal.js';
import { addConfigOptions, addIptablesVariantOption, FIREWALL_OVERRIDES } from '../options.js';
import { addExamples } from '../help.js';

/** `--from-state` replaces the config and every flag that would change what is removed. */
const FROM_STATE_CONFLICTS = ['config', 'firewallType', 'httpPort', 'httpsPort', 'capture', 'wafHttpsPort', 'wafTrustedIps', 'iptablesVariant'];

/** `firewallFor`: tests pass a backend that touches no firewall; by default the configured one. */
export function registerUninstall(program: Command, terminal: Terminal = processTerminal(), firewallFor?: FirewallFactory): void {
  const uninstall = addIptablesVariantOption(
    addConfigOptions(
      program.command('uninstall').description('remove every firewall rule and set knock-port installed (stop the daemon first)'),
      FIREWALL_OVERRIDES,
    ),
  ).addOption(
    new Option(
      '--from-state <dir>',
      "remove what the daemon recorded as installed in its state directory (state_dir, e.g. /var/lib/knock-port) instead of what -c's config says; needs no valid config",
    ).conflicts(FROM_STATE_CONFLICTS),
  );
  addExamples(uninstall, [
    { command: 'systemctl stop knock-port && knock-port uninstall', what: 'open every protected port again, as the config says' },
    { command: 'knock-port uninstall --from-state /var/lib/knock-port', what: 'remove what the daemon recorded, with no valid config' },
  ]).action(async (opts: UninstallOptions) => {
    const { runUninstall } = await import('../actions/uninstall.js');
    await runUninstall(opts, terminal, firewallFor);
  });
}
