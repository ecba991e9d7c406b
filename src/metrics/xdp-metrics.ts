/**
 * The step-1 XDP front's metrics, read from the program's per-CPU counters at scrape time:
 * `knockport_step1_xdp_packets_total{outcome}` and the interfaces it runs on per mode. Absent
 * counters (the program not loaded) leave the series at their last values.
 */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

export interface XdpSource {
  /** Packets since the daemon started, per outcome; undefined while the program is not loaded. */
  counters(): Record<string, number> | undefined;
  /** The mode of each interface the program is attached to. */
  attachedModes(): string[];
  /** Interfaces `interface_ext` matches that it is not attached to (step 1 on the kernel rules alone there). */
  notAttached(): number;
}

export function registerXdpMetrics(registry: MetricsRegistry, source: XdpSource): void {
  const registers = [registry];
  new Counter({
    name: 'knockport_step1_xdp_packets_total',
    help: 'Step-1 packets the XDP front handled, per outcome: syn_answered (XDP_TX), bad_cookie, bad_prefix, syn_dropped and bad_options (XDP_DROP), passed_knock and passed_other (to the kernel rules).',
    labelNames: ['outcome'] as const,
    registers,
    collect() {
      const counts = source.counters();
      if (counts === undefined) return;
      this.reset();
      for (const [outcome, n] of Object.entries(counts)) this.inc({ outcome }, n);
    },
  });
  new Gauge({
    name: 'knockport_step1_xdp_interfaces',
    help: 'Interfaces interface_ext matches, per step-1 XDP mode: native and generic where the program runs, none where it could not attach (the kernel rules alone serve step 1 there); all 0 when step1_xdp is off.',
    labelNames: ['mode'] as const,
    registers,
    collect() {
      const modes = source.attachedModes();
      for (const mode of ['native', 'generic']) this.set({ mode }, modes.filter((m) => m === mode).length);
      this.set({ mode: 'none' }, source.notAttached());
    },
  });
}
