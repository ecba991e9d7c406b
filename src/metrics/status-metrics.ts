/**
 * What the daemon is and how it is doing, for dashboards and alerts: build info, health (the
 * problem count `knock-port health` reports), and the outcome and time of the last config
 * reload. Read at scrape time from the daemon's parts.
 */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

/** Constant for the daemon's life: a firewall_type or capture change needs a restart. */
export interface BuildInfo {
  version: string;
  /** The firewall backend: nftables, iptables or vyos. */
  backend: string;
  /** How step-1 packets arrive: nfqueue or nflog. */
  capture: string;
  /** XDP prefilter mode; `off` while the daemon has none. */
  xdp: string;
}

export const RELOAD_OUTCOMES = ['applied', 'failed'] as const;
export type ReloadOutcome = (typeof RELOAD_OUTCOMES)[number];

export interface StatusSource {
  /** The problems `knock-port health` would report now (without the kernel reads of report mode). */
  problemCount(): number;
  /** The last config reload (or the start, before any): when, and whether the config was switched to. */
  lastReload(): { at: Date; outcome: ReloadOutcome };
}

export interface StatusMetrics {
  /** Config reloads (SIGHUP) by outcome. */
  readonly reloads: Counter<'outcome'>;
}

export function registerStatusMetrics(registry: MetricsRegistry, build: BuildInfo, source: StatusSource): StatusMetrics {
  const registers = [registry];
  new Gauge({
    name: 'knockport_build_info',
    help: 'Always 1; the labels say the version, firewall backend, step-1 capture and XDP mode.',
    labelNames: ['version', 'backend', 'capture', 'xdp'] as const,
    registers,
  }).set({ ...build }, 1);
  new Gauge({
    name: 'knockport_health_problems',
    help: 'Problems knock-port health reports now (0: healthy); the health command and the log say what they are.',
    registers,
    collect() {
      this.set(source.problemCount());
    },
  });
  new Gauge({
    name: 'knockport_healthy',
    help: '1 while knock-port health reports no problem, else 0.',
    registers,
    collect() {
      this.set(source.problemCount() === 0 ? 1 : 0);
    },
  });
  new Gauge({
    name: 'knockport_config_last_reload_successful',
    help: '0 while the last config reload failed (the daemon runs on the previous config), else 1.',
    registers,
    collect() {
      this.set(source.lastReload().outcome === 'applied' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'knockport_config_last_reload_timestamp_seconds',
    help: 'When the config was last reloaded, or loaded at start, as Unix time in seconds.',
    registers,
    collect() {
      this.set(source.lastReload().at.getTime() / 1000);
    },
  });
  const reloads = new Counter({
    name: 'knockport_config_reloads_total',
    help: 'Config reloads (SIGHUP) by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });
  for (const outcome of RELOAD_OUTCOMES) reloads.inc({ outcome }, 0);
  return { reloads };
}
