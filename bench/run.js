#!/usr/bin/env node
// `sudo npm run bench`: every benchmark, then bench/RESULTS.md. Root (network namespaces the
// bench creates and removes, firewall rules only inside them); needs the compiled dist/ and the
// native addon (`npm run build`). Every phase is bounded in time; the whole run takes ~12 min
// (a hard limit stops it at 20).
// BENCH_FLOOD_SECONDS (default 4), BENCH_KNOCKS (latency knocks, default 220) and
// BENCH_FLOOD_KNOCKS (`knock-port knock` runs per flood rate, default 50) shorten or lengthen it.
// `sudo node bench/run.js cluster` runs only the cluster bench (bench/cluster.js, redis-server;
// ~1.5 min) and prints its JSON line; it is not part of the default run.
// `sudo node bench/run.js xdp latency` (either or both) runs only those sections on every
// backend (xdp ~6 min, latency ~2 min) and puts them into the last full run's results.json and
// RESULTS.md, which say which sections come from which run; the latency flood takes its rate
// from that run's SYN capacity.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { BACKENDS, DEFAULT_WORKERS, WORKERS_N, dropBench, inspectBench, knocksUnderFlood, latencyBench, synCapacity } from './daemon.js';
import { inspectorBench } from './inspector.js';
import { REPO_ROOT, createGateway } from './lib/gateway.js';
import { hasCommand } from './lib/netns.js';
import { recordedPhase } from './lib/phase.js';
import { machine } from './lib/proc.js';
import { renderResults } from './results.js';
import { scaleBench } from './scale.js';
import { xdpBench } from './xdp.js';

const FLOOD_SECONDS = Math.min(10, Math.max(2, Number(process.env.BENCH_FLOOD_SECONDS ?? 4)));
const LATENCY_KNOCKS = Math.min(600, Math.max(200, Number(process.env.BENCH_KNOCKS ?? 220)));
const FLOOD_KNOCKS = Math.min(200, Math.max(10, Number(process.env.BENCH_FLOOD_KNOCKS ?? 50)));
/** The latency flood runs at this share of the daemon's measured SYN capacity. */
const LATENCY_FLOOD_SHARE = 0.5;
/** Hard stop for the whole run: namespaces are removed on the way out. */
const RUN_LIMIT_MS = 20 * 60_000;

const log = (line) => process.stderr.write(`${line}\n`);

function preflight() {
  if (process.getuid?.() !== 0) return 'the benchmarks need root (network namespaces, NFQUEUE/NFLOG, raw sockets): run `sudo npm run bench`';
  if (!existsSync(join(REPO_ROOT, 'dist/daemon.js'))) return 'dist/ is missing: run `npm run build` first';
  if (!existsSync(join(REPO_ROOT, 'build/Release/knockport_native.node'))) return 'the native addon is not built: run `npm run build` first';
  for (const tool of ['ip', 'nft', 'iptables-nft', 'ipset', 'cc', 'curl', 'openssl', 'clang', 'bpftool']) {
    if (!hasCommand(tool)) return `the '${tool}' command is missing (see packaging/debian-packages.txt and debian-test-packages.txt)`;
  }
  return undefined;
}

function nfqueueThroughput() {
  const out = execFileSync(process.execPath, [join(REPO_ROOT, 'bench/nfqueue-throughput.js')], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, BENCH_SECONDS: String(FLOOD_SECONDS) },
  });
  return JSON.parse(out.trim().split('\n').pop());
}

/**
 * The grant-burst bench lives in its own file; loaded guarded so that the rest of the run
 * still works (and says so in RESULTS.md) where that file is missing or broken.
 */
async function loadGrantBurst() {
  try {
    const mod = await import('./grant-burst.js');
    if (typeof mod.grantBurstBench === 'function' && typeof mod.grantBurstSection === 'function') return mod;
    log('bench: bench/grant-burst.js lacks grantBurstBench/grantBurstSection: grant burst not run');
  } catch (err) {
    log(`bench: bench/grant-burst.js not loaded (${err.message}): grant burst not run`);
  }
  return undefined;
}

/** The machine's 1-minute load average: other work on the machine shows in every flood figure. */
const load1 = () => Math.round(loadavg()[0] * 100) / 100;

/** One phase; a failure is recorded in the results (and the log) instead of ending the run. */
const phase = (name, run) => recordedPhase(name, run, log);

