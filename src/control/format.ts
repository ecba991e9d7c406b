/** Control answers as text for operators; `--json` prints the protocol's own objects instead. */
import type { SessionView } from './protocol.js';

/** `knock-port sessions` as a table an operator reads at a glance. */
export function formatSessionsTable(sessions: readonly SessionView[]): string {
  if (sessions.length === 0) return 'no live grants\n';
  const rows = [
    ['IP', 'APP', 'USER', 'STEP', 'SECONDS LEFT'],
    ...sessions.map((s) => [s.ip, s.app ?? '-', s.user ?? '(unattributed)', s.step, String(s.secondsLeft)]),
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
