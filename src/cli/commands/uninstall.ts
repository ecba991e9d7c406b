import type { Command } from 'commander';
import { createFirewall } from '../../firewall/index.js';
import { addConfigOptions, loadConfigFromOptions } from '../options.js';
import { addIptablesVariantOption, type FirewallCommandOptions } from './rules.js';

export function registerUninstall(program: Command): void {
  addIptablesVariantOption(
    addConfigOptions(program.command('uninstall').description('remove every firewall rule and set knock-port installed')),
  ).action(async (opts: FirewallCommandOptions) => {
    const firewall = createFirewall(loadConfigFromOptions(opts), { iptablesVariant: opts.iptablesVariant });
    await firewall.uninstall();
    process.stdout.write(`removed knock-port's ${firewall.type} rules and sets; its protected ports are no longer filtered by knock-port\n`);
  });
}
