/**
 * The real daemon under load, per firewall backend: knock-to-open latency, idle memory, and
 * for each step-1 flood the packets/s it inspects against the same flood dropped by the
 * kernel alone, queue drops, CPU, peak RSS, valid knocks during a flood at its own capacity,
 * and whether capture still works after the flood.
 */
import { APP, KEYS, NET, PATHS, PORTS } from './lib/config.js';
import { FLOOD_KINDS, prepareFlood } from './lib/flood.js';
import { metricSum, queueCounters, runKnockClient, scrapeMetrics, startDaemon } from './lib/gateway.js';
import { sleep } from './lib/netns.js';
import { memoryMb, startSampler } from './lib/proc.js';
import { percentiles } from './lib/stats.js';

export const BACKENDS = [
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'] },
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] },
];

const KNOCK = { server: NET.server, ports: PORTS, paths: PATHS, keys: KEYS, app: APP };
const REFERENCE_TABLE = 'inet kpbench_reference';

/** Step-1 packets the inspector decided (every outcome, reason series excluded). */
function inspected(gateway) {
  const values = scrapeMetrics(gateway);
  return {
    packets: metricSum(values, 'knockport_step1_packets_total') - metricSum(values, 'knockport_step1_packets_total', 'outcome="reason"'),
    captureDrops: metricSum(values, 'knockport_capture_drops_total'),
  };
}

/** The same flood dropped by one nft rule before anything else: what this machine can drop. */
async function kernelReference(gateway, flood, seconds) {
  gateway.gw.exec('nft', ['-f', '-'], `table ${REFERENCE_TABLE} {\n chain pre { type filter hook prerouting priority -400; tcp dport ${PORTS.step1} counter drop; }\n}\n`);
  try {
    const run = await flood.run(seconds);
    const json = JSON.parse(gateway.gw.exec('nft', ['-j', 'list', 'table', ...REFERENCE_TABLE.split(' ')]));
    const dropped = json.nftables.find((o) => o.rule)?.rule.expr.find((e) => e.counter).counter.packets ?? 0;
    return { sent: run.sent, dropped, pps: dropped / run.seconds };
  } finally {
    gateway.gw.exec('nft', ['delete', 'table', ...REFERENCE_TABLE.split(' ')]);
  }
}

/** A flood through the daemon; valid knocks from fresh addresses during it when `knocks` > 0. */
async function throughDaemon(gateway, daemon, flood, seconds, { ratePps, knocks = 0 } = {}) {
  const before = inspected(gateway);
  const queueBefore = queueCounters(gateway);
  const sampler = startSampler(daemon.pid);
  const knocking =
    knocks > 0
      ? runKnockClient(gateway, { ...KNOCK, mode: 'during', addresses: gateway.takeAddresses(knocks), spacingMs: (seconds * 1000) / (knocks + 1), timeoutMs: 5_000 }, (seconds + 15) * 1000)
      : Promise.resolve([]);
  const [run, knockResults] = await Promise.all([flood.run(seconds, ratePps), knocking]);
  await sleep(300); // the last batches
  const load = sampler.stop();
  const after = inspected(gateway);
  const queueAfter = queueCounters(gateway);
  const count = after.packets - before.packets;
  return {
    sent: run.sent,
    offeredPps: run.sent / run.seconds,
    inspected: count,
    inspectedPps: count / run.seconds,
    queueDropped: queueAfter.queueDropped - queueBefore.queueDropped + (queueAfter.userDropped - queueBefore.userDropped),
    captureDrops: after.captureDrops - before.captureDrops,
    cpuPercent: load.cpuPercent,
    peakRssMb: load.peakRssMb,
    knocks: knockResults.length,
    knocksOk: knockResults.filter((k) => k.step1.ok).length,
  };
}

/** Is step-1 capture still working: a few knocks from fresh addresses after the flood. */
async function captureAlive(gateway) {
  const results = await runKnockClient(gateway, { ...KNOCK, mode: 'latency', addresses: gateway.takeAddresses(3), timeoutMs: 3_000 }, 20_000);
  return results.filter((k) => k.step1.ok).length;
}

async function withDaemon(gateway, backend, use) {
  const daemon = await startDaemon(gateway, backend);
  try {
    return await use(daemon);
  } finally {
    await daemon.stop();
  }
}

export async function latencyBench(gateway, backend, knocks) {
  return withDaemon(gateway, backend, async (daemon) => {
    await sleep(1_000);
    const idleRssMb = memoryMb(daemon.pid).rss;
    const results = await runKnockClient(gateway, { ...KNOCK, mode: 'latency', step2: true, addresses: gateway.takeAddresses(knocks), timeoutMs: 3_000 }, knocks * 8_000);
    const step1 = results.filter((r) => r.step1.ok).map((r) => r.step1.ms);
    const step2 = results.filter((r) => r.step2?.ok).map((r) => r.step2.ms);
    return { idleRssMb, knocks: results.length, step1: percentiles(step1), step2: percentiles(step2), step1Ok: step1.length, step2Ok: step2.length };
  });
}

/**
 * Each flood runs against a freshly started daemon: full speed first (its capacity), then at
 * that capacity with valid knocks, then a check that capture still works.
 */
export async function floodBench(gateway, backend, { seconds, knocks, log }) {
  const rows = {};
  for (const kind of FLOOD_KINDS) {
    rows[kind] = await withDaemon(gateway, backend, async (daemon) => {
      const flood = prepareFlood(gateway, kind, daemon.stateDir);
      try {
        const kernel = await kernelReference(gateway, flood, seconds);
        const full = await throughDaemon(gateway, daemon, flood, seconds);
        const aliveAfterFull = await captureAlive(gateway);
        log(`  ${backend.name} ${kind}: kernel ${Math.round(kernel.pps)}/s, inspected ${Math.round(full.inspectedPps)}/s, capture alive after: ${aliveAfterFull}/3`);
        return { kernel, full, aliveAfterFull };
      } finally {
        flood.dispose();
      }
    });
    // At capacity, on a fresh daemon (a capture that died under the full flood would hide the figure).
    rows[kind].capacity = await withDaemon(gateway, backend, async (daemon) => {
      const flood = prepareFlood(gateway, kind, daemon.stateDir);
      try {
        const rate = Math.max(1_000, rows[kind].full.inspectedPps);
        const result = await throughDaemon(gateway, daemon, flood, seconds, { ratePps: rate, knocks });
        log(`  ${backend.name} ${kind} at capacity: ${result.knocksOk}/${result.knocks} knocks opened HTTPS`);
        return { ...result, ratePps: rate };
      } finally {
        flood.dispose();
      }
    });
  }
  return rows;
}
