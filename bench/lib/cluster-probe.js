/**
 * Runs inside the client namespace (bench/cluster.js): plays "gateway A" by publishing a signed
 * grant into the store the way a gateway does (RedisClusterStore.storeGrant, over redis's unix
 * socket, which no network namespace hides), then opens a new TCP connection through gateway B
 * every PROBE_EVERY_MS until one succeeds.
 * The same probe against B's unprotected port (no grant needed) is the reference: what the probe
 * itself costs (timer granularity, connect RTT). One clock for publish and probe.
 *
 * Input (env BENCH_PROBE, JSON): { socket, key, prefix, app, user, server, port, refPort, addresses, budgetMs }.
 * Output: one JSON line { samples: [{ ref, grant }], timeouts, elapsedMs } (ms; null on timeout).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { clusterSigningKey, encodeClusterMessage } from '../../dist/cluster/message.js';
import { RedisClusterStore } from '../../dist/cluster/store.js';
import { createLogger } from '../../dist/shared/log.js';

const PROBE_EVERY_MS = 1;
/** An attempt that has not connected by then is abandoned (a dropped SYN is retransmitted only after 1 s). */
const ATTEMPT_MS = 50;
/** A sample that has not connected by then is a timeout. */
const SAMPLE_MS = 2000;

const opts = JSON.parse(process.env.BENCH_PROBE);
// The cluster name is the prefix (the config sets none).
const key = clusterSigningKey(Buffer.from(opts.key, 'utf8'), opts.prefix);
const store = RedisClusterStore.connect({
  url: opts.socket,
  prefix: opts.prefix,
  gateway: 'gw-a',
  logger: createLogger('warn', process.stderr),
  onEntry: () => undefined,
});

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
  const body = { kind: 'service', ip, app: opts.app, user: opts.user, expiresAt: now + 600_000, gateway: 'gw-a', issuedAt: now };
  const text = encodeClusterMessage(key, { type: 'grant', body });
  const id = `gw-a:service:${ip}:${opts.app}:${opts.user}`;
  return { id, text, expiresAt: body.expiresAt };
}

async function main() {
  if (!(await store.whenSynced(10_000))) throw new Error(`the store did not answer: ${store.state().lastError}`);
  const started = performance.now();
  const samples = [];
  let timeouts = 0;
  for (const from of opts.addresses) {
    if (performance.now() - started > opts.budgetMs) break;
    const ref = await probe(from, opts.refPort, performance.now());
    const now = Date.now();
    const g = signedGrant(from, now);
    const t0 = performance.now();
    const published = store.storeGrant(g.id, g.text, g.expiresAt, { ip: from, app: opts.app, order: 0, own: false });
    const grant = await probe(from, opts.port, t0);
    const outcome = await published;
    if (outcome.outcome !== 'stored') throw new Error(`the store did not take grant ${g.id}: ${outcome.outcome}`);
    if (grant === null) timeouts++;
    samples.push({ ref, grant });
  }
  await store.close();
  process.stdout.write(`${JSON.stringify({ samples, timeouts, elapsedMs: performance.now() - started })}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
