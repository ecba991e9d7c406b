/**
 * The real daemon under load, per firewall backend (each measurement on a freshly started
 * daemon, each flood bounded in time):
 *   - dropBench: junk and wrong-path floods, which the kernel prefilter drops before the
 *     capture: packets/s the gateway takes to a drop with knock-port running, against the same
 *     flood dropped by one nft rule alone (same run), and how many reached the inspector;
 *   - inspectBench: SYN and wrong-key floods, which the inspector must see: inspected/s with one
 *     step-1 worker and with N, the CPU of the sender, of each daemon thread and of the kernel;
 *   - knocksUnderFlood: `knock-port knock` from fresh addresses during a spoofed-source SYN flood
 *     at 1x and 2x the daemon's measured capacity;
 *   - latencyBench: knock-to-open latency idle, then during a SYN flood at half that capacity.
 * Every result carries the daemon's peak RSS during it.
 */
import { resolveStep1Workers } from '../dist/config/workers.js';
import { APP, KEYS, NET, PATHS, PORTS } from './lib/config.js';
import { prepareFlood } from './lib/flood.js';
import { metricSum, queueCounters, runKnockCli, runKnockClient, scrapeMetrics, spoofedReplies, startDaemon } from './lib/gateway.js';
import { sleep } from './lib/netns.js';
import { backlogDrops, memoryMb, startSampler } from './lib/proc.js';
import { percentiles } from './lib/stats.js';

export const BACKENDS = [
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'] },
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] },
];

/** Workers the daemon runs by default here (`step1_workers: auto`), and the N compared with one worker. */
export const DEFAULT_WORKERS = resolveStep1Workers('auto');
export const WORKERS_N = Math.max(2, DEFAULT_WORKERS);

const KNOCK = { server: NET.server, ports: PORTS, paths: PATHS, keys: KEYS, app: APP };
const COUNT_TABLE = 'inet kpbench_count';
/** Spacing of the `knock-port knock` runs during a flood: each is a Node process, so not too many at once. */
const KNOCK_SPACING_MS = 250;
/** The reference's knock clients get no answer: they are ended after this long. */
const REFERENCE_KNOCK_TIMEOUT_MS = 8_000;

