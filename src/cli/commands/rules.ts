/**
 * `knock-port rules`: prints the firewall rules the configured backend would install, so an
 * operator can review them before running the daemon; changes nothing.
 */
import type { Command } from 'commander';
import { addConfigOptions, addIptablesVariantOption, FIREWALL_OVERRIDES, type FirewallCommandOptions } from '../options.js';
import { addExamples } from '../help.js';

export function registerRules(program: Command): void {
  addExamples(
    addIptablesVariantOption(addConfigOptions(program.command('rules').description('print the firewall rules that would be installed'), FIREWALL_OVERRIDES)),
    [
      { command: 'knock-port rules -c /etc/knock-port/config.yaml', what: 'review the nftables rules before the first run' },
      { command: 'knock-port rules --firewall-type iptables --iptables-variant legacy', what: 'the same rules for iptables-legacy with ipset' },
    ],
  ).action(async (opts: FirewallCommandOptions) => {
    const { loadConfigFromOptions } = await import('../resolve-options.js');
    const config = loadConfigFromOptions(opts);
    const { chooseCapture, createFirewall } = await import('../../firewall/index.js');
    const firewall = createFirewall(config, { iptablesVariant: opts.iptablesVariant });
    const mode = config.global.capture;
    const { capture, reason } = chooseCapture(mode, mode === 'auto' ? await firewall.capabilities() : { nfqueue: true, nflog: true, notes: [] });
    const gate =
      config.global.gateMode === 'report'
        ? "; gate_mode report: nothing is dropped at the apps' ports, the rules commented 'knock-port would drop' count it"
        : '';
    process.stderr.write(`# ${firewall.type} backend, ${reason}${gate}\n`);
    process.stdout.write(firewall.render(capture));
  });
}
