#!/usr/bin/env node
// `sudo node bench/cluster.js` (or `sudo node bench/run.js cluster`): the cluster (docs/cluster.md)
// measured against a real redis-server and a real daemon ("gateway B"), in namespaces it creates
// and removes. Needs dist/ (`npm run build`), redis-server, root. Prints one JSON line; ~2-3 min.
//
// 1. Propagation: "gateway A" (this bench, signing with the cluster key, exactly as the store
//    publishes: SET PXAT + PUBLISH in one transaction) grants a fresh client address; the client
//    opens a new TCP connection through B every 1 ms until one gets in. Reference, same run: the
//    same probe against B's unprotected port (what the probe itself costs). Goal: p99 < 50 ms.
// 2. Joining with 100,000 live grants: 100k signed grants written to the store (pipelined), then
//    B starts fresh (no state file) and the time until its snapshot is applied is measured
//    (knockport_cluster_received_total and knockport_live_sessions), with B's RSS and redis's
//    used_memory. Bounded (120 s): what was reached is reported on a timeout.
// BENCH_CLUSTER_GRANTS (default 200, at most 1000) and BENCH_CLUSTER_LIVE (default 100000).
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { clusterSigningKey, encodeClusterMessage } from '../dist/cluster/message.js';
import { entryKey, sequencedValue } from '../dist/cluster/store-parts.js';
import { APP, NET, PORTS, USER, benchConfigYaml } from './lib/config.js';
import { REPO_ROOT, createGateway, metricSum, scrapeMetrics } from './lib/gateway.js';
import { Netns, execAsync, hasCommand, sleep, wire } from './lib/netns.js';
import { machine, memoryMb } from './lib/proc.js';
import { percentiles } from './lib/stats.js';

const GRANTS = Math.min(1000, Math.max(20, Number(process.env.BENCH_CLUSTER_GRANTS ?? 200)));
const LIVE = Math.min(200_000, Math.max(1000, Number(process.env.BENCH_CLUSTER_LIVE ?? 100_000)));
/** Time budget of the propagation samples. */
const PROPAGATION_BUDGET_MS = 60_000;
/** How long the joining gateway may take to apply the snapshot. */
const JOIN_LIMIT_MS = 120_000;
/** Hard stop for the whole script: namespaces are removed on the way out. */
const RUN_LIMIT_MS = 6 * 60_000;
const GOAL_P99_MS = 50;
const LAN = { gw: '192.0.2.1', store: '192.0.2.50', gwIf: 'kpblan0', storeIf: 'kpbst0' };
const CLI = join(REPO_ROOT, 'bin/knock-port.js');
const PROBE = fileURLToPath(new URL('./lib/cluster-probe.js', import.meta.url));

const log = (line) => process.stderr.write(`${line}\n`);

export function clusterPreflight() {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables): run `sudo node bench/cluster.js`';
  if (!existsSync(join(REPO_ROOT, 'dist/daemon.js'))) return 'dist/ is missing: run `npm run build` first';
  for (const tool of ['ip', 'nft', 'curl', 'openssl', 'redis-server']) if (!hasCommand(tool)) return `the '${tool}' command is missing`;
  return undefined;
}

function clusterConfig(gateway, { stateDir, key, prefix }) {
  const base = benchConfigYaml({ firewall: 'nftables', capture: 'nflog', stateDir, controlSocket: join(gateway.dir, 'control.sock') });
  const cluster = `  cluster:\n    gateway: gw-b\n    key: "${key}"\n    redis:\n      url: redis://${LAN.store}:6379\n    prefix: "${prefix}"\n`;
  return base.replace('  lockout_app_failures: 0\n', `  lockout_app_failures: 0\n${cluster}`);
}

