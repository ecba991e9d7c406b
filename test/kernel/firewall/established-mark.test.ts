/**
 * Established means granted: the gate accepts an established flow only when the connection
 * carries the grant mark. A conntrack entry the gate never admitted (what a flush of the host's
 * ruleset leaves on a kernel where knock-port's table is not its own, or what another tool
 * inserts) lets nothing through; once the source holds a grant, the same flow gets the mark and
 * passes. The flow is a UDP one to the local app (an echo server), inserted with `conntrack -I`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/established-mark.test.ts', kernelSkipReason(['ip', 'nft', 'ipset', 'iptables-nft-restore', 'conntrack']));

/** The client's source port of the inserted flow. */
const CLIENT_PORT = 40_123;
const APP_PORT = 1194;

/** One datagram from CLIENT_PORT: 'reply' when the echo answers, 'silent' when nothing comes back. */
const UDP_FROM_PORT = `const [host, port, address, from] = process.argv.slice(1); const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.on('message', () => { console.log('reply'); process.exit(0); }); s.bind({ address, port: Number(from) }, () => s.send('ping', Number(port), host)); setTimeout(() => { console.log('silent'); process.exit(0); }, 800);`;

const BACKENDS = [
  { name: 'nftables', options: { type: 'nftables' as const }, prefix: 'emn' },
  { name: 'iptables-nft', options: { type: 'iptables' as const, iptablesVariant: 'nft' as const }, prefix: 'emi' },
];

describe.skipIf(skip).each(BACKENDS)('an established flow without the grant mark: $name', (backend) => {
  let topo: Topology;
  let fw: FirewallBackend;
  const openvpn = () => topo.config.apps.find((a) => a.name === 'openvpn')!;
  const probe = (client: string, gw: string): string =>
    topo.client.exec(process.execPath, ['-e', UDP_FROM_PORT, gw, String(APP_PORT), client, String(CLIENT_PORT)]).trim();
  /** A tracked, assured flow client:CLIENT_PORT -> gw:APP_PORT with no mark, as if the gate had let it in. */
  const insertFlow = (client: string, gw: string) =>
    topo.gw.exec('conntrack', [
      '-I',
      '-p',
      'udp',
      '-s',
      client,
      '-d',
      gw,
      '--sport',
      String(CLIENT_PORT),
      '--dport',
      String(APP_PORT),
      '-t',
      '120',
      '-u',
      'SEEN_REPLY,ASSURED',
    ]);

  beforeAll(async () => {
    topo = Topology.create(backend.prefix);
    await topo.startListeners();
    fw = createFirewall(topo.config, { ...backend.options, netns: topo.gw.name });
    await fw.install(backend.name === 'nftables' ? 'nflog' : 'nfqueue');
  });
  afterAll(() => topo?.destroy());

  it.each([
    ['IPv4', ADDR.client4, ADDR.gw4],
    ['IPv6', ADDR.client6, ADDR.gw6],
  ])('%s: gets no answer until its source holds a grant', async (_family, client, gw) => {
    expect(probe(client, gw)).toBe('silent');
    insertFlow(client, gw);
    expect(topo.gw.exec('conntrack', ['-L', '-p', 'udp', '--orig-port-src', String(CLIENT_PORT)])).toContain('ASSURED');
    expect(probe(client, gw)).toBe('silent');
    await fw.grantService(client, openvpn(), 60);
    expect(probe(client, gw)).toBe('reply');
    await fw.revoke(client);
  });
});
