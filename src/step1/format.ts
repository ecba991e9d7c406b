/** How `replay` and `watch` print decisions: one line each, text or JSON. */
import { STEP1_RESULTS, type Step1Counters, type Step1Decision } from './decision.js';

/**
 * The JSON line: time, endpoints, result, and reason/app/user where they apply; `prefilter:
 * "drop"` when the kernel's step-1 prefilter would have dropped the packet before the daemon
 * saw it (the decision is still the daemon's own). No secrets.
 */
export function decisionRecord(timeMs: number, d: Step1Decision, prefilterDrop = false): Record<string, string | number> {
  const record: Record<string, string | number> = {
    time: new Date(timeMs).toISOString(),
    src: d.src,
    sport: d.sport,
    dst: d.dst,
    dport: d.dport,
    result: d.result,
  };
  if (d.reason !== undefined) record.reason = d.reason;
  if (d.app !== undefined) record.app = d.app;
  if (d.user !== undefined) record.user = d.user;
  if (prefilterDrop) record.prefilter = 'drop';
  return record;
}

export function formatDecisionJson(timeMs: number, d: Step1Decision, prefilterDrop = false): string {
  return JSON.stringify(decisionRecord(timeMs, d, prefilterDrop));
}

export function formatDecisionText(timeMs: number, d: Step1Decision, prefilterDrop = false): string {
  const endpoint = (address: string, port: number) => (address === '' ? '?' : `${d.family === 6 ? `[${address}]` : address}:${port}`);
  let line = `${new Date(timeMs).toISOString()} ${endpoint(d.src, d.sport)} -> ${endpoint(d.dst, d.dport)} ${d.result}`;
  if (d.reason !== undefined) line += ` reason=${d.reason}`;
  if (d.app !== undefined) line += ` app=${d.app}`;
  if (d.user !== undefined) line += ` user=${d.user}`;
  if (prefilterDrop) line += ' prefilter=drop';
  return line;
}

/** `prefilterDropped`: packets the kernel prefilter would have dropped, named when there are any. */
export function formatSummary(counters: Step1Counters, skipped: number, prefilterDropped = 0): string {
  const total = STEP1_RESULTS.reduce((sum, r) => sum + counters.results[r], 0);
  const parts = STEP1_RESULTS.map((r) => `${r}=${counters.results[r]}`);
  const kernel = prefilterDropped > 0 ? `; ${prefilterDropped} dropped by the kernel prefilter before the daemon` : '';
  return `${total} step-1 packets: ${parts.join(' ')} (${skipped} other frames skipped${kernel})`;
}
