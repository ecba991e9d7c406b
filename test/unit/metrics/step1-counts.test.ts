/** Copying the step-1 workers' monotonic totals into the metrics as deltas. */
import { describe, expect, it } from 'vitest';
import { createDaemonMetrics } from '../../../src/metrics/daemon-metrics.js';
import { Step1CountCopier, type Step1CounterSource, type Step1Drops, type Step1WorkerCount } from '../../../src/metrics/step1-counts.js';
import { seriesOf } from './expected.js';
import { valueOf } from './values.js';
import { STEP1_REASONS, STEP1_RESULTS, type Step1Reason, type Step1Result } from '../../../src/step1/decision.js';

class FakeWorkers implements Step1CounterSource {
  results = Object.fromEntries(STEP1_RESULTS.map((r) => [r, 0])) as Record<Step1Result, number>;
  reasons = Object.fromEntries(STEP1_REASONS.map((r) => [r, 0])) as Record<Step1Reason, number>;
  workers: Step1WorkerCount[] = [];
  dropped: Step1Drops = { kernel: 0, enobufs: 0 };
  restartCount = 0;
  counts() {
    return { results: { ...this.results }, reasons: { ...this.reasons } };
  }
  stats() {
    return this.workers.map((w) => ({ ...w }));
  }
  drops() {
    return { ...this.dropped };
  }
}

function setup() {
  const metrics = createDaemonMetrics(() => 0);
  const warnings: unknown[] = [];
  const copier = new Step1CountCopier(metrics, { warn: (fields: unknown) => warnings.push(fields) } as never);
  return { metrics, copier, warnings, workers: new FakeWorkers() };
}

describe('Step1CountCopier', () => {
  it('adds what the decision totals grew by since the last scrape', async () => {
    const { metrics, copier, workers } = setup();
    workers.results.granted = 2;
    workers.reasons['bad-key'] = 3;
    copier.copyCounts(workers);
    workers.results.granted = 5;
    copier.copyCounts(workers);
    copier.copyCounts(workers);
    expect(await valueOf(metrics.step1Packets, { outcome: 'granted', reason: '' })).toBe(5);
    expect(await valueOf(metrics.step1Packets, { outcome: 'rejected', reason: 'bad-credentials' })).toBe(3);
  });

  it('labels every series with its result: the total with reason "", and a breakdown by reason that adds up to it', async () => {
    const { metrics, copier, workers } = setup();
    Object.assign(workers.results, { syn: 4, granted: 1, retransmission: 2, ignored: 3, spoofed: 2, rejected: 5 });
    Object.assign(workers.reasons, {
      rst: 1,
      'pure-ack': 2,
      'bad-cookie': 2,
      'bad-path': 1,
      'too-large': 1,
      'bad-key': 1,
      'otp-required': 1,
      'rate-limited': 1,
    });
    copier.copyCounts(workers);
    const series = seriesOf(await metrics.registry.metrics(), 'knockport_step1_packets_total');
    expect(series.filter(([labels]) => labels.endsWith('reason=""}'))).toEqual(
      Object.entries(workers.results).map(([result, count]) => [`{outcome="${result}",reason=""}`, count]),
    );
    expect(series.filter(([labels]) => !labels.endsWith('reason=""}')).sort()).toEqual(
      [
        ['{outcome="ignored",reason="rst"}', 1],
        ['{outcome="ignored",reason="pure-ack"}', 2],
        ['{outcome="spoofed",reason="bad-cookie"}', 2],
        ['{outcome="rejected",reason="bad-path"}', 1],
        ['{outcome="rejected",reason="too-large"}', 1],
        ['{outcome="rejected",reason="bad-credentials"}', 2],
        ['{outcome="rejected",reason="rate-limited"}', 1],
      ].sort(),
    );
    expect(series.every(([labels]) => /^\{outcome="(syn|ignored|spoofed|granted|rejected|retransmission)",reason="[a-z-]*"\}$/.test(labels))).toBe(true);
  });

  it('counts a right key without its code like a wrong key: no series tells them apart', async () => {
    const rightKey = setup();
    rightKey.workers.results.rejected = 1;
    rightKey.workers.reasons['otp-required'] = 1;
    rightKey.copier.copyCounts(rightKey.workers);
    const wrongKey = setup();
    wrongKey.workers.results.rejected = 1;
    wrongKey.workers.reasons['bad-key'] = 1;
    wrongKey.copier.copyCounts(wrongKey.workers);
    const scrape = async (metrics: typeof rightKey.metrics) => seriesOf(await metrics.registry.metrics(), 'knockport_step1_packets_total');
    expect(await scrape(rightKey.metrics)).toEqual(await scrape(wrongKey.metrics));
    expect((await scrape(rightKey.metrics)).filter(([labels]) => labels.includes('bad-credentials'))).toEqual([
      ['{outcome="rejected",reason="bad-credentials"}', 1],
    ]);
  });

  it('counts packets per worker, starting again when another worker takes the slot, and shows idle workers at 0', async () => {
    const { metrics, copier, workers } = setup();
    workers.workers = [
      { slot: 0, number: 4, alive: true, packets: 7 },
      { slot: 1, number: 5, alive: false, packets: 0 },
    ];
    copier.copyCounts(workers);
    expect(await valueOf(metrics.step1WorkerPackets, { worker: '4' })).toBe(7);
    expect(await metrics.registry.metrics()).toMatch(/knockport_step1_worker_packets_total\{worker="5"\} 0/);
    expect(await valueOf(metrics.step1Workers)).toBe(1);
    workers.workers = [{ slot: 2, number: 4, alive: true, packets: 3 }];
    copier.copyCounts(workers);
    expect(await valueOf(metrics.step1WorkerPackets, { worker: '4' })).toBe(10);
  });

  it('brings the restart counter up to the pool restart count', async () => {
    const { metrics, copier, workers } = setup();
    workers.restartCount = 2;
    copier.copyCounts(workers);
    copier.copyCounts(workers);
    expect(await valueOf(metrics.step1WorkerRestarts)).toBe(2);
  });

  it('counts capture drops since the last tick, with a warning only when there were any', async () => {
    const { metrics, copier, warnings, workers } = setup();
    expect(copier.copyDrops(workers)).toEqual({ kernel: 0, enobufs: 0 });
    workers.dropped = { kernel: 4, enobufs: 1 };
    expect(copier.copyDrops(workers)).toEqual({ kernel: 4, enobufs: 1 });
    workers.dropped = { kernel: 6, enobufs: 1 };
    expect(copier.copyDrops(workers)).toEqual({ kernel: 2, enobufs: 0 });
    expect(await valueOf(metrics.captureDrops, { source: 'kernel' })).toBe(6);
    expect(await valueOf(metrics.captureDrops, { source: 'enobufs' })).toBe(1);
    expect(warnings).toEqual([
      { kernel: 4, enobufs: 1 },
      { kernel: 2, enobufs: 0 },
    ]);
  });
});
