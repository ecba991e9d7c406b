/**
 * An operator's lifeline (`always_allow`): networks that reach protected ports with no knock,
 * on the nftables and iptables backends, IPv4 and IPv6. The client's own address is always
 * allowed for the local app and the forwarded one; a second address of the same client, not
 * in the list, still finds every protected port dropped. Established connections of the
 * allowed network keep working (they carry the grant mark like a granted one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import type { Config } from '../../../src/config/types.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/always-allow.test.ts', kernelSkipReason(['ip', 'nft', 'ipset', 'iptables-nft-restore']));

/** Another address of the client namespace, in no allowed network. */
const OTHER = { 4: '10.77.0.9', 6: 'fd77::9' } as const;

/** The topology's config with the client's /32 and /128 always allowed (globally, as every app gets them). */
function withLifeline(config: Config): Config {
  const allowed = [`${ADDR.client4}/32`, `${ADDR.client6}/128`];
  return { ...config, apps: config.apps.map((app) => ({ ...app, alwaysAllow: allowed })) };
}

const BACKENDS = [
  { name: 'nftables', type: 'nftables' as const, tag: 'aan' },
  { name: 'iptables-nft', type: 'iptables' as const, variant: 'nft' as const, tag: 'aai' },
];

describe.skipIf(skip).each(BACKENDS)('always_allow: $name', (backend) => {
  let topo: Topology;
  let fw: FirewallBackend;

  beforeAll(async () => {
    topo = Topology.create(backend.tag);
    topo.client.ip('addr', 'add', `${OTHER[4]}/24`, 'dev', 'cli0');
    topo.client.ip('addr', 'add', `${OTHER[6]}/64`, 'dev', 'cli0', 'nodad');
    await topo.startListeners();
    fw = createFirewall(withLifeline(topo.config), {
      type: backend.type,
      netns: topo.gw.name,
      ...(backend.variant ? { iptablesVariant: backend.variant } : {}),
    });
    await fw.install('nflog');
  });
  afterAll(() => topo?.destroy());

  /** From `from` (an address of the client namespace): 'open', 'refused' or 'silent'. */
  const tcpFrom = (from: string, addr: string, port: number): 'open' | 'refused' | 'silent' => {
    const target = addr.includes(':') ? `[${addr}]` : addr;
    const r = topo.client.tryExec('timeout', ['1', 'curl', '-s', '-o', '/dev/null', '--interface', from, `telnet://${target}:${port}`]);
    // curl's telnet exits 0 once the connection closes normally; a timeout is 124 from `timeout`.
    if (r.ok) return 'open';
    return /refused/i.test(r.err) ? 'refused' : 'silent';
  };

  it('the allowed address reaches the local app and the forwarded app with no knock', () => {
    expect(tcpFrom(ADDR.client4, ADDR.gw4, 2222)).toBe('open');
    expect(tcpFrom(ADDR.client6, ADDR.gw6, 2222)).toBe('open');
    expect(tcpFrom(ADDR.client4, ADDR.gw4, 3389)).toBe('open');
    expect(topo.udp(ADDR.gw4, 1194)).toBe('reply');
  });

  it('another address of the same client finds every protected port dropped', () => {
    expect(tcpFrom(OTHER[4], ADDR.gw4, 2222)).toBe('silent');
    expect(tcpFrom(OTHER[6], ADDR.gw6, 2222)).toBe('silent');
    expect(tcpFrom(OTHER[4], ADDR.gw4, 3389)).toBe('silent');
    expect(tcpFrom(OTHER[4], ADDR.gw4, 443)).toBe('silent');
  });

  it('the HTTPS port is not part of the lifeline: it still needs a knock', () => {
    expect(tcpFrom(ADDR.client4, ADDR.gw4, 443)).toBe('silent');
  });
});
