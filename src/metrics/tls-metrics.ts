/** The `knockport_tls_*` gauges: when the served step-2 certificate expires, and whether its last reload was refused. */
import { Gauge } from 'prom-client';
import type { MetricsRegistry } from './registry.js';

export interface TlsGaugeSource {
  /** notAfter of the certificate served now. */
  notAfter(): Date;
  /** The pair read at the last reload was refused (the previous one still serves). */
  reloadRefused(): boolean;
}

export function registerTlsMetrics(registry: MetricsRegistry, source: TlsGaugeSource): void {
  const registers = [registry];
  new Gauge({
    name: 'knockport_tls_certificate_expiry_seconds',
    help: 'When the served step-2 certificate expires (its notAfter), as Unix time in seconds.',
    registers,
    collect() {
      this.set(source.notAfter().getTime() / 1000);
    },
  });
  new Gauge({
    name: 'knockport_tls_reload_refused',
    help: '1 while the certificate and key read at the last reload are refused (the previous pair still serves), else 0.',
    registers,
    collect() {
      this.set(source.reloadRefused() ? 1 : 0);
    },
  });
}
