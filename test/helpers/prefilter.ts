/**
 * The kernel's own count of the step-1 data segments its prefilter dropped (payload not
 * starting with `POST <http_post_path> HTTP/1.`), read the way docs/manual/firewall.md tells an
 * operator to: the counters of the rules commented `knock-port step-1 prefilter`, both families.
 *
 *     nft list chain inet knockport step1
 *     iptables -t raw -L KNOCKPORT-STEP1 -v -x -n; ip6tables -t raw -L KNOCKPORT-STEP1 -v -x -n
 */
import { PREFILTER_COMMENT } from '../../src/firewall/plan.js';
import type { Netns } from './netns.js';

/** Which tool lists the rules: nft (nftables and VyOS layouts), iptables-nft or iptables-legacy. */
export type PrefilterTool = 'nft' | 'iptables' | 'iptables-legacy';

/**
 * Packets the prefilter rules in `ns` dropped so far, IPv4 and IPv6 together. Throws when no
 * such rule exists (no prefilter installed), so a test never reads a missing rule as zero.
 */
export function prefilterDrops(ns: Netns, tool: PrefilterTool, table = 'knockport'): number {
  let rules = 0;
  let sum = 0;
  if (tool === 'nft') {
    const text = ns.exec('nft', ['list', 'chain', 'inet', table, 'step1']);
    for (const line of text.split('\n').filter((l) => l.includes(PREFILTER_COMMENT))) {
      rules++;
      sum += Number(/counter packets (\d+)/.exec(line)?.[1] ?? NaN);
    }
  } else {
    for (const bin of tool === 'iptables' ? ['iptables', 'ip6tables'] : ['iptables-legacy', 'ip6tables-legacy']) {
      const text = ns.exec(bin, ['-w', '-t', 'raw', '-L', 'KNOCKPORT-STEP1', '-v', '-x', '-n']);
      for (const line of text.split('\n').filter((l) => l.includes(PREFILTER_COMMENT))) {
        rules++;
        sum += Number(line.trim().split(/\s+/)[0]);
      }
    }
  }
  if (rules === 0) throw new Error(`no rule commented "${PREFILTER_COMMENT}" (${tool}): the step-1 prefilter is not installed`);
  return sum;
}
