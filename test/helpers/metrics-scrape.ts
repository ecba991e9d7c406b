/** The daemon's metrics endpoint as a kernel test reads it, from inside the gateway's namespace. */
import type { Netns } from './netns.js';
import { execIn } from './scenario.js';

/**
 * A metric's values per value of one label (summed over its other labels), scraped now from
 * `http://127.0.0.1:PORT/metrics` inside `ns`; a label value without a series is absent.
 */
export async function metricByLabel(ns: Netns, port: number, name: string, label: string): Promise<Record<string, number>> {
  const text = (await execIn(ns, 'curl', ['-sS', '-m', '2', `http://127.0.0.1:${port}/metrics`])).out;
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${name}\\{${label}="([a-z_]+)"[^}]*\\} (\\d+)$`, 'gm'))) counts[m[1]!] = (counts[m[1]!] ?? 0) + Number(m[2]);
  return counts;
}
