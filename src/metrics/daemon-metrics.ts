/** Every `knockport_*` metric the daemon exposes, with its labels and buckets, in one registry. */
import { Counter, Gauge, Histogram } from 'prom-client';
import { LOCK_FACTORS } from '../auth/lockout.js';
import { MetricsRegistry } from './registry.js';

/**
 * Step-2 answers as counted, one status each: every refusal is `forbidden`, whatever its cause,
 * so no series tells a right path, app or key from a wrong one (the cause is in the debug log).
 */
export const STEP2_OUTCOMES = ['granted', 'forbidden', 'too-large', 'rate-limited', 'error'] as const;
export type Step2Outcome = (typeof STEP2_OUTCOMES)[number];

/** Seconds; knock-to-grant spans a firewall update (sub-ms in-process, a few ms forked). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Every metric the daemon exposes, created once and handed to the parts that count. */
export interface DaemonMetrics {
  readonly registry: MetricsRegistry;
  /** Step-1 inspector decisions: outcome (the result: syn, granted, rejected, ...) and, for ignored, spoofed and rejected, the reason. */
  readonly step1Packets: Counter<'outcome' | 'reason'>;
  /** Step-2 HTTPS answers by outcome (STEP2_OUTCOMES). */
  readonly step2Requests: Counter<'outcome'>;
  readonly grants: Counter<'step'>;
  /** Grants by app (the config's apps only) and step; see showApps. */
  readonly appGrants: Counter<'app' | 'step'>;
  /** Grants the firewall refused or failed to take, by backend and step. */
  readonly grantFailures: Counter<'backend' | 'step'>;
  /** Metrics requests refused for a missing or wrong bearer token. */
  readonly metricsUnauthorized: Counter;
  readonly revokes: Counter;
  /** Packets lost before the inspector saw them: source = kernel (queue full) or enobufs. */
  readonly captureDrops: Counter<'source'>;
  /** Secrets locked after a burst of wrong guesses, by factor (step1-key, step1-otp, step2-key, step2-token). */
  readonly lockouts: Counter<'factor'>;
  /** Attempts refused unchecked because their secret was locked, by factor. */
  readonly lockoutRefusals: Counter<'factor'>;
  readonly knockToGrantSeconds: Histogram<'step'>;
  /** Step-1 packets inspected per worker thread (`worker` = its queue number or log group). */
  readonly step1WorkerPackets: Counter<'worker'>;
  /** Step-1 worker threads that ended on their own and were restarted. */
  readonly step1WorkerRestarts: Counter;
  /** Step-1 worker threads running (reading their queue) now. */
  readonly step1Workers: Gauge;
  readonly liveSessions: Gauge;
}

/**
 * `liveSessions` reads its value at scrape time from `countLiveSessions`. The registry gets
 * the daemon's own metrics, then the default process and Node.js metrics.
 */
export function createDaemonMetrics(countLiveSessions: () => number, registry = new MetricsRegistry()): DaemonMetrics {
  const registers = [registry];
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers });
  const metrics: DaemonMetrics = {
    registry,
    step1Packets: counter('knockport_step1_packets_total', 'Step-1 packets by inspector outcome and reason.', ['outcome', 'reason']),
    step2Requests: counter('knockport_step2_requests_total', 'Step-2 HTTPS requests by outcome.', ['outcome']),
    grants: counter('knockport_grants_total', 'Grants given (step2 = HTTPS window, service = service port).', ['step']),
    revokes: counter('knockport_revokes_total', 'Grants revoked on request.'),
    captureDrops: counter('knockport_capture_drops_total', 'Step-1 packets lost before inspection (kernel queue full, ENOBUFS).', ['source']),
    lockouts: counter('knockport_lockouts_total', 'Secrets locked after repeated wrong guesses from any sources, by factor.', ['factor']),
    lockoutRefusals: counter('knockport_lockout_refusals_total', 'Attempts refused because their secret was locked, by factor.', ['factor']),
    knockToGrantSeconds: new Histogram({
      name: 'knockport_knock_to_grant_seconds',
      help: 'Time from a valid knock (step 1 packet or step 2 request) to its grant being in the kernel.',
      buckets: LATENCY_BUCKETS,
      labelNames: ['step'] as const,
      registers,
    }),
    step1WorkerPackets: counter(
      'knockport_step1_worker_packets_total',
      'Step-1 packets inspected per worker thread (worker = its queue number or log group).',
      ['worker'],
    ),
    step1WorkerRestarts: counter('knockport_step1_worker_restarts_total', 'Step-1 worker threads that stopped on their own and were restarted.'),
    step1Workers: new Gauge({ name: 'knockport_step1_workers', help: 'Step-1 worker threads reading their queue now.', registers }),
    liveSessions: new Gauge({
      name: 'knockport_live_sessions',
      help: 'Live grants known to the daemon.',
      registers,
      collect() {
        this.set(countLiveSessions());
      },
    }),
    // Added after the metrics above, which keep their order.
    appGrants: counter('knockport_app_grants_total', 'Grants given per app of the running config (step2 = HTTPS window, service = service port).', [
      'app',
      'step',
    ]),
    grantFailures: counter('knockport_grant_failures_total', 'Grants the firewall backend failed to put in the kernel, by backend and step.', [
      'backend',
      'step',
    ]),
    metricsUnauthorized: counter('knockport_metrics_unauthorized_total', 'Requests to the metrics endpoint refused for a missing or wrong bearer token.'),
  };
  // Every factor shows from the start (at 0), so an alert on the rate needs no series to appear first.
  for (const factor of LOCK_FACTORS) {
    metrics.lockouts.inc({ factor }, 0);
    metrics.lockoutRefusals.inc({ factor }, 0);
  }
  for (const outcome of STEP2_OUTCOMES) metrics.step2Requests.inc({ outcome }, 0);
  registry.addDefaultMetrics();
  return metrics;
}

export const GRANT_STEPS = ['step2', 'service'] as const;

/**
 * The per-app series follow the running config: every app shows at 0 from the start (an alert on
 * the rate needs no series to appear first), and an app a reload removed loses its series. Only
 * app names from the config ever become labels, so the label set stays bounded.
 */
export function showApps(metrics: Pick<DaemonMetrics, 'appGrants'>, apps: readonly string[], previous: readonly string[] = []): void {
  for (const app of previous) if (!apps.includes(app)) for (const step of GRANT_STEPS) metrics.appGrants.remove({ app, step });
  for (const app of apps) for (const step of GRANT_STEPS) metrics.appGrants.inc({ app, step }, 0);
}

/** Every step of `backend` shows at 0 from the start. */
export function showGrantFailures(metrics: Pick<DaemonMetrics, 'grantFailures'>, backend: string): void {
  for (const step of GRANT_STEPS) metrics.grantFailures.inc({ backend, step }, 0);
}
