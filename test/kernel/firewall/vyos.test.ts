/**
 * The VyOS backend against what a VyOS commit does to nftables (its `vyos_filter` tables
 * deleted and rebuilt, default-action drop): the gate never falls through, and granted
 * connections pass VyOS's own filters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/vyos.test.ts', kernelSkipReason(['ip', 'nft']));

describe.skipIf(skip)('VyOS backend (vyos_filter tables recreated in a namespace)', () => {
  let topo: Topology;
  let fw: FirewallBackend;
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;

  beforeAll(async () => {
    topo = Topology.create('vy');
    await topo.startListeners();
    // VyOS's own filters with default-action accept: without knock-port every port is open.
    vyosCommit(topo.gw, 'accept');
    fw = createFirewall(topo.config, { type: 'vyos', netns: topo.gw.name });
  });
  afterAll(() => topo?.destroy());

  it('gates from a table of its own: ports silent until granted, grants open them, forwards reach the LAN', async () => {
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    await fw.install('nflog');
    expect(topo.gw.exec('nft', ['list', 'tables'])).toContain('table inet knockport');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    await fw.grantService(ADDR.client4, app('ssh'), 60);
    await fw.grantStep2(ADDR.client6, 60);
    await fw.grantService(ADDR.client4, app('rdp'), 60);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
  });

  it('a VyOS commit with default-action drop never opens a port; granted connections pass again after the self-heal', async () => {
    vyosCommit(topo.gw, 'drop');
    // Straight after the commit, before any self-heal: the gate is untouched, nothing falls through.
    expect(topo.tcp(ADDR.gw4, 2222, 1000)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 8443)).toBe('silent');
    // Granted connections are dropped by VyOS's default action until knock-port's accept is back.
    expect(topo.tcp(ADDR.gw6, 443)).toBe('silent');
    expect(await fw.ensureInstalled!()).toBe(false);
    const report = fw.hostFirewall();
    expect(report.inserted.join('\n')).toContain('vyos_filter VYOS_INPUT_filter');
    expect(report.inserted.join('\n')).toContain('vyos_filter VYOS_IPV6_FORWARD_filter');
    expect(report.problems).toEqual([]);
    expect(topo.tcp(ADDR.gw6, 443)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    // Not granted: still dropped by knock-port's gate (and by VyOS).
    expect(topo.tcp(ADDR.gw6, 2222)).toBe('silent');
    // A second check inserts nothing twice.
    await fw.ensureInstalled!();
    expect(fw.hostFirewall().inserted).toEqual([]);
    expect(topo.gw.exec('nft', ['list', 'chain', 'ip', 'vyos_filter', 'VYOS_INPUT_filter']).match(/knock-port: granted/g)).toHaveLength(1);
  });

  it('uninstall removes its table and its rules in VyOS chains, leaving VyOS objects', async () => {
    await fw.uninstall();
    const ruleset = topo.gw.exec('nft', ['list', 'ruleset']);
    expect(ruleset).not.toContain('knockport');
    expect(ruleset).not.toContain('knock-port');
    expect(ruleset).toContain('chain VYOS_INPUT_filter');
    // VyOS's default action drop is all that is left.
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    vyosCommit(topo.gw, 'accept');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
  });
});
