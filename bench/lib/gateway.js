/**
 * The bench network and the real daemon in it: a gateway namespace (daemon, a service on
 * the protected port and one on an unprotected port), a client namespace on a veth pair,
 * extra client addresses routed through the client. Removed by destroy(), also on failure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { APP, KEYS, NET, PATHS, PORTS, benchConfigYaml } from './config.js';

const KNOCK_SETTINGS = { APP, KEYS, PATHS };
import { Netns, sh, sleep, wire } from './netns.js';
import { extraAddress } from './packets.js';

export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const CLI = join(REPO_ROOT, 'bin/knock-port.js');
export const KNOCK_CLIENT = join(REPO_ROOT, 'bench/lib/knock-client.js');

/** Extra client addresses put on the client interface (one fresh address per knock). */
export const EXTRA_ADDRESSES = 2600;

export function createGateway(tag) {
  const created = [];
  const dir = mkdtempSync(join(tmpdir(), `kpbench-${tag}-`));
  try {
    const gw = Netns.create(`${tag}g`);
    created.push(gw);
    const client = Netns.create(`${tag}c`);
    created.push(client);
    wire(gw, client, { ifA: NET.gwIf, ifB: NET.clientIf, a4: NET.server, b4: NET.client });
    for (const ns of [gw, client]) {
      ns.sysctl('net.ipv4.conf.all.rp_filter', '0');
      ns.sysctl(`net.ipv4.conf.${ns === gw ? NET.gwIf : NET.clientIf}.rp_filter`, '0');
    }
    // Receive packet steering over every core on the gateway's side: a veth has one receive
    // queue, so without it every packet of a one-process flood is handled on the sender's core
    // and the kernel's per-CPU fan-out (NFQUEUE fanout, NFLOG by CPU) would feed one step-1
    // worker only. A multiqueue NIC spreads flows the same way in hardware.
    gw.exec('sh', ['-c', `echo ${((1 << Math.min(31, cpus().length)) - 1).toString(16)} > /sys/class/net/${NET.gwIf}/queues/rx-0/rps_cpus`]);
    // Static neighbours: the flood must not wait on ARP, and its frames carry the MACs.
    client.ip('neigh', 'replace', NET.server, 'lladdr', gw.mac(NET.gwIf), 'dev', NET.clientIf);
    gw.ip('neigh', 'replace', NET.client, 'lladdr', client.mac(NET.clientIf), 'dev', NET.gwIf);
    gw.ip('route', 'add', NET.extraPrefix, 'via', NET.client);
    client.ipBatch(Array.from({ length: EXTRA_ADDRESSES }, (_, i) => `addr add ${extraAddress(i)}/32 dev ${NET.clientIf}`));
    dropSpoofedReplies(client);
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    sh('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=knock-port.bench',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    startServices(gw);
    let nextAddress = 0;
    return {
      gw,
      client,
      dir,
      cert,
      key,
      /** Fresh client addresses, never used before in this run. */
      takeAddresses(count) {
        if (nextAddress + count > EXTRA_ADDRESSES) throw new Error('bench ran out of extra client addresses');
        const list = Array.from({ length: count }, (_, i) => extraAddress(nextAddress + i));
        nextAddress += count;
        return list;
      },
      destroy() {
        for (const ns of created) ns.destroy();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const ns of created) ns.destroy();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

const REPLY_DROP_TABLE = 'netdev kpbench_replies';

/**
 * The client drops what comes back to the SYN flood's spoofed sources as it arrives (ingress
 * hook, before routing): the SYN-ACKs of a flood are the gateway's work, not the client's, and
 * the client's kernel would otherwise route and drop each one on the cores the sender needs.
 * A generic-XDP SYN-ACK is the flood's own buffer turned round, still charged to the sender's
 * socket until freed, so a reply that lives long also slows the sender. Replies to the knocks'
 * own addresses pass. The counter says how many SYN-ACKs came back (spoofedReplies()).
 */
function dropSpoofedReplies(client) {
  client.exec(
    'nft',
    ['-f', '-'],
    `table ${REPLY_DROP_TABLE} {\n chain in { type filter hook ingress device ${NET.clientIf} priority -500; ip daddr ${NET.spoofedPrefix} counter drop; }\n}\n`,
  );
}

/** Packets addressed to the SYN flood's spoofed sources that reached the client (and were dropped there), so far. */
export function spoofedReplies(gateway) {
  const [family, name] = REPLY_DROP_TABLE.split(' ');
  const json = JSON.parse(gateway.client.exec('nft', ['-j', 'list', 'table', family, name]));
  return json.nftables.find((o) => o.rule)?.rule.expr.find((e) => e.counter)?.counter.packets ?? NaN;
}

/** A TCP service on the protected port and a reference one on an unprotected port. */
function startServices(gw) {
  const script = `
    const net = require('node:net');
    for (const port of [${PORTS.service}, ${PORTS.unprotected}]) {
      const server = net.createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); });
      server.on('error', () => {});
      server.listen({ port, host: '0.0.0.0', backlog: 4096 });
    }`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

/**
 * Starts `knock-port run` in the gateway; resolves once it logs that it is ready.
 * `step1Workers` undefined leaves the daemon's default (`auto`); `step1Xdp` sets `step1_xdp`.
 */
export async function startDaemon(gateway, { firewall, capture, args = [] }, { step1Workers, step1Xdp } = {}) {
  const stateDir = join(gateway.dir, `state-${firewall}`);
  const configPath = join(gateway.dir, `config-${firewall}.yaml`);
  writeFileSync(
    configPath,
    benchConfigYaml({ firewall, capture, stateDir, controlSocket: join(gateway.dir, `control-${firewall}.sock`), step1Workers, step1Xdp }),
    {
      mode: 0o600,
    },
  );
  const proc = gateway.gw.spawn(process.execPath, [CLI, 'run', '-c', configPath, '--cert', gateway.cert, '--key', gateway.key, ...args]);
  const output = [];
  const collect = (chunk) => output.push(...chunk.toString().split('\n').filter(Boolean));
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (!output.some((l) => l.includes('knock-port ready'))) {
    if (proc.exitCode !== null || Date.now() > deadline)
      throw new Error(
        `daemon did not start:\n${output
          .filter((l) => !l.startsWith('{'))
          .slice(-20)
          .join('\n')}`,
      );
    await sleep(50);
  }
  return {
    pid: proc.pid,
    stateDir,
    configPath,
    output,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Prometheus text from the daemon's metrics endpoint, as { 'name{labels}': value }. */
export function scrapeMetrics(gateway) {
  const text = gateway.gw.exec('curl', ['-s', '-m', '5', `http://127.0.0.1:${PORTS.metrics}/metrics`]);
  const values = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    values[line.slice(0, cut)] = Number(line.slice(cut + 1));
  }
  return values;
}

/** Sum of every series of a metric whose labels contain `labelFilter`. */
export function metricSum(values, name, labelFilter = '') {
  let sum = 0;
  for (const [series, value] of Object.entries(values)) {
    if ((series === name || series.startsWith(`${name}{`)) && series.includes(labelFilter)) sum += value;
  }
  return sum;
}

/** Kernel NFQUEUE counters in the gateway namespace: queue-full drops and netlink send failures. */
export function queueCounters(gateway) {
  const text = gateway.gw.tryExec('cat', ['/proc/net/netfilter/nfnetlink_queue']).out;
  let queueDropped = 0;
  let userDropped = 0;
  for (const line of text.trim().split('\n').filter(Boolean)) {
    const f = line.trim().split(/\s+/).map(Number);
    queueDropped += f[5] ?? 0;
    userDropped += f[6] ?? 0;
  }
  return { queueDropped, userDropped };
}

/** Runs the knock client in the client namespace; resolves with its per-knock results. */
export function runKnockClient(gateway, options, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = gateway.client.spawn(process.execPath, [KNOCK_CLIENT, JSON.stringify(options)]);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch {
        reject(new Error(`knock client failed: ${err.slice(-2000) || out.slice(-2000)}`));
      }
    });
  });
}

const BIND_SOURCE = join(REPO_ROOT, 'bench/lib/bind-source.js');

/**
 * One run of the project's client, `knock-port knock` (step 1, step 2, then wait for the
 * service port), from the client namespace and the source address `from`, with its default
 * timing and retries. Resolves { ok, code, ms }: code is its exit status (0 = knock accepted
 * and the service port open), ms its whole run including Node's start.
 */
export function runKnockCli(gateway, from, { timeoutMs = 30_000 } = {}) {
  const { KEYS, PATHS, APP } = KNOCK_SETTINGS;
  return new Promise((resolve) => {
    const started = performance.now();
    const child = gateway.client.spawn(
      process.execPath,
      [
        '--import',
        BIND_SOURCE,
        CLI,
        'knock',
        '--host',
        NET.server,
        '--http-path',
        PATHS.step1,
        '--https-path',
        PATHS.step2,
        '--app',
        APP,
        '--insecure',
        '--service-port',
        String(PORTS.service),
        '--wait',
        '5',
        '-q',
      ],
      { env: { ...process.env, KPB_SOURCE_ADDRESS: from, KNOCK_PORT_HTTP_KEY: KEYS.http, KNOCK_PORT_HTTPS_KEY: KEYS.https } },
    );
    let err = '';
    child.stdout.resume();
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ from, ok: code === 0, code: code ?? signal, ms: performance.now() - started, error: code === 0 ? undefined : err.trim().slice(-200) });
    });
  });
}