/** Step-1 packets the inspector decided (every outcome, reason series excluded). */
export function inspected(gateway) {
  const values = scrapeMetrics(gateway);
  return {
    packets: metricSum(values, 'knockport_step1_packets_total') - metricSum(values, 'knockport_step1_packets_total', 'outcome="reason"'),
    captureDrops: metricSum(values, 'knockport_capture_drops_total'),
    workersAlive: values.knockport_step1_workers,
    outcomes: Object.fromEntries(
      Object.entries(values)
        .map(([series, value]) => [/^knockport_step1_packets_total\{outcome="([^"]*)"/.exec(series)?.[1], value])
        .filter(([outcome]) => outcome !== undefined && outcome !== 'reason'),
    ),
    // What the XDP front did, per outcome (absent without `step1_xdp`).
    xdp: Object.fromEntries(
      Object.entries(values)
        .map(([series, value]) => [/^knockport_step1_xdp_packets_total\{outcome="([^"]*)"/.exec(series)?.[1], value])
        .filter(([outcome]) => outcome !== undefined),
    ),
    // Packets each worker thread took from its queue or group: how evenly the kernel spread them.
    perWorker: Object.fromEntries(
      Object.entries(values)
        .map(([series, value]) => [/^knockport_step1_worker_packets_total\{worker="(\d+)"\}$/.exec(series)?.[1], value])
        .filter(([worker]) => worker !== undefined),
    ),
  };
}

/**
 * A counter on step-1 packets at prerouting before anything else (priority -400): with `drop`,
 * the kernel alone (the reference); without, what reached the gateway's firewall while
 * knock-port's own rules decide (every step-1 packet ends dropped, by the prefilter, the
 * capture or the daemon's verdict).
 */
function stepOneCounter(gateway, drop) {
  const [family, name] = COUNT_TABLE.split(' ');
  gateway.gw.exec(
    'nft',
    ['-f', '-'],
    `table ${COUNT_TABLE} {\n chain pre { type filter hook prerouting priority -400; tcp dport ${PORTS.step1} counter${drop ? ' drop' : ''}; }\n}\n`,
  );
  return {
    read() {
      const json = JSON.parse(gateway.gw.exec('nft', ['-j', 'list', 'table', family, name]));
      return json.nftables.find((o) => o.rule)?.rule.expr.find((e) => e.counter).counter.packets ?? 0;
    },
    remove: () => gateway.gw.tryExec('nft', ['delete', 'table', family, name]),
  };
}

/**
 * Packets the client's interface sent (the kernel's counter, not the sender's report): what the
 * generator really produced. Some senders print no count, or a wrong one, on some machines.
 */
export function clientTxPackets(gateway) {
  const text = gateway.client.tryExec('cat', [`/sys/class/net/${NET.clientIf}/statistics/tx_packets`]);
  return text.ok ? Number(text.out.trim()) : NaN;
}

/** The same flood dropped by one nft rule before anything else: what this machine can drop. */
export async function kernelReference(gateway, flood, seconds) {
  const counter = stepOneCounter(gateway, true);
  try {
    const backlogBefore = backlogDrops();
    const txBefore = clientTxPackets(gateway);
    const run = await flood.run(seconds);
    const dropped = counter.read();
    return {
      sent: run.sent,
      dropped,
      pps: dropped / run.seconds,
      offeredPps: (clientTxPackets(gateway) - txBefore) / run.seconds,
      senderReportedPps: run.sent / run.seconds,
      generatorCpuPercent: run.generatorCpuPercent,
      senderError: run.senderError,
      backlogDrops: backlogDrops() - backlogBefore,
    };
  } finally {
    counter.remove();
  }
}

/**
 * A flood through the daemon, for `seconds` or for as long as `during()` runs (its result is
 * returned as `during`). At `ratePps` when given, else as fast as the sender goes.
 */
export async function throughDaemon(gateway, daemon, flood, { seconds, ratePps, during, maxSeconds = 60 }) {
  const counter = stepOneCounter(gateway, false);
  try {
    const before = inspected(gateway);
    const queueBefore = queueCounters(gateway);
    const backlogBefore = backlogDrops();
    const sampler = startSampler(daemon.pid);
    const txBefore = clientTxPackets(gateway);
    const repliesBefore = spoofedReplies(gateway);
    const sending = flood.start(ratePps, maxSeconds);
    let duringResult;
    if (during) {
      await sleep(300); // the flood is under way before the first knock
      duringResult = await during();
    } else {
      await sleep(seconds * 1000);
    }
    const run = await sending.stop();
    const offered = clientTxPackets(gateway) - txBefore;
    await sleep(300); // the last batches
    const replies = spoofedReplies(gateway) - repliesBefore;
    const load = sampler.stop();
    const after = inspected(gateway);
    const queueAfter = queueCounters(gateway);
    const arrived = counter.read();
    // Inspected: packets the step-1 workers took from their queues and inspected (the daemon's
    // per-worker counter); decided: the inspector outcomes counted over the same span. Both are
    // kept: they should agree, and a gap between them is worth seeing.
    const decided = after.packets - before.packets;
    const perWorker = Object.fromEntries(Object.entries(after.perWorker).map(([w, v]) => [w, v - (before.perWorker[w] ?? 0)]));
    const count = Object.keys(perWorker).length ? Object.values(perWorker).reduce((a, b) => a + b, 0) : decided;
    return {
      sent: run.sent,
      seconds: run.seconds,
      offeredPps: offered / run.seconds,
      senderReportedPps: run.sent / run.seconds,
      arrived,
      arrivedPps: arrived / run.seconds,
      // SYN-ACKs (or anything) the gateway sent back to the spoofed sources, counted where the client drops them.
      spoofedReplies: replies,
      inspected: count,
      inspectedPps: count / run.seconds,
      queueDropped: queueAfter.queueDropped - queueBefore.queueDropped + (queueAfter.userDropped - queueBefore.userDropped),
      captureDrops: after.captureDrops - before.captureDrops,
      backlogDrops: backlogDrops() - backlogBefore,
      workersAlive: after.workersAlive,
      outcomes: Object.fromEntries(
        Object.entries(after.outcomes)
          .map(([o, v]) => [o, v - (before.outcomes[o] ?? 0)])
          .filter(([, v]) => v > 0),
      ),
      perWorker,
      decided,
      xdp: Object.fromEntries(Object.entries(after.xdp).map(([o, v]) => [o, v - (before.xdp[o] ?? 0)])),
      generatorCpuPercent: run.generatorCpuPercent,
      senderError: run.senderError,
      senderWaits: run.senderWaits,
      cpuPercent: load.cpuPercent,
      threads: load.threads,
      machine: load.machine,
      peakRssMb: load.peakRssMb,
      ratePps,
      during: duringResult,
    };
  } finally {
    counter.remove();
  }
}

/** Is step-1 capture still working: a few knocks from fresh addresses after the flood. */
async function captureAlive(gateway) {
  const results = await runKnockClient(gateway, { ...KNOCK, mode: 'latency', addresses: gateway.takeAddresses(3), timeoutMs: 3_000 }, 20_000);
  return { ok: results.filter((k) => k.step1.ok).length, failures: results.filter((k) => !k.step1.ok).map((k) => k.step1.reason) };
}

/**
 * A fresh daemon for one measurement. A start that fails is tried once more after a pause (the
 * previous daemon's netlink sockets may still be going away); that it was needed is recorded.
 */
export async function withDaemon(gateway, backend, workers, use, options = {}) {
  let daemon;
  let startRetried;
  try {
    daemon = await startDaemon(gateway, backend, { step1Workers: workers, ...options });
  } catch (err) {
    startRetried = String(err.message)
      .split('\n')
      .filter((l) => !l.startsWith('{'))
      .join(' ')
      .slice(0, 200);
    process.stderr.write(`  daemon start failed, retrying once: ${startRetried}\n`);
    await sleep(2_000);
    daemon = await startDaemon(gateway, backend, { step1Workers: workers, ...options });
  }
  try {
    const result = await use(daemon);
    return startRetried ? { ...result, startRetried } : result;
  } finally {
    await daemon.stop();
  }
}

export async function withFlood(gateway, kind, daemon, use) {
  const flood = prepareFlood(gateway, kind, daemon.stateDir);
  try {
    return await use(flood);
  } finally {
    flood.dispose();
  }
}

/** Junk and wrong-path floods: the gateway's drop rate with knock-port against the kernel alone. */
export async function dropBench(gateway, backend, { seconds, log }) {
  const rows = {};
  for (const kind of ['junk', 'wrongPath']) {
    rows[kind] = await withDaemon(gateway, backend, undefined, (daemon) =>
      withFlood(gateway, kind, daemon, async (flood) => {
        const kernel = await kernelReference(gateway, flood, seconds);
        const daemonRun = await throughDaemon(gateway, daemon, flood, { seconds });
        log(
          `  ${backend.name} ${kind}: kernel alone ${Math.round(kernel.pps)}/s, with knock-port ${Math.round(daemonRun.arrivedPps)}/s dropped, ${daemonRun.inspected} inspected`,
        );
        return { kernel, daemon: daemonRun };
      }),
    );
  }
  return rows;
}

/**
 * SYN and wrong-key floods at full speed, with one step-1 worker and with N: inspected/s and
 * where the CPU went. The kernel reference is taken once per flood, in the first daemon's run.
 */
export async function inspectBench(gateway, backend, { seconds, log }) {
  const rows = {};
  for (const kind of ['syn', 'wrongKey']) {
    rows[kind] = await inspectFlood(gateway, backend, kind, { seconds, log }).catch((err) => ({ error: String(err.message).slice(0, 300) }));
  }
  return rows;
}

/** One flood of inspectBench; a flood that cannot be run is recorded as such, the others still run. */
async function inspectFlood(gateway, backend, kind, { seconds, log }) {
  const row = { workers: {} };
  for (const workers of [1, WORKERS_N]) {
    row.workers[workers] = await withDaemon(gateway, backend, workers, (daemon) =>
      withFlood(gateway, kind, daemon, async (flood) => {
        if (!row.kernel) row.kernel = await kernelReference(gateway, flood, seconds);
        const full = await throughDaemon(gateway, daemon, flood, { seconds });
        const alive = await captureAlive(gateway);
        log(
          `  ${backend.name} ${kind}, ${workers} worker(s): kernel ${Math.round(row.kernel.pps)}/s, reached ${Math.round(full.arrivedPps)}/s, inspected ${Math.round(full.inspectedPps)}/s (per worker ${JSON.stringify(full.perWorker)}), capture alive after: ${alive.ok}/3 ${alive.failures.join(' ')}`,
        );
        return { ...full, aliveAfter: alive.ok, aliveFailures: alive.failures };
      }),
    );
  }
  return row;
}

/** The daemon's SYN capacity with its default worker count, from inspectBench. */
export function synCapacity(inspect) {
  if (inspect.syn.error) return undefined;
  const row = inspect.syn.workers[DEFAULT_WORKERS] ?? inspect.syn.workers[1];
  return Math.max(1_000, row.inspectedPps);
}

/**
 * `knock-port knock` from `knocks` fresh addresses, one started every KNOCK_SPACING_MS, during
 * `flood` at `ratePps` (undefined: the sender's maximum), the flood lasting until the last ends.
 */
/**
 * `knock-port knock` from each of `addresses`, one started every KNOCK_SPACING_MS; resolves
 * with every run's result once the last has ended.
 */
async function knockRuns(gateway, addresses, timeoutMs) {
  const pending = [];
  for (const from of addresses) {
    pending.push(runKnockCli(gateway, from, { timeoutMs }));
    await sleep(KNOCK_SPACING_MS);
  }
  return Promise.all(pending);
}

/**
 * The reference for the knock rows: the same flood at the sender's maximum with no daemon, one
 * nft rule dropping it (the kernel alone), while as many `knock-port knock` clients run as in
 * the rows (they get no answer and end after a few seconds). The clients are Node processes on
 * the cores the sender uses, so this is what the sender can deliver beside them here.
 */
export async function kernelReferenceWithKnocks(gateway, flood, { knocks }) {
  const counter = stepOneCounter(gateway, true);
  try {
    const txBefore = clientTxPackets(gateway);
    const sending = flood.start(undefined, (knocks * KNOCK_SPACING_MS) / 1000 + 30);
    await sleep(300); // the flood is under way before the first knock, as in the rows
    const results = await knockRuns(gateway, gateway.takeAddresses(knocks), REFERENCE_KNOCK_TIMEOUT_MS);
    const run = await sending.stop();
    const dropped = counter.read();
    return {
      dropped,
      pps: dropped / run.seconds,
      offeredPps: (clientTxPackets(gateway) - txBefore) / run.seconds,
      seconds: run.seconds,
      knocks: results.length,
      generatorCpuPercent: run.generatorCpuPercent,
      senderError: run.senderError,
    };
  } finally {
    counter.remove();
  }
}

/**
 * `knock-port knock` from `knocks` fresh addresses, one started every KNOCK_SPACING_MS, during
 * `flood` at `ratePps` (undefined: the sender's maximum), the flood lasting until the last ends.
 */
export async function knocksDuringFlood(gateway, daemon, flood, { ratePps, knocks }) {
  const addresses = gateway.takeAddresses(knocks);
  const run = await throughDaemon(gateway, daemon, flood, {
    ratePps,
    during: () => knockRuns(gateway, addresses, 30_000),
    maxSeconds: (knocks * KNOCK_SPACING_MS) / 1000 + 40,
  });
  const results = run.during;
  delete run.during;
  const codes = {};
  for (const r of results) if (!r.ok) codes[r.code] = (codes[r.code] ?? 0) + 1;
  return {
    ...run,
    knocks: results.length,
    knocksOk: results.filter((r) => r.ok).length,
    failureCodes: codes,
    knockMs: percentiles(results.filter((r) => r.ok).map((r) => r.ms)),
  };
}

/**
 * `knock-port knock` from fresh addresses during a spoofed-source SYN flood at 1x and 2x the
 * daemon's capacity (default worker count): one client started every KNOCK_SPACING_MS, the
 * flood lasting until the last one ends.
 */
export async function knocksUnderFlood(gateway, backend, { capacityPps, knocks, log }) {
  const rows = {};
  for (const multiple of [1, 2]) {
    rows[multiple] = await withDaemon(gateway, backend, undefined, (daemon) =>
      withFlood(gateway, 'syn', daemon, async (flood) => {
        const row = await knocksDuringFlood(gateway, daemon, flood, { ratePps: capacityPps * multiple, knocks });
        log(`  ${backend.name} knocks during a SYN flood at ${multiple}x capacity (${Math.round(capacityPps * multiple)}/s): ${row.knocksOk}/${row.knocks} ok`);
        return { ...row, multiple };
      }),
    );
  }
  return rows;
}

function latencyFigures(results, asked) {
  const step1 = results.filter((r) => r.step1.ok).map((r) => r.step1.ms);
  const step2 = results.filter((r) => r.step2?.ok).map((r) => r.step2.ms);
  return { asked, knocks: results.length, step1: percentiles(step1), step2: percentiles(step2), step1Ok: step1.length, step2Ok: step2.length };
}

/** Each half of the latency bench (idle, flood) starts no knock after this long: a slow daemon cannot stretch the run. */
const LATENCY_BUDGET_MS = 60_000;

/** Knock-to-open latency on one daemon: idle first, then during a SYN flood at `floodPps`. */
export async function latencyBench(gateway, backend, knocks, { floodPps, log }) {
  return withDaemon(gateway, backend, undefined, async (daemon) => {
    await sleep(1_000);
    const idleRssMb = memoryMb(daemon.pid).rss;
    // A knock takes at most 2 × timeoutMs, so the client ends by budget + 6 s.
    const options = { ...KNOCK, mode: 'latency', step2: true, timeoutMs: 3_000, budgetMs: LATENCY_BUDGET_MS };
    const clientLimitMs = LATENCY_BUDGET_MS + 20_000;
    const idle = latencyFigures(await runKnockClient(gateway, { ...options, addresses: gateway.takeAddresses(knocks) }, clientLimitMs), knocks);
    log(`  ${backend.name} idle: step 1 p99 ${idle.step1.p99?.toFixed(2)} ms, step 2 p99 ${idle.step2.p99?.toFixed(2)} ms`);
    const flooded = await withFlood(gateway, 'syn', daemon, async (flood) => {
      const during = async () => latencyFigures(await runKnockClient(gateway, { ...options, addresses: gateway.takeAddresses(knocks) }, clientLimitMs), knocks);
      const run = await throughDaemon(gateway, daemon, flood, { ratePps: floodPps, during, maxSeconds: clientLimitMs / 1000 + 10 });
      return { ...run.during, flood: { ...run, during: undefined } };
    });
    log(
      `  ${backend.name} during a SYN flood at ${Math.round(floodPps)}/s: step 1 p99 ${flooded.step1.p99?.toFixed(2)} ms, step 2 p99 ${flooded.step2.p99?.toFixed(2)} ms`,
    );
    return { idleRssMb, idle, flood: flooded };
  });
}
