/**
 * Step-1 fanout over several workers, NFLOG: the kernel has no fanout for it, so the rules pick
 * the group by the CPU that handles the packet. Checked on nftables and iptables-nft/legacy in
 * namespaces made by the test: SYNs sent from a process pinned to CPU c (a veth hands the packet
 * to the gateway on the sender's CPU) reach group nflog_group + c mod N, and no other group.
 * The firewall alone, no daemon: tcpdump listens on every group.
 */
import type { ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/types.js';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason, requiredInCi, waitFor } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';

const WORKERS = 2;
const SYNS = 5;
const skip =
  announceSkip(
    'firewall/step1-fanout',
    kernelSkipReason(['ip', 'nft', 'iptables-nft-restore', 'iptables-legacy-restore', 'ipset', 'tcpdump', 'hping3', 'taskset']),
  ) || announceSkip('firewall/step1-fanout', requiredInCi(cpus().length < WORKERS ? `needs ${WORKERS} CPUs, this machine has ${cpus().length}` : undefined));

const BACKENDS = [
  { name: 'nftables', type: 'nftables', variant: undefined, label: 'fon' },
  { name: 'iptables-nft', type: 'iptables', variant: 'nft', label: 'foi' },
  { name: 'iptables-legacy', type: 'iptables', variant: 'legacy', label: 'fol' },
] as const;

describe.skipIf(skip).each(BACKENDS)('NFLOG fanout by CPU: $name', (backend) => {
  let topo: Topology;
  let fw: FirewallBackend;
  let config: Config;
  const dumps: Array<{ group: number; out: () => string; proc: ChildProcess }> = [];

  beforeAll(async () => {
    topo = Topology.create(backend.label);
    config = { ...topo.config, global: { ...topo.config.global, step1Workers: WORKERS } };
    fw = createFirewall(config, { type: backend.type, netns: topo.gw.name, ...(backend.variant ? { iptablesVariant: backend.variant } : {}) });
    await fw.install('nflog');
    for (let worker = 0; worker < WORKERS; worker++) {
      const group = config.global.nflogGroup + worker;
      const proc = topo.gw.spawn('tcpdump', ['-i', `nflog:${group}`, '-n', '-l']);
      topo.processes.push(proc);
      let out = '';
      proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      dumps.push({ group, out: () => out, proc });
    }
    for (const dump of dumps) expect(await waitFor(() => dump.out().includes('listening'), 3000)).toBe(true);
  });

  afterAll(() => topo?.destroy());

  it('SYNs handled on CPU c reach only group nflog_group + c mod N', async () => {
    const sport = (cpu: number) => 41000 + cpu;
    for (let cpu = 0; cpu < WORKERS; cpu++) {
      topo.client.tryExec('taskset', [
        '-c',
        String(cpu),
        'hping3',
        '-q',
        '-S',
        '-c',
        String(SYNS),
        '-i',
        'u20000',
        '-s',
        String(sport(cpu)),
        '-k',
        '-p',
        '80',
        ADDR.gw4,
      ]);
    }
    const seen = (dump: (typeof dumps)[number], cpu: number) =>
      dump
        .out()
        .split('\n')
        .filter((l) => l.includes(`.${sport(cpu)} > `)).length;
    expect(await waitFor(() => dumps.every((d, i) => seen(d, i) >= SYNS), 5000, 100)).toBe(true);
    for (const [worker, dump] of dumps.entries()) {
      for (let cpu = 0; cpu < WORKERS; cpu++) expect(seen(dump, cpu), `group ${dump.group}, SYNs from CPU ${cpu}`).toBe(cpu % WORKERS === worker ? SYNS : 0);
    }
    expect(fw.render('nflog')).toMatch(backend.type === 'nftables' ? /meta cpu/ : /-m cpu --cpu 0/);
  });
});
