/** Small figures helpers: percentiles and rounding for the results table. */

/** p50/p95/p99/max (nearest rank) of a list of numbers; undefined fields for an empty list. */
export function percentiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p) => (sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]);
  return { n: sorted.length, p50: at(50), p95: at(95), p99: at(99), max: sorted.at(-1) };
}

export function median(values) {
  return percentiles(values).p50;
}
