import { Option, type Command } from 'commander';
import { chooseCapture, createFirewall, type IptablesVariant } from '../../firewall/index.js';
import { addConfigOptions, loadConfigFromOptions, type ConfigOptions } from '../options.js';

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

export function registerRules(program: Command): void {
  addIptablesVariantOption(addConfigOptions(program.command('rules').description('print the firewall rules that would be installed'))).action(
    async (opts: FirewallCommandOptions) => {
      const config = loadConfigFromOptions(opts);
      const firewall = createFirewall(config, { iptablesVariant: opts.iptablesVariant });
      const mode = config.global.capture;
      const { capture, reason } = chooseCapture(mode, mode === 'auto' ? await firewall.capabilities() : { nfqueue: true, nflog: true, notes: [] });
      process.stderr.write(`# ${firewall.type} backend, ${reason}\n`);
      process.stdout.write(firewall.render(capture));
    },
  );
}
