/**
 * `knock-port replay`: runs a pcap/pcapng capture through the step-1 inspector offline and
 * prints what the daemon would have decided for each packet, without touching the firewall
 * (the work is in actions/replay.ts).
 */
import type { Command } from 'commander';
import { addConfigOptions, type ConfigOptions } from '../options.js';
import { addExamples } from '../help.js';

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
  ]).action(async (file: string, opts: ConfigOptions & { json?: boolean }) => {
    const { runReplay } = await import('../actions/replay.js');
    runReplay(file, opts);
  });
}
