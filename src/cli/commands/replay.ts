/**
 * `knock-port replay`: runs a pcap/pcapng capture through the step-1 inspector offline and
 * prints what the daemon would have decided for each packet, without touching the firewall.
 */
import type { Command } from 'commander';
import { readCaptureFile } from '../../capture/pcap-file.js';
import type { Config } from '../../config/types.js';
import { formatDecisionJson, formatDecisionText, formatSummary } from '../../step1/format.js';
import { TrafficInspector } from '../../step1/traffic.js';
import { addConfigOptions, loadConfigFromOptions, type ConfigOptions } from '../options.js';
import { PrefilterJudge } from './replay-prefilter.js';
import { addExamples } from '../help.js';

/**
 * Decision lines for every step-1 packet of a pcap/pcapng file, as the daemon would decide
 * with `config`, marking those the kernel prefilter would have dropped first; plain output ends
 * with a summary line.
 */
export function replayCapture(file: string, config: Config, json: boolean): string[] {
  const traffic = new TrafficInspector(config);
  const prefilter = new PrefilterJudge(config);
  const lines: string[] = [];
  for (const { linkType, frame, timeMs } of readCaptureFile(file)) {
    const decision = traffic.feed(linkType, frame, timeMs);
    if (!decision) continue;
    const dropped = prefilter.drops(linkType, frame);
    lines.push(json ? formatDecisionJson(timeMs, decision, dropped) : formatDecisionText(timeMs, decision, dropped));
  }
  if (!json) lines.push(formatSummary(traffic.inspector.counters, traffic.skipped, prefilter.dropped));
  return lines;
}

export function registerReplay(program: Command): void {
  const replay = addConfigOptions(
    program
      .command('replay')
      .description('replay a pcap/pcapng file through the step-1 inspector: one line per step-1 packet, as the daemon would decide')
      .argument('<file>', 'capture file (pcap or pcapng; Ethernet, raw IP, Linux SLL/SLL2)')
      .option('--json', 'one JSON object per line (time, src, sport, dst, dport, result, reason, app, user, prefilter)'),
    ['--http-port'],
  );
  addExamples(replay, [
    { command: 'tcpdump -i eth0 -w knocks.pcap tcp port 80; knock-port replay knocks.pcap', what: 'why was a knock refused? capture it, then replay it' },
    { command: 'knock-port replay --json knocks.pcapng | jq .reason', what: 'the reasons alone, for a script' },
  ]).action((file: string, opts: ConfigOptions & { json?: boolean }) => {
    const lines = replayCapture(file, loadConfigFromOptions(opts), opts.json === true);
    process.stdout.write(lines.length > 0 ? `${lines.join('\n')}\n` : '');
  });
}
