#!/usr/bin/env node
// Runs inside the client namespace: real TCP knocks from the given source addresses.
// Step 1: handshake with the daemon's cookie SYN-ACK, then the POST segment; t0 at the write,
// "open" when a connect to the HTTPS port from the same address completes. Step 2: TLS first
// (not timed), t0 at the request write, "open" when the service port accepts.
// Usage: node knock-client.js '<json options>'; prints one JSON line.
// Options: server, ports, paths, keys, app, mode (latency | during), addresses, timeoutMs,
// step2, spacingMs (during), budgetMs (latency: start no knock after this long).
import net from 'node:net';
import tls from 'node:tls';

const opts = JSON.parse(process.argv[2]);
const POLL_EVERY_MS = 0.25;
const ATTEMPT_LIFE_MS = 50;
/** Blocks the thread between attempts (no event is due meanwhile: the attempts' own events wait at most that long). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the time a connect to port from `from` first completes, or undefined at the deadline. */
function pollOpen(port, from, deadline) {
  return new Promise((resolve) => {
    let done = false;
    let next = nowMs();
    const finish = (value) => {
      if (done) return;
      done = true;
      resolve(value);
    };
    const attempt = () => {
      const s = net.connect({ host: opts.server, port, localAddress: from });
      s.on('error', () => {});
      s.once('connect', () => {
        const at = nowMs();
        s.resetAndDestroy();
        finish(at);
      });
      setTimeout(() => s.destroy(), ATTEMPT_LIFE_MS).unref();
    };
    const tick = () => {
      if (done) return;
      const now = nowMs();
      if (now > deadline) return finish(undefined);
      if (now >= next) {
        attempt();
        next = now + POLL_EVERY_MS;
      }
      // Sleep until the next attempt is due instead of spinning: the daemon's threads share
      // these cores, and a probe that keeps one busy delays every wake-up they need.
      const wait = next - nowMs();
      if (wait > 0) Atomics.wait(PAUSE, 0, 0, wait);
      setImmediate(tick);
    };
    tick();
  });
}

function connect(from, deadline) {
  return new Promise((resolve) => {
    const s = net.connect({ host: opts.server, port: opts.ports.step1, localAddress: from });
    const timer = setTimeout(() => (s.destroy(), resolve(undefined)), Math.max(1, deadline - nowMs()));
    s.on('error', () => (clearTimeout(timer), resolve(undefined)));
    s.once('connect', () => (clearTimeout(timer), resolve(s)));
  });
}

function request(host, path, body) {
  return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n${body}`;
}

/** One step-1 knock; resolves { ok, ms } (ms from the POST write to the HTTPS port accepting). */
async function step1(from) {
  const deadline = nowMs() + opts.timeoutMs;
  const s = await connect(from, deadline);
  if (!s) return { ok: false, reason: 'no-syn-ack' };
  s.on('error', () => {});
  const t0 = nowMs();
  s.write(request(opts.server, opts.paths.step1, `app=${opts.app}&access_key=${opts.keys.http}`));
  const open = await pollOpen(opts.ports.https, from, deadline);
  s.resetAndDestroy();
  return open === undefined ? { ok: false, reason: 'https-not-opened' } : { ok: true, ms: open - t0 };
}

/** Step 2 over TLS; resolves { ok, ms, responseMs } (from the request write). */
function step2(from) {
  const deadline = nowMs() + opts.timeoutMs;
  return new Promise((resolve) => {
    const s = tls.connect({ host: opts.server, port: opts.ports.https, localAddress: from, rejectUnauthorized: false });
    let response;
    s.on('error', () => resolve({ ok: false, reason: 'tls' }));
    s.on('data', () => (response ??= nowMs()));
    s.once('secureConnect', async () => {
      const t0 = nowMs();
      s.write(request(opts.server, opts.paths.step2, `app=${opts.app}&access_key=${opts.keys.https}`));
      const open = await pollOpen(opts.ports.service, from, deadline);
      await sleep(5);
      s.destroy();
      resolve(
        open === undefined
          ? { ok: false, reason: 'service-not-opened' }
          : { ok: true, ms: open - t0, responseMs: response === undefined ? undefined : response - t0 },
      );
    });
  });
}

async function main() {
  const results = [];
  if (opts.mode === 'latency') {
    // Sequential full knocks, one fresh address each; with budgetMs, no new knock starts after
    // that long (a slow gateway must not stretch the run), and what was measured is printed.
    const stopAt = opts.budgetMs ? nowMs() + opts.budgetMs : Infinity;
    for (const from of opts.addresses) {
      if (nowMs() > stopAt) break;
      const one = await step1(from);
      results.push({ from, step1: one, step2: one.ok && opts.step2 ? await step2(from) : undefined });
    }
  } else {
    // Knocks spread over a flood, concurrently, one fresh address each.
    const pending = [];
    for (const from of opts.addresses) {
      pending.push(step1(from).then((step) => results.push({ from, step1: step })));
      await sleep(opts.spacingMs);
    }
    await Promise.all(pending);
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
  process.exit(0);
}

await main();
