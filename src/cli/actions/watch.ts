/** `knock-port watch`'s work: live step-1 traffic judged until SIGINT or SIGTERM. */
import { openLiveCapture } from '../../capture/pcap-live.js';
import { formatDecisionJson, formatDecisionText, formatSummary } from '../../step1/format.js';
import { TrafficInspector } from '../../step1/traffic.js';
import type { ConfigOptions } from '../options.js';
import { loadConfigFromOptions } from '../resolve-options.js';
import { PrefilterJudge } from './replay-prefilter.js';

export async function runWatch(opts: ConfigOptions & { iface: string; json?: boolean }): Promise<void> {
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
}
