/**
 * Report mode (`gate_mode: report`) as both rulesets write it and the backend reads it back:
 * each rule that counts a packet the gate would have dropped is named after the app's protocol
 * and port, and the counters are added up per app for `health` and the metrics. Pure.
 */
import type { Protocol } from '../config/types.js';
import type { FirewallPlan } from './plan.js';

/** Report mode's rules are named `knock-port would drop tcp/22`; their counters are the would-be drops. */
export const WOULD_DROP_COMMENT = 'knock-port would drop';

/**
 * Report mode's kernel log lines: the prefix of each, and how many per rule (enough to see who,
 * never a flood of the log).
 */
export const WOULD_DROP_LOG = { prefix: 'knock-port would drop: ', perMinute: 10, burst: 5 } as const;

/** Packets report mode let pass at one protected port (all families and interfaces together). */
export interface WouldDropCount {
  protocol: Protocol;
  port: number;
  packets: number;
}

export function wouldDropComment(protocol: Protocol, port: number): string {
  return `${WOULD_DROP_COMMENT} ${protocol}/${port}`;
}

/** The protocol and port a report-mode comment names, or undefined for any other comment. */
export function parseWouldDropComment(comment: string): { protocol: Protocol; port: number } | undefined {
  const match = /^knock-port would drop (tcp|udp)\/(\d{1,5})$/.exec(comment);
  return match ? { protocol: match[1] as Protocol, port: Number(match[2]) } : undefined;
}

/**
 * Adds up the counters of report mode's rules per protocol and port, with a zero for every
 * app's port that has none yet, sorted by port: what `health` and the metrics show.
 */
export function sumWouldDrop(plan: FirewallPlan, counted: ReadonlyArray<{ comment: string; packets: number }>): WouldDropCount[] {
  const totals = new Map<string, WouldDropCount>();
  for (const app of [...plan.localApps, ...plan.forwardedApps.map((f) => f.app)]) {
    totals.set(`${app.protocol}/${app.port}`, { protocol: app.protocol, port: app.port, packets: 0 });
  }
  for (const { comment, packets } of counted) {
    const key = parseWouldDropComment(comment);
    const total = key && totals.get(`${key.protocol}/${key.port}`);
    if (total) total.packets += packets;
  }
  return [...totals.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}
