/**
 * The gate's own metrics: whether it runs in report mode, and in report mode what it would have
 * dropped per app port (`knockport_gate_would_drop_packets_total`), read from the kernel's rule
 * counters at scrape time. A table put back by the self-heal starts its counters at 0 again,
 * which Prometheus reads as a counter reset.
 */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

/** Packets report mode let pass at one app port. */
export interface WouldDropReading {
  protocol: string;
  port: number;
  packets: number;
}

export interface GateSource {
  /** True while the running config says `gate_mode: report`. */
  reportMode(): boolean;
  /** The kernel's counters now; empty in enforce mode. */
  wouldDrop(): Promise<WouldDropReading[]>;
  /** Told when the kernel could not be read (the last values stay). */
  onReadError(err: unknown): void;
}

export function registerGateMetrics(registry: MetricsRegistry, source: GateSource): void {
  const registers = [registry];
  new Gauge({
    name: 'knockport_gate_report_mode',
    help: "1 while the gate runs in report mode (gate_mode: report): it drops nothing at the apps' ports, only counts; else 0.",
    registers,
    collect() {
      this.set(source.reportMode() ? 1 : 0);
    },
  });
  new Counter({
    name: 'knockport_gate_would_drop_packets_total',
    help: 'Report mode: packets to an app port that the gate let pass and would have dropped, per port and protocol (kernel rule counters).',
    labelNames: ['port', 'protocol'] as const,
    registers,
    async collect() {
      let readings: WouldDropReading[];
      try {
        readings = await source.wouldDrop();
      } catch (err) {
        source.onReadError(err);
        return;
      }
      this.reset();
      for (const { port, protocol, packets } of readings) this.inc({ port: String(port), protocol }, packets);
    },
  });
}
