/**
 * `knock-port watch`: captures live step-1 traffic with libpcap and prints what the daemon would
 * decide for each packet; a dry run that never touches the firewall.
 */
import type { Command } from 'commander';
import { openLiveCapture } from '../../capture/pcap-live.js';
import { formatDecisionJson, formatDecisionText, formatSummary } from '../../step1/format.js';
import { TrafficInspector } from '../../step1/traffic.js';
import { addConfigOptions, loadConfigFromOptions, type ConfigOptions } from '../options.js';
import { PrefilterJudge } from './replay-prefilter.js';
import { addExamples } from '../help.js';

export function registerWatch(program: Command): void {
  const watch = addConfigOptions(
    program
      .command('watch')
      .description('watch live step-1 traffic with libpcap and print what the daemon would decide, without touching the firewall')
      .requiredOption('--iface <name>', 'interface to capture on (e.g. the external interface)')
      .option('--json', 'one JSON object per line, as replay --json'),
    ['--http-port'],
  );
  addExamples(watch, [{ command: 'knock-port watch --iface eth0', what: 'see what the daemon would decide for each knock arriving on eth0' }]).action(
    async (opts: ConfigOptions & { iface: string; json?: boolean }) => {
      const config = loadConfigFromOptions(opts);
      const traffic = new TrafficInspector(config);
      const prefilter = new PrefilterJudge(config);
      const format = opts.json === true ? formatDecisionJson : formatDecisionText;
      // Both directions (IPv4 and IPv6): the SYN-ACKs the clients acknowledge come from the step-1 port.
      const capture = openLiveCapture(opts.iface, `tcp port ${config.global.step1Port}`, (linkType, frame, timeMs) => {
        const decision = traffic.feed(linkType, frame, timeMs);
        if (decision) process.stdout.write(`${format(timeMs, decision, prefilter.drops(linkType, frame))}\n`);
      });
      process.stderr.write(`watching step-1 traffic on ${opts.iface} port ${config.global.step1Port} (no firewall change); Ctrl-C to stop\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      capture.close();
      if (opts.json !== true) process.stderr.write(`${formatSummary(traffic.inspector.counters, traffic.skipped, prefilter.dropped)}\n`);
    },
  );
}
