import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { VyosNotConfiguredError } from '../../../src/firewall/vyos.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { ADDR, Topology } from './topology.js';

const skip = announceSkip('test/kernel/firewall/vyos.test.ts', kernelSkipReason(['ip', 'nft']));

describe.skipIf(skip)('VyOS backend (vyos_filter layout recreated in a namespace)', () => {
  let topo: Topology;
  let fw: FirewallBackend;
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;

  beforeAll(async () => {
    topo = Topology.create('vy');
    await topo.startListeners();
    fw = createFirewall(topo.config, { type: 'vyos', netns: topo.gw.name });
  });
  afterAll(() => topo?.destroy());

  it('refuses to install, with the VyOS commands to run, when its named chains are missing', async () => {
    await expect(fw.install('nflog')).rejects.toThrow(VyosNotConfiguredError);
    await expect(fw.install('nflog')).rejects.toThrow(/set firewall ipv4 name IN-KnockPort default-action continue/);
  });

  it('fills the named chains: ports silent until granted, grants open them, forwards reach the LAN', async () => {
    vyosCommit(topo.gw);
    await fw.install('nflog');
    expect(topo.gw.exec('nft', ['list', 'chain', 'ip', 'vyos_filter', 'NAME_IN-KnockPort'])).toContain('knock-port gate');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('silent');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('silent');
    await fw.grantService(ADDR.client4, app('ssh'), 60);
    await fw.grantStep2(ADDR.client6, 60);
    await fw.grantService(ADDR.client4, app('rdp'), 60);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    expect((await fw.list()).map((g) => `${g.kind} ${g.address}`).sort()).toEqual(
      [`service ${ADDR.client4}`, `service ${ADDR.client4}`, `step2 ${ADDR.client6}`].sort(),
    );
  });

  it('self-heal: after a VyOS commit wipes the rules, ensureInstalled() puts them back', async () => {
    const heal = fw.ensureInstalled!.bind(fw);
    expect(await heal()).toBe(false);
    vyosCommit(topo.gw);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(await heal()).toBe(true);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
  });

  it('uninstall empties the named chains and removes its own chains and sets, leaving VyOS objects', async () => {
    await fw.uninstall();
    const ruleset = topo.gw.exec('nft', ['list', 'ruleset']);
    expect(ruleset).not.toContain('KnockPort_');
    expect(ruleset).toContain('chain NAME_IN-KnockPort');
    expect(ruleset).toContain('chain VYOS_INPUT_filter');
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
  });
});