async function startDaemon(gateway, config) {
  const configPath = join(gateway.dir, 'config-cluster.yaml');
  writeFileSync(configPath, config, { mode: 0o600 });
  const startedAt = Date.now();
  const proc = gateway.gw.spawn(process.execPath, [CLI, 'run', '-c', configPath, '--cert', gateway.cert, '--key', gateway.key]);
  const output = [];
  proc.stdout.on('data', (c) => output.push(...c.toString().split('\n').filter(Boolean)));
  proc.stderr.on('data', (c) => output.push(...c.toString().split('\n').filter(Boolean)));
  const exited = new Promise((r) => proc.once('exit', () => r()));
  while (!output.some((l) => l.includes('knock-port ready'))) {
    if (proc.exitCode !== null || Date.now() - startedAt > 30_000) throw new Error(`daemon did not start:\n${output.slice(-20).join('\n')}`);
    await sleep(20);
  }
  return {
    pid: proc.pid,
    output,
    readyMs: Date.now() - startedAt,
    startedAt,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function startRedis(store, dir) {
  const socket = join(dir, 'redis.sock');
  const args = ['--port', '6379', '--bind', LAN.store, '--unixsocket', socket, '--unixsocketperm', '700', '--protected-mode', 'no'];
  const child = store.spawn('redis-server', [...args, '--save', '', '--appendonly', 'no', '--dir', dir]);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const deadline = Date.now() + 10_000;
  while (!output.includes('Ready to accept connections')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start: ${output}`);
    await sleep(20);
  }
  return { child, socket };
}

const round = (n, d = 2) => (Number.isFinite(n) ? Number(n.toFixed(d)) : null);
const roundP = (p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, k === 'n' ? v : round(v)]));

async function propagation(gateway, ctx) {
  const addresses = gateway.takeAddresses(GRANTS);
  const input = {
    socket: ctx.socket,
    key: ctx.key,
    prefix: ctx.prefix,
    app: APP,
    user: USER,
    server: NET.server,
    port: PORTS.service,
    refPort: PORTS.unprotected,
    addresses,
    budgetMs: PROPAGATION_BUDGET_MS,
  };
  const r = await new Promise((resolve) => {
    const child = gateway.client.spawn(process.execPath, [PROBE], { env: { ...process.env, BENCH_PROBE: JSON.stringify(input) } });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROPAGATION_BUDGET_MS + 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
  if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.err.slice(-500)}`);
  const { samples, timeouts, elapsedMs } = JSON.parse(r.out.trim().split('\n').pop());
  const grant = percentiles(samples.map((s) => s.grant).filter((v) => v !== null));
  const ref = percentiles(samples.map((s) => s.ref).filter((v) => v !== null));
  return {
    samples: samples.length,
    timeouts,
    seconds: round(elapsedMs / 1000, 1),
    grantToOpenMs: roundP(grant),
    probeReferenceMs: roundP(ref),
    p99OverReference: round(grant.p99 / ref.p99),
    goalP99Ms: GOAL_P99_MS,
    goalMet: timeouts === 0 && grant.p99 < GOAL_P99_MS,
  };
}

async function writeLiveGrants(redis, ctx) {
  const started = Date.now();
  const now = Date.now();
  // The cluster name is the prefix (the config sets none); sequences as the store's script gives them (microseconds).
  const key = clusterSigningKey(Buffer.from(ctx.key, 'utf8'), ctx.prefix);
  const firstSeq = now * 1000;
  for (let base = 0; base < LIVE; base += 5000) {
    const tx = redis.pipeline();
    for (let i = base; i < Math.min(LIVE, base + 5000); i++) {
      // 10.100.0.0 - 10.101.134.159: no client address, nothing else in the bench uses them.
      const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      const body = { kind: 'service', ip, app: APP, user: USER, expiresAt: now + 900_000, gateway: 'gw-a', issuedAt: now };
      const text = encodeClusterMessage(key, { type: 'grant', body });
      tx.set(entryKey(ctx.prefix, 'grant', `gw-a:service:${ip}:${APP}:${USER}`), sequencedValue(firstSeq + i, text), 'PXAT', body.expiresAt);
    }
    await tx.exec();
  }
  return Date.now() - started;
}

/** Grant keys under the prefix (the store also holds the sequence and the grant indexes). */
async function countGrantKeys(redis, prefix) {
  const keys = new Set(); // SCAN may return a key twice
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}grant:*`, 'COUNT', 10_000);
    for (const key of batch) keys.add(key);
    cursor = next;
  } while (cursor !== '0');
  return keys.size;
}

const usedMemoryMb = async (redis) => Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? NaN) / 2 ** 20;

async function join100k(gateway, ctx, redis, daemon) {
  const writeMs = await writeLiveGrants(redis, ctx);
  const storeGrants = await countGrantKeys(redis, ctx.prefix); // the 100k and the propagation's grants
  const redisMb = await usedMemoryMb(redis);
  log(`  ${LIVE} grants written in ${writeMs} ms (store: ${storeGrants} grant keys, ${redisMb.toFixed(1)} MB); restarting B fresh`);
  await daemon.stop();
  rmSync(ctx.stateDir, { recursive: true, force: true });
  const b = await startDaemon(gateway, clusterConfig(gateway, ctx));
  ctx.live = b;
  const rssAtReady = memoryMb(b.pid).rss;
  let received = 0;
  let sessions = 0;
  let receivedAllMs = null;
  let appliedAllMs = null;
  let peakRss = rssAtReady;
  while (Date.now() - b.startedAt < JOIN_LIMIT_MS) {
    try {
      const m = scrapeMetrics(gateway);
      received = metricSum(m, 'knockport_cluster_received_total', 'kind="grant"');
      sessions = metricSum(m, 'knockport_live_sessions');
    } catch {
      /* busy: the next scrape */
    }
    peakRss = Math.max(peakRss, memoryMb(b.pid).rss);
    if (receivedAllMs === null && received >= storeGrants) receivedAllMs = Date.now() - b.startedAt;
    if (sessions >= storeGrants) {
      appliedAllMs = Date.now() - b.startedAt;
      break;
    }
    await sleep(200);
  }
  const mem = memoryMb(b.pid);
  // One look at the kernel: how many service grants B's nftables set holds.
  const sets = await execAsync(gateway.gw, 'sh', ['-c', 'nft list ruleset | grep -o expires | wc -l'], 60_000);
  return {
    grants: LIVE,
    storeKeys: storeGrants,
    writeSeconds: round(writeMs / 1000),
    redisUsedMemoryMb: round(redisMb, 1),
    daemonReadySeconds: round(b.readyMs / 1000),
    snapshotReceivedSeconds: receivedAllMs === null ? null : round(receivedAllMs / 1000),
    appliedSeconds: appliedAllMs === null ? null : round(appliedAllMs / 1000),
    timedOut: appliedAllMs === null,
    reached: { received, sessions },
    kernelElementsWithExpiry: Number(sets.out.trim()) || null,
    rssMb: { emptyStore: round(ctx.rssEmpty, 0), atReady: round(rssAtReady, 0), after: round(mem.rss, 0), peak: round(Math.max(peakRss, mem.hwm), 0) },
    limitSeconds: JOIN_LIMIT_MS / 1000,
  };
}

export async function clusterBench() {
  const gateway = createGateway('cl');
  let store;
  let redisProc;
  let redis;
  const ctx = { key: randomBytes(32).toString('hex'), prefix: `kpb-${randomBytes(3).toString('hex')}:`, stateDir: join(gateway.dir, 'state-cluster') };
  const cleanup = () => {
    try {
      redis?.disconnect();
      redisProc?.kill('SIGKILL');
      store?.destroy();
    } finally {
      gateway.destroy();
    }
  };
  const limit = setTimeout(() => {
    log('bench cluster: over the time limit, stopping');
    cleanup();
    process.exit(2);
  }, RUN_LIMIT_MS);
  limit.unref();
  try {
    store = Netns.create('cls');
    wire(gateway.gw, store, { ifA: LAN.gwIf, ifB: LAN.storeIf, a4: LAN.gw, b4: LAN.store });
    const started = await startRedis(store, gateway.dir);
    redisProc = started.child;
    ctx.socket = started.socket;
    redis = new Redis({ path: ctx.socket, maxRetriesPerRequest: 1 });
    const daemon = await startDaemon(gateway, clusterConfig(gateway, ctx));
    ctx.live = daemon;
    await sleep(1000); // connected and synced (empty store)
    ctx.rssEmpty = memoryMb(daemon.pid).rss;
    const result = { bench: 'cluster', date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: machine() };
    log(`cluster: grant on A -> port open on B (${GRANTS} grants, at most ${PROPAGATION_BUDGET_MS / 1000} s)`);
    try {
      result.propagation = await propagation(gateway, ctx);
    } catch (err) {
      result.propagation = { error: String(err.message).slice(0, 300) };
    }
    const metrics = scrapeMetrics(gateway);
    result.propagation.rejected = metricSum(metrics, 'knockport_cluster_rejected_total');
    result.propagation.ignored = metricSum(metrics, 'knockport_cluster_ignored_total');
    log(`cluster: a gateway joining with ${LIVE} live grants in the store`);
    try {
      result.join = await join100k(gateway, ctx, redis, daemon);
    } catch (err) {
      result.join = { error: String(err.message).slice(0, 300) };
    }
    await ctx.live?.stop();
    result.failures = failures(result);
    return result;
  } finally {
    clearTimeout(limit);
    cleanup();
  }
}

/**
 * Why the figures measure nothing, if they do not: B refused or ignored grants (wrong key, user or
 * app), no grant opened a port, or the joining gateway did not apply every grant in the store.
 */
export function failures(result) {
  const found = [];
  const p = result.propagation ?? {};
  if (p.error) found.push(`propagation: ${p.error}`);
  else {
    if (p.rejected > 0 || p.ignored > 0) found.push(`propagation: B refused ${p.rejected} and ignored ${p.ignored} grant(s)`);
    if (!(p.grantToOpenMs?.n > 0)) found.push('propagation: no grant opened a port on B');
    if (p.timeouts > 0) found.push(`propagation: ${p.timeouts} grant(s) never opened a port on B`);
  }
  const j = result.join ?? {};
  if (j.error) found.push(`join: ${j.error}`);
  else if (j.timedOut || !(j.reached?.sessions >= j.storeKeys)) found.push(`join: ${j.reached?.sessions ?? 0} of ${j.storeKeys} grants applied`);
  return found;
}

/** Prints the result; exits 1 when it measured nothing (see failures). */
export function reportCluster(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (result.failures.length === 0) return;
  for (const failure of result.failures) log(`bench cluster: FAILED: ${failure}`);
  process.exitCode = 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const problem = clusterPreflight();
  if (problem) {
    log(`bench cluster: ${problem}`);
    process.exit(1);
  }
  reportCluster(await clusterBench());
}
