/** `knock-port replay`'s work: a capture file through the step-1 inspector, offline. */
import { readCaptureFile } from '../../capture/pcap-file.js';
import type { Config } from '../../config/types.js';
import { formatDecisionJson, formatDecisionText, formatSummary } from '../../step1/format.js';
import { TrafficInspector } from '../../step1/traffic.js';
import type { ConfigOptions } from '../options.js';
import { loadConfigFromOptions } from '../resolve-options.js';
import { PrefilterJudge } from './replay-prefilter.js';

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

export function runReplay(file: string, opts: ConfigOptions & { json?: boolean }): void {
  const lines = replayCapture(file, loadConfigFromOptions(opts), opts.json === true);
  process.stdout.write(lines.length > 0 ? `${lines.join('\n')}\n` : '');
}
