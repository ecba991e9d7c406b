import { describe, expect, it } from 'vitest';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { registerXdpMetrics } from '../../../src/metrics/xdp-metrics.js';
import { seriesOf } from './expected.js';

describe('step-1 XDP metrics', () => {
  it('count interfaces per mode, none for those left to the kernel rules; packets per outcome while the program is loaded', async () => {
    const metrics = createDaemonMetrics(() => 0);
    let counters: Record<string, number> | undefined;
    let modes: string[] = [];
    let left = 0;
    registerXdpMetrics(metrics.registry, { counters: () => counters, attachedModes: () => modes, notAttached: () => left });
    const scrape = () => metrics.registry.metrics();

    let text = await scrape();
    expect(seriesOf(text, 'knockport_step1_xdp_interfaces')).toEqual([
      ['{mode="native"}', 0],
      ['{mode="generic"}', 0],
      ['{mode="none"}', 0],
    ]);
    expect(seriesOf(text, 'knockport_step1_xdp_packets_total')).toEqual([]);

    modes = ['generic', 'native', 'generic'];
    left = 2;
    counters = { syn_answered: 7, bad_cookie: 1 };
    text = await scrape();
    expect(seriesOf(text, 'knockport_step1_xdp_interfaces')).toEqual([
      ['{mode="native"}', 1],
      ['{mode="generic"}', 2],
      ['{mode="none"}', 2],
    ]);
    expect(seriesOf(text, 'knockport_step1_xdp_packets_total')).toEqual([
      ['{outcome="syn_answered"}', 7],
      ['{outcome="bad_cookie"}', 1],
    ]);
  });
});
