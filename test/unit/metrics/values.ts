/** Reads one series of a prom-client counter or gauge in a test (0 when never touched). */
import type { Counter, Gauge } from 'prom-client';

export async function valueOf<L extends string>(metric: Counter<L> | Gauge<L>, labels: Partial<Record<L, string>> = {}): Promise<number> {
  const wanted = Object.entries(labels);
  const { values } = await metric.get();
  const series = values.find((value) => {
    const seen = Object.entries(value.labels);
    return seen.length === wanted.length && wanted.every(([name, label]) => String(value.labels[name as L]) === label);
  });
  return series?.value ?? 0;
}
