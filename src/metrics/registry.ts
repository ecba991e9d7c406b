/**
 * A tiny Prometheus registry: counters and gauges with labels, and histograms, rendered in
 * the text exposition format (version 0.0.4). Enough for one daemon; no dependency.
 */

export type Labels<L extends string> = Readonly<Record<L, string>>;

interface Metric {
  readonly name: string;
  render(): string;
}

/** Label set -> stable series key (label order fixed by the metric's declaration). */
function seriesKey(labelNames: readonly string[], labels: Readonly<Record<string, string>> | undefined): string {
  return labelNames.map((name) => labels?.[name] ?? '').join('\u0000');
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const pairs = names.map((name, i) => `${name}="${escapeLabelValue(values[i] ?? '')}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class LabelledMetric<L extends string> implements Metric {
  protected readonly series = new Map<string, { labels: string[]; value: number }>();

  constructor(
    readonly name: string,
    protected readonly help: string,
    protected readonly labelNames: readonly L[],
    private readonly type: 'counter' | 'gauge',
  ) {}

  protected entry(labels: Labels<L> | undefined): { labels: string[]; value: number } {
    const key = seriesKey(this.labelNames, labels);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels: this.labelNames.map((n) => labels?.[n] ?? ''), value: 0 };
      this.series.set(key, entry);
    }
    return entry;
  }

  /** Current value of one series (0 when never touched). */
  get(labels?: Labels<L>): number {
    return this.series.get(seriesKey(this.labelNames, labels))?.value ?? 0;
  }

  protected samples(): Array<{ labels: string[]; value: number }> {
    return [...this.series.values()];
  }

  render(): string {
    let out = header(this.name, this.help, this.type);
    for (const { labels, value } of this.samples()) out += `${this.name}${formatLabels(this.labelNames, labels)} ${formatValue(value)}\n`;
    return out;
  }
}

export class Counter<L extends string = never> extends LabelledMetric<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, labelNames, 'counter');
  }

  inc(labels?: Labels<L>, amount = 1): void {
    if (amount < 0 || !Number.isFinite(amount)) throw new RangeError(`counter ${this.name} can only grow by a finite amount`);
    this.entry(labels).value += amount;
  }
}

export class Gauge<L extends string = never> extends LabelledMetric<L> {
  /** `collect`, when given, sets the unlabelled value at render time (e.g. a live count). */
  constructor(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    private readonly collect?: () => number,
  ) {
    super(name, help, labelNames, 'gauge');
  }

  set(value: number, labels?: Labels<L>): void {
    this.entry(labels).value = value;
  }

  inc(labels?: Labels<L>, amount = 1): void {
    this.entry(labels).value += amount;
  }

  dec(labels?: Labels<L>, amount = 1): void {
    this.entry(labels).value -= amount;
  }

  protected override samples(): Array<{ labels: string[]; value: number }> {
    if (this.collect) this.set(this.collect());
    return super.samples();
  }
}

/** Cumulative-bucket histogram; `buckets` are upper bounds, +Inf is implied. */
export class Histogram<L extends string = never> implements Metric {
  private readonly series = new Map<string, { labels: string[]; counts: number[]; sum: number; count: number }>();
  private readonly buckets: readonly number[];

  constructor(
    readonly name: string,
    private readonly help: string,
    buckets: readonly number[],
    private readonly labelNames: readonly L[] = [],
  ) {
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  observe(value: number, labels?: Labels<L>): void {
    const key = seriesKey(this.labelNames, labels);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels: this.labelNames.map((n) => labels?.[n] ?? ''), counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, entry);
    }
    this.buckets.forEach((bound, i) => {
      if (value <= bound) entry.counts[i]! += 1;
    });
    entry.sum += value;
    entry.count += 1;
  }

  render(): string {
    let out = header(this.name, this.help, 'histogram');
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((bound, i) => {
        out += `${this.name}_bucket${formatLabels(this.labelNames, labels, ['le', formatValue(bound)])} ${counts[i]}\n`;
      });
      out += `${this.name}_bucket${formatLabels(this.labelNames, labels, ['le', '+Inf'])} ${count}\n`;
      out += `${this.name}_sum${formatLabels(this.labelNames, labels)} ${formatValue(sum)}\n`;
      out += `${this.name}_count${formatLabels(this.labelNames, labels)} ${count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>();
  private readonly collectors: Array<() => void> = [];

  /** Runs `collect` before every render, to copy counts kept elsewhere (off the hot path). */
  beforeRender(collect: () => void): void {
    this.collectors.push(collect);
  }

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.register(new Counter<L>(name, help, labelNames), labelNames);
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], collect?: () => number): Gauge<L> {
    return this.register(new Gauge<L>(name, help, labelNames, collect), labelNames);
  }

  histogram<L extends string = never>(name: string, help: string, buckets: readonly number[], labelNames: readonly L[] = []): Histogram<L> {
    return this.register(new Histogram<L>(name, help, buckets, labelNames), labelNames);
  }

  /** The whole registry in Prometheus text format. */
  render(): string {
    for (const collect of this.collectors) collect();
    return [...this.metrics.values()].map((m) => m.render()).join('');
  }

  private register<M extends Metric>(metric: M, labelNames: readonly string[]): M {
    if (!METRIC_NAME.test(metric.name)) throw new RangeError(`invalid metric name '${metric.name}'`);
    for (const label of labelNames) if (!LABEL_NAME.test(label) || label === 'le') throw new RangeError(`invalid label name '${label}' on ${metric.name}`);
    if (this.metrics.has(metric.name)) throw new RangeError(`metric ${metric.name} registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }
}
