import { LOCK_FACTORS } from '../auth/lockout.js';
import { Registry, type Counter, type Gauge, type Histogram } from './registry.js';

/** Seconds; knock-to-grant spans a firewall update (sub-ms in-process, a few ms forked). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Every metric the daemon exposes, created once and handed to the parts that count. */
export interface DaemonMetrics {
  readonly registry: Registry;
  /** Step-1 inspector decisions: outcome (e.g. knock, rejected, retransmission) and reason. */
  readonly step1Packets: Counter<'outcome' | 'reason'>;
  /** Step-2 HTTPS answers by outcome (granted, forbidden, malformed, ...). */
  readonly step2Requests: Counter<'outcome'>;
  readonly grants: Counter<'step'>;
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

/** `liveSessions` reads its value at scrape time from `countLiveSessions`. */
export function createDaemonMetrics(countLiveSessions: () => number, registry = new Registry()): DaemonMetrics {
  const metrics: DaemonMetrics = {
    registry,
    step1Packets: registry.counter('knockport_step1_packets_total', 'Step-1 packets by inspector outcome and reason.', ['outcome', 'reason']),
    step2Requests: registry.counter('knockport_step2_requests_total', 'Step-2 HTTPS requests by outcome.', ['outcome']),
    grants: registry.counter('knockport_grants_total', 'Grants given (step2 = HTTPS window, service = service port).', ['step']),
    revokes: registry.counter('knockport_revokes_total', 'Grants revoked on request.'),
    captureDrops: registry.counter('knockport_capture_drops_total', 'Step-1 packets lost before inspection (kernel queue full, ENOBUFS).', ['source']),
    lockouts: registry.counter('knockport_lockouts_total', 'Secrets locked after repeated wrong guesses from any sources, by factor.', ['factor']),
    lockoutRefusals: registry.counter('knockport_lockout_refusals_total', 'Attempts refused because their secret was locked, by factor.', ['factor']),
    knockToGrantSeconds: registry.histogram(
      'knockport_knock_to_grant_seconds',
      'Time from a valid knock (step 1 packet or step 2 request) to its grant being in the kernel.',
      LATENCY_BUCKETS,
      ['step'],
    ),
    step1WorkerPackets: registry.counter(
      'knockport_step1_worker_packets_total',
      'Step-1 packets inspected per worker thread (worker = its queue number or log group).',
      ['worker'],
    ),
    step1WorkerRestarts: registry.counter('knockport_step1_worker_restarts_total', 'Step-1 worker threads that stopped on their own and were restarted.'),
    step1Workers: registry.gauge('knockport_step1_workers', 'Step-1 worker threads reading their queue now.'),
    liveSessions: registry.gauge('knockport_live_sessions', 'Live grants known to the daemon.', [], countLiveSessions),
  };
  // Every factor shows from the start (at 0), so an alert on the rate needs no series to appear first.
  for (const factor of LOCK_FACTORS) {
    metrics.lockouts.inc({ factor }, 0);
    metrics.lockoutRefusals.inc({ factor }, 0);
  }
  return metrics;
}
