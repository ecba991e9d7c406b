/** Control answers as text for operators; `--json` prints the protocol's own objects instead. */
import type { ClusterHealth, GateHealth, SessionView, TrialHealth, XdpHealth } from './protocol.js';

/** `knock-port sessions` as a table an operator reads at a glance. */
export function formatSessionsTable(sessions: readonly SessionView[]): string {
  if (sessions.length === 0) return 'no live grants\n';
  // The GATEWAY column only when clustered (some grant names the gateway that made it).
  const clustered = sessions.some((s) => s.gateway !== undefined);
  const rows = [
    ['IP', 'APP', 'USER', 'STEP', 'SECONDS LEFT', ...(clustered ? ['GATEWAY'] : [])],
    ...sessions.map((s) => [s.ip, s.app ?? '-', s.user ?? '(unattributed)', s.step, String(s.secondsLeft), ...(clustered ? [s.gateway ?? '-'] : [])]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return (
    rows
      .map((row) =>
        row
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** One line for `knock-port health`: how this gateway stands in its cluster. */
export function formatClusterHealth(cluster: ClusterHealth): string {
  const link = !cluster.connected ? 'store unreachable (working alone)' : cluster.synced ? 'store connected, in sync' : 'store connected, catching up';
  const lag = cluster.lagMs === undefined || !cluster.connected ? '' : `, lag ${Math.round(cluster.lagMs)} ms`;
  const unshared = cluster.unsharedRevokes ? `, ${cluster.unsharedRevokes} revoke(s) closed here, not yet shared` : '';
  const offset = cluster.clockOffsetMs;
  const clock = offset !== undefined && Math.abs(offset) >= 1000 ? `, clock ${offset > 0 ? '+' : ''}${(offset / 1000).toFixed(1)} s from the store's` : '';
  return `cluster: gateway ${cluster.gateway}, ${link}${lag}, ${cluster.backlog} waiting, ${cluster.reconnects} reconnects${unshared}${clock}\n`;
}

/** One line for `knock-port health` during a trial: when the gate goes, and how to keep it. */
export function formatTrialHealth(trial: TrialHealth): string {
  return `trial: the gate is removed in ${trial.secondsLeft} s (of ${trial.seconds} s) unless knock-port confirm is run\n`;
}

/** One line for `knock-port health` in report mode: what the gate would have dropped, per app port. */
export function formatGateHealth(gate: GateHealth): string {
  const counts = gate.wouldDrop.map((count) => `${count.port}/${count.protocol} ${count.packets}`).join(', ');
  return `gate: report mode, nothing dropped; packets it would have dropped: ${counts || 'none'}\n`;
}

/** One line for `knock-port health` with `step1_xdp` on: where the XDP front runs and what it did. */
export function formatXdpHealth(xdp: XdpHealth): string {
  const where = xdp.attached.map((a) => `${a.interface} (${a.mode})`).join(', ');
  const counts = Object.entries(xdp.counters)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
  const notes = xdp.notes.length > 0 ? `; ${xdp.notes.join('; ')}` : '';
  return `step-1 XDP (${xdp.configured}): ${where ? `on ${where}; ${counts}` : 'not running, the kernel rules alone serve step 1'}${notes}\n`;
}
