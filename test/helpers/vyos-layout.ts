/**
 * What a VyOS commit leaves in nftables, recreated in a namespace: its `vyos_filter` tables
 * (ip and ip6) deleted and rebuilt, with input and forward filters that accept established
 * traffic and ICMP (neighbour discovery), then apply their default action (`drop` by default,
 * as on a hardened VyOS router).
 */
import type { Netns } from './netns.js';

export function vyosCommit(gw: Netns, defaultAction: 'accept' | 'drop' = 'drop'): void {
  for (const [family, v6] of [
    ['ip', ''],
    ['ip6', 'IPV6_'],
  ] as const) {
    gw.tryExec('nft', ['delete', 'table', family, 'vyos_filter']);
    gw.exec(
      'nft',
      ['-f', '-'],
      [
        `table ${family} vyos_filter {`,
        `  chain VYOS_${v6}INPUT_filter {\n    type filter hook input priority filter; policy accept;`,
        '    ct state established,related counter accept comment "state-policy"',
        '    iifname "lo" counter accept',
        '    meta l4proto { icmp, ipv6-icmp } counter accept comment "rule 20"',
        `    counter ${defaultAction} comment "default-action ${defaultAction}"\n  }`,
        `  chain VYOS_${v6}FORWARD_filter {\n    type filter hook forward priority filter; policy accept;`,
        '    ct state established,related counter accept comment "state-policy"',
        `    counter ${defaultAction} comment "default-action ${defaultAction}"\n  }`,
        '}',
      ].join('\n'),
    );
  }
}
