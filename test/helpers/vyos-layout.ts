/**
 * What a VyOS commit leaves in nftables, recreated in a namespace: its `vyos_filter` tables
 * (ip and ip6) rebuilt, with the named chains knock-port fills empty but jumped to from the
 * input and forward filters.
 */
import type { Netns } from './netns.js';

export function vyosCommit(gw: Netns): void {
  for (const [family, v6] of [['ip', ''], ['ip6', 'IPV6_']] as const) {
    const names = family === 'ip' ? 'NAME_' : 'NAME6_';
    gw.tryExec('nft', ['delete', 'table', family, 'vyos_filter']);
    gw.exec('nft', ['-f', '-'], [
      `table ${family} vyos_filter {`,
      `  chain ${names}IN-KnockPort {\n    counter continue comment "IN-KnockPort default-action continue"\n  }`,
      `  chain ${names}FWD-KnockPort {\n    counter continue comment "FWD-KnockPort default-action continue"\n  }`,
      `  chain VYOS_${v6}INPUT_filter {\n    type filter hook input priority filter; policy accept;\n    counter jump ${names}IN-KnockPort\n  }`,
      `  chain VYOS_${v6}FORWARD_filter {\n    type filter hook forward priority filter; policy accept;\n    counter jump ${names}FWD-KnockPort\n  }`,
      '}',
    ].join('\n'));
  }
}
