/** The metrics every scrape must declare, shared by the registry and endpoint tests. */

/**
 * Every metric the daemon exposed with its hand-written registry (before prom-client), taken
 * from that registry's output: name, type and help, in order. None may be renamed.
 */
export const DAEMON_METRICS: ReadonlyArray<readonly [name: string, type: string, help: string]> = [
  ['knockport_step1_packets_total', 'counter', 'Step-1 packets by inspector outcome and reason.'],
  ['knockport_step2_requests_total', 'counter', 'Step-2 HTTPS requests by outcome.'],
  ['knockport_grants_total', 'counter', 'Grants given (step2 = HTTPS window, service = service port).'],
  ['knockport_revokes_total', 'counter', 'Grants revoked on request.'],
  ['knockport_capture_drops_total', 'counter', 'Step-1 packets lost before inspection (kernel queue full, ENOBUFS).'],
  ['knockport_lockouts_total', 'counter', 'Secrets locked after repeated wrong guesses from any sources, by factor.'],
  ['knockport_lockout_refusals_total', 'counter', 'Attempts refused because their secret was locked, by factor.'],
  ['knockport_knock_to_grant_seconds', 'histogram', 'Time from a valid knock (step 1 packet or step 2 request) to its grant being in the kernel.'],
  ['knockport_step1_worker_packets_total', 'counter', 'Step-1 packets inspected per worker thread (worker = its queue number or log group).'],
  ['knockport_step1_worker_restarts_total', 'counter', 'Step-1 worker threads that stopped on their own and were restarted.'],
  ['knockport_step1_workers', 'gauge', 'Step-1 worker threads reading their queue now.'],
  ['knockport_live_sessions', 'gauge', 'Live grants known to the daemon.'],
];

/** Metrics added since, after those above: name, type and help. */
export const ADDED_METRICS: ReadonlyArray<readonly [name: string, type: string, help: string]> = [
  ['knockport_app_grants_total', 'counter', 'Grants given per app of the running config (step2 = HTTPS window, service = service port).'],
  ['knockport_grant_failures_total', 'counter', 'Grants the firewall backend failed to put in the kernel, by backend and step.'],
  ['knockport_metrics_unauthorized_total', 'counter', 'Requests to the metrics endpoint refused for a missing or wrong bearer token.'],
];

/**
 * The step-2 outcomes, each a series from the start: one for every refusal, so no label tells a
 * right path, app or key from a wrong one; 413 and 429 answer apart on every path alike.
 */
export const STEP2_OUTCOMES = ['granted', 'forbidden', 'too-large', 'rate-limited', 'error'] as const;

/** Default process and Node.js metrics that must be in every scrape, with their types. */
export const DEFAULT_METRICS: ReadonlyArray<readonly [name: string, type: string]> = [
  ['process_cpu_seconds_total', 'counter'],
  ['process_start_time_seconds', 'gauge'],
  ['process_resident_memory_bytes', 'gauge'],
  ['process_open_fds', 'gauge'],
  ['process_max_fds', 'gauge'],
  ['nodejs_eventloop_lag_seconds', 'gauge'],
  ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
  ['nodejs_heap_size_used_bytes', 'gauge'],
  ['nodejs_heap_space_size_used_bytes', 'gauge'],
  ['nodejs_external_memory_bytes', 'gauge'],
  ['nodejs_active_handles_total', 'gauge'],
  ['nodejs_version_info', 'gauge'],
  ['nodejs_gc_duration_seconds', 'histogram'],
];

/** `[name, type, help]` of every metric in a scrape, in order. */
export function declared(text: string): Array<[string, string, string]> {
  const help = new Map([...text.matchAll(/^# HELP (\S+) (.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  return [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!, help.get(m[1]!) ?? '']);
}

/** `[labels, value]` of every series of one metric in a scrape, in order (labels as written, `{...}`). */
export function seriesOf(text: string, name: string): Array<[string, number]> {
  return [...text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'gm'))].map((m) => [m[1] ?? '', Number(m[2])]);
}
