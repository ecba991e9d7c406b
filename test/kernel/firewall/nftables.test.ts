import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { prefilterDrops } from '../../helpers/prefilter.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/nftables.test.ts', kernelSkipReason(['ip', 'nft', 'tcpdump', 'hping3']));

describe.skipIf(skip)('nftables backend in network namespaces', () => {
  let topo: Topology;
  let fw: FirewallBackend;
  /** Payloads for hping3 -E, in a directory the namespaces share with the test. */
  let dir = '';
  let files = 0;
  const payloadFile = (text: string): { file: string; length: number } => {
    const file = join(dir, `payload-${files++}.bin`);
    writeFileSync(file, text, 'latin1');
    return { file, length: Buffer.byteLength(text, 'latin1') };
  };
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kp-nf-'));
    topo = Topology.create('nf');
    await topo.startListeners();
    fw = createFirewall(topo.config, { type: 'nftables', netns: topo.gw.name });
    await fw.install('nflog');
  });
  afterAll(() => {
    topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

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

  it('step 1 goes to NFLOG: SYNs and data segments starting with the knock prefix are seen; pure ACKs and other data are not, and nothing answers', async () => {
    const path = topo.config.global.step1Path;
    // A data segment shaped like a knock, and two that are not: 12 bytes of filler and a wrong path (three lengths, told apart below).
    const knockLike = payloadFile(`POST ${path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n`);
    const wrongPath = payloadFile(`POST ${path.slice(0, -1)}x HTTP/1.1\r\n\r\n`);
    expect(new Set([12, wrongPath.length, knockLike.length]).size).toBe(3);
    const dropsBefore = prefilterDrops(topo.gw, 'nft');
    const dump = topo.gw.spawn('tcpdump', ['-i', `nflog:${topo.config.global.nflogGroup}`, '-n', '-l']);
    topo.processes.push(dump);
    let out = '';
    dump.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    dump.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('listening'), 3000);
    expect(topo.tcp(ADDR.gw4, 80)).toBe('silent');
    // A pure ACK and two data segments not starting with the prefix (all dropped in the kernel), then the knock-like one.
    // NFLOG keeps their order: had a non-matching one reached it, it would be logged before the knock-like one.
    const hping = (args: string[]) => {
      const r = topo.client.tryExec('hping3', ['-q', '-c', '1', '-A', ...args, '-p', '80', ADDR.gw4]);
      expect(r.out + r.err).toMatch(/1 packets transmitted/);
    };
    hping([]);
    hping(['-d', '12']);
    hping(['-d', String(wrongPath.length), '-E', wrongPath.file]);
    hping(['-d', String(knockLike.length), '-E', knockLike.file]);
    const logged = () => out.split('\n').filter((l) => l.includes('> 10.77.0.1.80'));
    const isKnockLike = (l: string) => new RegExp(`Flags \\[\\.\\].*length ${knockLike.length}\\b`).test(l);
    expect(await waitFor(() => logged().some(isKnockLike), 5000)).toBe(true);
    dump.kill('SIGINT');
    // The probe's SYN (and, on a slow machine, its retransmission), then only the knock-like segment: no pure ACK, no other data.
    const lines = logged();
    const syns = lines.filter((l) => /Flags \[S\]/.test(l));
    expect(syns.length).toBeGreaterThanOrEqual(1);
    expect(lines.filter((l) => !syns.includes(l))).toEqual([lines.find(isKnockLike)]);
    // The two non-matching data segments are what the prefilter counted (the pure ACK is not its doing).
    expect(await waitFor(() => prefilterDrops(topo.gw, 'nft') - dropsBefore >= 2, 3000, 100)).toBe(true);
    expect(prefilterDrops(topo.gw, 'nft') - dropsBefore).toBe(2);
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
