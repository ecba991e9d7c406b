/**
 * A burst of 1,000 grants made at once (distinct addresses, IPv4 and IPv6, step-2 and service
 * grants) on every backend: all of them land, read back from the kernel with nft/ipset (not
 * from the backend), and a granted address really connects from the client namespace. The
 * event-loop delay during the burst is printed (timing is measured by bench/grant-burst.js,
 * never asserted here).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFirewall } from '../../../src/firewall/index.js';
import type { IptablesVariant } from '../../../src/firewall/iptables/backend.js';
import type { FirewallBackend } from '../../../src/firewall/types.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { ADDR, Topology } from './topology.js';
import type { CaptureKind } from '../../../src/shared/kinds.js';

const skip = announceSkip(
  'test/kernel/firewall/grant-burst.test.ts',
  kernelSkipReason(['ip', 'nft', 'ipset', 'stdbuf', 'iptables-nft-restore', 'iptables-legacy-restore']),
);

const BURST = 1_000;
/** Addresses no host in the namespaces uses, written as the kernel prints them. */
const burstAddress = (i: number): string => (i % 2 === 0 ? `100.64.${i >> 8}.${i & 255}` : `fd00:b0b::1:${i.toString(16)}`);

interface Case {
  name: string;
  tag: string;
  type: 'nftables' | 'iptables';
  variant?: IptablesVariant;
  capture: CaptureKind;
}

const CASES: Case[] = [
  { name: 'nftables', tag: 'gbn', type: 'nftables', capture: 'nflog' },
  { name: 'iptables-nft', tag: 'gbi', type: 'iptables', variant: 'nft', capture: 'nfqueue' },
  { name: 'iptables-legacy', tag: 'gbl', type: 'iptables', variant: 'legacy', capture: 'nfqueue' },
];

describe.skipIf(skip).each(CASES)('a burst of $name grants', ({ name, tag, type, variant, capture }) => {
  let topo: Topology;
  let fw: FirewallBackend;
  const app = (appName: string) => topo.config.apps.find((a) => a.name === appName)!;

  beforeAll(async () => {
    topo = Topology.create(tag);
    await topo.startListeners();
    fw = createFirewall(topo.config, { type, netns: topo.gw.name, ...(variant ? { iptablesVariant: variant } : {}) });
    await fw.install(capture);
  });
  afterAll(() => topo?.destroy());

  /** Every element of knock-port's grant sets, as the kernel lists them. */
  function kernelListing(): string {
    if (type === 'nftables') {
      return ['step2_v4', 'step2_v6', 'service_v4', 'service_v6'].map((set) => topo.gw.exec('nft', ['list', 'set', 'inet', 'knockport', set])).join('\n');
    }
    return ['step2-v4', 'step2-v6', 'service-v4', 'service-v6'].map((set) => topo.gw.exec('ipset', ['list', `knockport-${set}`, '-o', 'save'])).join('\n');
  }

  it(`all ${BURST} grants made at once land in the kernel, and a granted client connects`, async () => {
    const ssh = app('ssh');
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    const started = performance.now();
    const grants = Array.from({ length: BURST }, (_, i) => (i % 4 < 2 ? fw.grantStep2(burstAddress(i), 120) : fw.grantService(burstAddress(i), ssh, 120)));
    // The test client's own addresses, in the same burst.
    grants.push(fw.grantService(ADDR.client4, ssh, 120), fw.grantStep2(ADDR.client6, 120));
    const outcomes = await Promise.allSettled(grants);
    const burstMs = performance.now() - started;
    histogram.disable();
    console.log(
      `${name}: ${grants.length} grants in ${burstMs.toFixed(0)} ms; event-loop delay p50 ${(histogram.percentile(50) / 1e6).toFixed(2)} ms, p99 ${(histogram.percentile(99) / 1e6).toFixed(2)} ms, max ${(histogram.max / 1e6).toFixed(2)} ms`,
    );
    expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);

    const listing = kernelListing();
    const missing: string[] = [];
    for (let i = 0; i < BURST; i++) {
      const address = burstAddress(i);
      // nft: `100.64.0.2 . tcp . 2222` or a bare address; ipset save: `add SET 100.64.0.2,tcp:2222 timeout N`.
      const element = i % 4 < 2 ? address : type === 'nftables' ? `${address} . tcp . 2222` : `${address},tcp:2222`;
      if (!new RegExp(`[\\s{,]${element.replace(/[.]/g, '\\.')}[\\s,}]`).test(listing)) missing.push(element);
    }
    expect(missing).toEqual([]);
    expect(listing).toContain(type === 'nftables' ? `${ADDR.client4} . tcp . 2222` : `${ADDR.client4},tcp:2222`);
    expect(listing).toContain(ADDR.client6);

    // Generous connect timeouts: the namespaces share two cores with whatever else runs.
    expect(topo.tcp(ADDR.gw4, 2222, 3000)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 443, 3000)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 443)).toBe('silent');
  });

  it('a revoke after the burst closes the client again, and the other grants stay', async () => {
    await fw.revoke(ADDR.client4);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('silent');
    const live = await fw.list();
    expect(live.length).toBeGreaterThanOrEqual(BURST);
    expect(live.some((g) => g.address === ADDR.client4)).toBe(false);
  });
});
