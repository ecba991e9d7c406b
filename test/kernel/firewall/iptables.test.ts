import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import { iptablesBinary, type IptablesVariant } from '../../../src/firewall/iptables/backend.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/iptables.test.ts', kernelSkipReason(['ip', 'ipset', 'iptables-nft-restore', 'iptables-legacy-restore']));

describe.skipIf(skip).each(['nft', 'legacy'] as IptablesVariant[])('iptables backend (iptables-%s) in network namespaces', (variant) => {
  let topo: Topology;
  let fw: FirewallBackend;
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;
  const save = (family: 4 | 6 = 4) => topo.gw.exec(`${iptablesBinary(variant, family)}-save`);

  beforeAll(async () => {
    topo = Topology.create(`ip${variant[0]}`);
    await topo.startListeners();
    fw = createFirewall(topo.config, { type: 'iptables', netns: topo.gw.name, iptablesVariant: variant });
    await fw.install('nfqueue');
  });
  afterAll(() => topo?.destroy());

  it('keeps protected ports silent before any grant; step 1 goes to NFQUEUE and, with no reader, is dropped', () => {
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    expect(topo.udp(ADDR.gw6, 1194)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 80)).toBe('silent');
    const queued = topo.gw
      .exec(iptablesBinary(variant, 4), ['-w', '-t', 'raw', '-L', 'KNOCKPORT-CAPTURE', '-v', '-x', '-n'])
      .split('\n')
      .find((l) => l.includes('NFQUEUE'));
    expect(Number(queued?.trim().split(/\s+/)[0])).toBeGreaterThanOrEqual(1);
    expect(save()).not.toContain('queue-bypass');
  });

  it('grants open ports per address and family, and list() reads them back with time left', async () => {
    await fw.grantStep2(ADDR.client6, 60);
    await fw.grantService(ADDR.client4, app('ssh'), 60);
    expect(topo.tcp(ADDR.gw6, 443)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    const grants = await fw.list();
    expect(grants).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'step2', address: ADDR.client6, family: 6 }),
        expect.objectContaining({ kind: 'service', address: ADDR.client4, app: 'ssh', protocol: 'tcp', port: 2222 }),
      ]),
    );
    for (const g of grants) expect(g.expiresInSeconds).toBeGreaterThan(50);
  });

  it('a UDP grant expires in the kernel with nothing running; a repeated grant refreshes it', async () => {
    await fw.grantService(ADDR.client4, app('openvpn'), 2);
    expect(topo.udp(ADDR.gw4, 1194)).toBe('reply');
    expect(await waitFor(() => topo.udp(ADDR.gw4, 1194) === 'silent', 5000, 200)).toBe(true);
    await fw.grantService(ADDR.client4, app('openvpn'), 2);
    await fw.grantService(ADDR.client4, app('openvpn'), 40);
    expect((await fw.list()).find((g) => g.app === 'openvpn')?.expiresInSeconds).toBeGreaterThan(30);
  });

  it('forwards a granted client to the LAN host on another port, IPv4 and IPv6', async () => {
    await fw.grantService(ADDR.client4, app('rdp'), 60);
    await fw.grantService(ADDR.client6, app('web6'), 60);
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 8443)).toBe('open');
  });

  it('re-install keeps grants and adds no duplicate rules; revoke closes at once', async () => {
    const before = save();
    await fw.install('nfqueue');
    expect(save().split('\n').length).toBe(before.split('\n').length);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    await fw.revoke(ADDR.client4);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
  });

  it('self-heal re-installs after a flush of the built-in chains', async () => {
    const heal = fw.ensureInstalled!.bind(fw);
    expect(await heal()).toBe(false);
    topo.gw.exec(iptablesBinary(variant, 4), ['-w', '-F', 'INPUT']);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(await heal()).toBe(true);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
  });

  it('uninstall removes its chains, jumps and sets, and nothing else', async () => {
    topo.gw.exec(iptablesBinary(variant, 4), ['-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']);
    await fw.uninstall();
    for (const family of [4, 6] as const) expect(save(family)).not.toContain('KNOCKPORT');
    expect(save()).toContain('--dport 9999');
    expect(topo.gw.exec('ipset', ['list', '-n'])).not.toContain('knockport');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
  });
});
