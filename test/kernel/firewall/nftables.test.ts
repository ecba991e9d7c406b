import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/nftables.test.ts', kernelSkipReason(['ip', 'nft', 'tcpdump', 'hping3']));

describe.skipIf(skip)('nftables backend in network namespaces', () => {
  let topo: Topology;
  let fw: FirewallBackend;
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;

  beforeAll(async () => {
    topo = Topology.create('nf');
    await topo.startListeners();
    fw = createFirewall(topo.config, { type: 'nftables', netns: topo.gw.name });
    await fw.install('nflog');
  });
  afterAll(() => topo?.destroy());

  it('keeps every protected port silent (dropped, no RST) before any grant, IPv4 and IPv6', () => {
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 8443)).toBe('silent');
    expect(topo.udp(ADDR.gw4, 1194)).toBe('silent');
    // Control: a port knock-port does not protect answers with RST.
    expect(topo.tcp(ADDR.gw4, 2223)).toBe('refused');
  });

  it('a step-2 grant opens HTTPS and a service grant opens the app port for that address only', async () => {
    await fw.grantStep2(ADDR.client4, 60);
    await fw.grantService(ADDR.client6, app('ssh'), 60);
    expect(topo.tcp(ADDR.gw4, 443)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    const grants = await fw.list();
    expect(grants).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'step2', address: ADDR.client4, family: 4 }),
        expect.objectContaining({ kind: 'service', address: ADDR.client6, family: 6, app: 'ssh', protocol: 'tcp', port: 2222 }),
      ]),
    );
    for (const g of grants) expect(g.expiresInSeconds).toBeGreaterThan(50);
  });

  it('a UDP grant expires in the kernel with nothing running, and repeating a grant refreshes it', async () => {
    await fw.grantService(ADDR.client4, app('openvpn'), 2);
    expect(topo.udp(ADDR.gw4, 1194)).toBe('reply');
    expect(await waitFor(() => topo.udp(ADDR.gw4, 1194) === 'silent', 5000, 200)).toBe(true);

    await fw.grantService(ADDR.client4, app('openvpn'), 2);
    await fw.grantService(ADDR.client4, app('openvpn'), 40);
    const refreshed = (await fw.list()).find((g) => g.app === 'openvpn');
    expect(refreshed?.expiresInSeconds).toBeGreaterThan(30);
  });

  it('forwards a granted client to the LAN host on another port (IPv4 with masquerade, IPv6 without)', async () => {
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    await fw.grantService(ADDR.client4, app('rdp'), 60);
    await fw.grantService(ADDR.client6, app('web6'), 60);
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 8443)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 3389)).toBe('silent');
  });

  it('re-install keeps live grants and does not duplicate rules; revoke closes at once', async () => {
    const before = topo.gw.exec('nft', ['list', 'table', 'inet', 'knockport']);
    await fw.install('nflog');
    expect(topo.tcp(ADDR.gw4, 443)).toBe('open');
    const after = topo.gw.exec('nft', ['list', 'table', 'inet', 'knockport']);
    expect(after.split('\n').length).toBe(before.split('\n').length);
    await fw.revoke(ADDR.client4);
    expect(topo.tcp(ADDR.gw4, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    expect((await fw.list()).some((g) => g.address === ADDR.client4)).toBe(false);
  });

  it('step 1 goes to NFLOG: SYNs and data segments are seen, pure ACKs are not, and nothing answers', async () => {
    const dump = topo.gw.spawn('tcpdump', ['-i', `nflog:${topo.config.global.nflogGroup}`, '-n', '-l', '-c', '2']);
    topo.processes.push(dump);
    let out = '';
    dump.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    dump.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('listening'), 3000);
    expect(topo.tcp(ADDR.gw4, 80)).toBe('silent');
    // A pure ACK (dropped in the kernel), then an ACK carrying 12 bytes (captured).
    topo.client.tryExec('hping3', ['-q', '-c', '1', '-A', '-p', '80', ADDR.gw4]);
    topo.client.tryExec('hping3', ['-q', '-c', '1', '-A', '-d', '12', '-p', '80', ADDR.gw4]);
    expect(await waitFor(() => /2 packets captured/.test(out), 5000)).toBe(true);
    const lines = out.split('\n').filter((l) => l.includes('> 10.77.0.1.80'));
    expect(lines[0]).toMatch(/Flags \[S\]/);
    expect(lines[1]).toMatch(/Flags \[\.\].*length 12/);
  });

  it('reports that this kernel cannot queue from nft exactly when nft -c refuses the queue rule', async () => {
    const caps = await fw.capabilities();
    const queueRuleAccepted = topo.gw.tryExec('nft', ['-c', '-f', '-'], fw.render('nfqueue')).ok;
    expect(caps.nfqueue).toBe(queueRuleAccepted);
    expect(caps.nflog).toBe(true);
  });

  it('uninstall removes the table and nothing else', async () => {
    topo.gw.exec('nft', ['add table inet operator_table']);
    await fw.uninstall();
    const tables = topo.gw.exec('nft', ['list', 'tables']);
    expect(tables).not.toContain('knockport');
    expect(tables).toContain('operator_table');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
  });
});