/** The latency bench, its flood at LATENCY_FLOOD_SHARE of `capacityPps`, with the machine's load before and after. */
async function latencyWithLoad(gateway, backend, capacityPps) {
  const loadBefore = load1();
  const result = await phase('latency', () => latencyBench(gateway, backend, LATENCY_KNOCKS, { floodPps: LATENCY_FLOOD_SHARE * (capacityPps ?? 50_000), log }));
  return { ...result, load: [loadBefore, load1()] };
}

/** The gateway being measured, so that a fatal error or the time limit still removes its namespaces. */
let liveGateway;

function abort(reason, code) {
  log(`bench: ${reason}`);
  try {
    liveGateway?.destroy();
  } finally {
    process.exit(code);
  }
}

async function backendBench(backend, grantBurst) {
  const gateway = createGateway(backend.firewall.slice(0, 3));
  liveGateway = gateway;
  const result = { firewall: backend.firewall, capture: backend.capture };
  try {
    log(`${backend.name}: SYN and wrong-key floods, 1 and ${WORKERS_N} step-1 workers`);
    result.inspect = await phase('inspected floods', () => inspectBench(gateway, backend, { seconds: FLOOD_SECONDS, log }));
    log(`${backend.name}: junk and wrong-path floods`);
    result.drop = await phase('dropped floods', () => dropBench(gateway, backend, { seconds: FLOOD_SECONDS, log }));
    const capacityPps = result.inspect.error ? undefined : synCapacity(result.inspect);
    result.capacityPps = capacityPps;
    if (capacityPps) {
      log(`${backend.name}: knock-port knock during SYN floods at 1x and 2x ${Math.round(capacityPps)}/s`);
      result.knocks = await phase('knocks during floods', () => knocksUnderFlood(gateway, backend, { capacityPps, knocks: FLOOD_KNOCKS, log }));
    }
    log(`${backend.name}: latency (${LATENCY_KNOCKS} knocks idle, then as many during a flood)`);
    result.latency = await latencyWithLoad(gateway, backend, capacityPps);
    if (grantBurst) {
      log(`${backend.name}: grant burst`);
      result.grantBurst = await phase('grant burst', () => grantBurst.grantBurstBench(gateway, backend));
    }
    log(`${backend.name}: scale`);
    result.scale = await phase('scale', () => scaleBench(gateway, backend, log));
    return result;
  } finally {
    liveGateway = undefined;
    gateway.destroy();
  }
}

/** The XDP front on every backend, each on a gateway of its own. */
async function xdpPart() {
  const backends = {};
  for (const backend of BACKENDS) {
    const gateway = createGateway(`x${backend.firewall.slice(0, 2)}`);
    liveGateway = gateway;
    try {
      log(`${backend.name} with step1_xdp: SYN, junk and wrong-path floods against nft and XDP_DROP references, knocks during a SYN flood at full speed`);
      const loadBefore = load1();
      const rows = await phase('XDP front', () => xdpBench(gateway, backend, { seconds: FLOOD_SECONDS, knocks: FLOOD_KNOCKS, log }));
      backends[backend.name] = { ...rows, load: [loadBefore, load1()] };
    } finally {
      liveGateway = undefined;
      gateway.destroy();
    }
  }
  return { backends, floodSeconds: FLOOD_SECONDS, floodKnocks: FLOOD_KNOCKS };
}

/** The latency section alone on every backend, its flood at LATENCY_FLOOD_SHARE of the SYN capacity `capacities` gives. */
async function latencyPart(results, capacities) {
  for (const backend of BACKENDS) {
    const gateway = createGateway(backend.firewall.slice(0, 3));
    liveGateway = gateway;
    try {
      const capacityPps = capacities[backend.name];
      log(
        `${backend.name}: latency (${LATENCY_KNOCKS} knocks idle, then as many during a flood at ${Math.round(LATENCY_FLOOD_SHARE * (capacityPps ?? 50_000))}/s)`,
      );
      results.backends[backend.name] ??= { firewall: backend.firewall, capture: backend.capture };
      results.backends[backend.name].latency = await latencyWithLoad(gateway, backend, capacityPps);
    } finally {
      liveGateway = undefined;
      gateway.destroy();
    }
  }
}

/** The command line that made this run (its settings included). */
function commandLine(args = '') {
  const settings = Object.entries({
    BENCH_FLOOD_SECONDS: process.env.BENCH_FLOOD_SECONDS,
    BENCH_KNOCKS: process.env.BENCH_KNOCKS,
    BENCH_FLOOD_KNOCKS: process.env.BENCH_FLOOD_KNOCKS,
  })
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  return args ? `sudo ${settings}node bench/run.js ${args}` : `sudo ${settings}npm run bench`;
}

