#!/usr/bin/env node
// `sudo npm run bench`: every benchmark, then bench/RESULTS.md. Root (network namespaces the
// bench creates and removes, firewall rules only inside them); needs the compiled dist/ and the
// native addon (`npm run build`). Every phase is bounded in time; the whole run takes ~8 min.
// BENCH_FLOOD_SECONDS (default 4) and BENCH_KNOCKS (default 220) shorten or lengthen it.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BACKENDS, floodBench, latencyBench } from './daemon.js';
import { inspectorBench } from './inspector.js';
import { REPO_ROOT, createGateway } from './lib/gateway.js';
import { hasCommand } from './lib/netns.js';
import { machine } from './lib/proc.js';
import { renderResults } from './results.js';
import { scaleBench } from './scale.js';

const FLOOD_SECONDS = Math.min(10, Math.max(2, Number(process.env.BENCH_FLOOD_SECONDS ?? 4)));
const LATENCY_KNOCKS = Math.min(600, Math.max(200, Number(process.env.BENCH_KNOCKS ?? 220)));
const KNOCKS_DURING_FLOOD = 50;
/** Hard stop for the whole run: namespaces are removed on the way out. */
const RUN_LIMIT_MS = 15 * 60_000;

const log = (line) => process.stderr.write(`${line}\n`);

function preflight() {
  if (process.getuid?.() !== 0) return 'the benchmarks need root (network namespaces, NFQUEUE/NFLOG, raw sockets): run `sudo npm run bench`';
  if (!existsSync(join(REPO_ROOT, 'dist/daemon.js'))) return 'dist/ is missing: run `npm run build` first';
  if (!existsSync(join(REPO_ROOT, 'build/Release/knockport_native.node'))) return 'the native addon is not built: run `npm run build` first';
  for (const tool of ['ip', 'nft', 'iptables-nft', 'ipset', 'trafgen', 'netsniff-ng', 'curl', 'openssl']) {
    if (!hasCommand(tool)) return `the '${tool}' command is missing (see packaging/debian-packages.txt and debian-test-packages.txt)`;
  }
  return undefined;
}

function nfqueueThroughput() {
  const out = execFileSync(process.execPath, [join(REPO_ROOT, 'bench/nfqueue-throughput.js')], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, BENCH_SECONDS: String(FLOOD_SECONDS) } });
  return JSON.parse(out.trim().split('\n').pop());
}

async function backendBench(backend) {
  const gateway = createGateway(backend.firewall.slice(0, 3));
  try {
    log(`${backend.name}: latency (${LATENCY_KNOCKS} knocks)`);
    const latency = await latencyBench(gateway, backend, LATENCY_KNOCKS);
    log(`${backend.name}: floods`);
    const floods = await floodBench(gateway, backend, { seconds: FLOOD_SECONDS, knocks: KNOCKS_DURING_FLOOD, log });
    log(`${backend.name}: scale`);
    const scale = await scaleBench(gateway, backend, log);
    return { firewall: backend.firewall, capture: backend.capture, latency, floods, scale };
  } finally {
    gateway.destroy();
  }
}

async function main() {
  const problem = preflight();
  if (problem) {
    log(`bench: ${problem}`);
    process.exitCode = 1;
    return;
  }
  const limit = setTimeout(() => {
    log('bench: over the time limit, stopping');
    process.exit(2); // the gateways' namespaces hold only bench processes; `ip netns` entries are named kpb*
  }, RUN_LIMIT_MS);
  limit.unref();
  const started = Date.now();
  const results = { date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: machine(), floodSeconds: FLOOD_SECONDS, backends: {} };
  log('inspector micro-benchmark');
  results.inspector = inspectorBench({ seconds: 1 });
  log('NFQUEUE transport micro-benchmark');
  results.nfqueue = nfqueueThroughput();
  for (const backend of BACKENDS) results.backends[backend.name] = await backendBench(backend);
  results.durationSeconds = (Date.now() - started) / 1000;
  writeFileSync(join(REPO_ROOT, 'bench/RESULTS.md'), renderResults(results));
  writeFileSync(join(REPO_ROOT, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`bench: wrote bench/RESULTS.md and bench/results.json in ${Math.round(results.durationSeconds)} s`);
}

await main();
