/**
 * Runs inside the client namespace (bench/cluster.js): plays "gateway A" by publishing a signed
 * grant straight into the store (redis over its unix socket, which no network namespace hides),
 * then opens a new TCP connection through gateway B every PROBE_EVERY_MS until one succeeds.
 * The same probe against B's unprotected port (no grant needed) is the reference: what the probe
 * itself costs (timer granularity, connect RTT). One clock for publish and probe.
 *
 * Input (env BENCH_PROBE, JSON): { socket, key, prefix, server, port, refPort, addresses, budgetMs }.
 * Output: one JSON line { samples: [{ ref, grant }], timeouts, elapsedMs } (ms; null on timeout).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { encodeClusterMessage } from '../../dist/cluster/message.js';
import { announceChannel, encodeAnnouncement, entryKey } from '../../dist/cluster/store-parts.js';

const PROBE_EVERY_MS = 1;
/** An attempt that has not connected by then is abandoned (a dropped SYN is retransmitted only after 1 s). */
const ATTEMPT_MS = 50;
/** A sample that has not connected by then is a timeout. */
const SAMPLE_MS = 2000;

const opts = JSON.parse(process.env.BENCH_PROBE);
const key = Buffer.from(opts.key, 'utf8');
const redis = new Redis({ path: opts.socket, enableOfflineQueue: true, maxRetriesPerRequest: 1 });

/** Starts a connect every PROBE_EVERY_MS from `from` to port; resolves ms from t0 to the first success, or null. */
function probe(from, port, t0) {
  return new Promise((resolve) => {
    const live = new Set();
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(giveUp);
      for (const s of live) s.destroy();
      resolve(value);
    };
    const attempt = () => {
      const s = net.connect({ host: opts.server, port, localAddress: from });
      live.add(s);
      const abandon = setTimeout(() => s.destroy(), ATTEMPT_MS);
      s.on('error', () => undefined);
      s.once('close', () => {
        clearTimeout(abandon);
        live.delete(s);
      });
      s.once('connect', () => {
        const at = performance.now() - t0;
        s.resetAndDestroy();
        finish(at);
      });
    };
    const timer = setInterval(attempt, PROBE_EVERY_MS);
    const giveUp = setTimeout(() => finish(null), SAMPLE_MS);
    attempt();
  });
}

function signedGrant(ip, now) {
  const body = { kind: 'service', ip, app: opts.app, user: 'default', expiresAt: now + 600_000, gateway: 'gw-a', issuedAt: now };
  const text = encodeClusterMessage(key, { type: 'grant', body });
  const id = `gw-a:service:${ip}:${opts.app}:default`;
  return { id, text, expiresAt: body.expiresAt };
}

async function main() {
  await redis.ping();
  const started = performance.now();
  const samples = [];
  let timeouts = 0;
  for (const from of opts.addresses) {
    if (performance.now() - started > opts.budgetMs) break;
    const ref = await probe(from, opts.refPort, performance.now());
    const now = Date.now();
    const g = signedGrant(from, now);
    const announcement = encodeAnnouncement({ gateway: 'gw-a', kind: 'grant', id: g.id, text: g.text, publishedAtMs: now });
    const t0 = performance.now();
    // Exactly what RedisClusterStore.publish does: SET PXAT and PUBLISH in one transaction.
    const published = redis
      .multi()
      .set(entryKey(opts.prefix, 'grant', g.id), g.text, 'PXAT', g.expiresAt)
      .publish(announceChannel(opts.prefix), announcement)
      .exec();
    const grant = await probe(from, opts.port, t0);
    await published;
    if (grant === null) timeouts++;
    samples.push({ ref, grant });
  }
  redis.disconnect();
  process.stdout.write(`${JSON.stringify({ samples, timeouts, elapsedMs: performance.now() - started })}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