const RESULTS_JSON = join(REPO_ROOT, 'bench/results.json');

function writeResults(results, grantBurst) {
  writeFileSync(RESULTS_JSON, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(REPO_ROOT, 'bench/RESULTS.md'), renderResults(results, grantBurst?.grantBurstSection));
}

/**
 * `node bench/run.js xdp latency`: those sections only, written over the same sections of the
 * last run's results (kept for the others), with a note of which run each section comes from.
 */
async function sectionsOnly(sections, grantBurst) {
  const results = JSON.parse(readFileSync(RESULTS_JSON, 'utf8'));
  const started = Date.now();
  const rerun = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    command: commandLine(sections.join(' ')),
    sections,
    machine: machine(),
    loadAtStart: load1(),
  };
  if (sections.includes('xdp')) results.xdp = await xdpPart();
  if (sections.includes('latency')) {
    const capacities = Object.fromEntries(Object.entries(results.backends ?? {}).map(([name, b]) => [name, b.capacityPps]));
    results.backends ??= {};
    await latencyPart(results, capacities);
  }
  rerun.durationSeconds = (Date.now() - started) / 1000;
  results.reruns = [...(results.reruns ?? []).filter((r) => !r.sections.every((s) => sections.includes(s))), rerun];
  writeResults(results, grantBurst);
  log(`bench: wrote ${sections.join(' and ')} into bench/RESULTS.md and bench/results.json in ${Math.round(rerun.durationSeconds)} s`);
}

/** `node bench/run.js cluster`: the optional cluster section alone, one JSON line on stdout. */
async function clusterOnly() {
  const { clusterBench, clusterPreflight, reportCluster } = await import('./cluster.js');
  const problem = clusterPreflight();
  if (problem) {
    log(`bench: ${problem}`);
    process.exitCode = 1;
    return;
  }
  // Exits 1 when the run measured nothing (grants ignored, none applied).
  reportCluster(await clusterBench());
}

const SECTIONS = ['xdp', 'latency'];

async function main() {
  if (process.argv[2] === 'cluster') return clusterOnly();
  const sections = process.argv.slice(2);
  const unknown = sections.filter((s) => !SECTIONS.includes(s));
  if (unknown.length) {
    log(`bench: unknown section ${unknown.join(', ')} (sections: ${SECTIONS.join(', ')}, or cluster alone)`);
    process.exitCode = 1;
    return;
  }
  if (sections.length && !existsSync(RESULTS_JSON)) {
    log('bench: no bench/results.json to put the sections into: run the whole bench first');
    process.exitCode = 1;
    return;
  }
  const problem = preflight();
  if (problem) {
    log(`bench: ${problem}`);
    process.exitCode = 1;
    return;
  }
  const limit = setTimeout(() => abort('over the time limit, stopping', 2), RUN_LIMIT_MS);
  limit.unref();
  process.on('unhandledRejection', (err) => abort(`unexpected error: ${err?.stack ?? err}`, 1));
  process.on('SIGINT', () => abort('interrupted', 130));
  const grantBurst = await loadGrantBurst();
  if (sections.length) return sectionsOnly(sections, grantBurst);
  const started = Date.now();
  const results = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine: machine(),
    command: commandLine(),
    loadAtStart: load1(),
    floodSeconds: FLOOD_SECONDS,
    latencyKnocks: LATENCY_KNOCKS,
    floodKnocks: FLOOD_KNOCKS,
    latencyFloodShare: LATENCY_FLOOD_SHARE,
    defaultWorkers: DEFAULT_WORKERS,
    workersN: WORKERS_N,
    grantBurstLoaded: grantBurst !== undefined,
    backends: {},
  };
  log('inspector micro-benchmark');
  results.inspector = inspectorBench({ seconds: 1 });
  log('NFQUEUE transport micro-benchmark');
  results.nfqueue = await phase('NFQUEUE transport', async () => nfqueueThroughput());
  for (const backend of BACKENDS) results.backends[backend.name] = await backendBench(backend, grantBurst);
  results.xdp = await xdpPart();
  results.durationSeconds = (Date.now() - started) / 1000;
  writeResults(results, grantBurst);
  log(`bench: wrote bench/RESULTS.md and bench/results.json in ${Math.round(results.durationSeconds)} s`);
}

await main();
