#!/usr/bin/env node
// Packets per second through NFQUEUE into JS and back as a verdict (no parsing), against
// the same flood dropped by the kernel alone, in one run. Root; uses two network
// namespaces it creates and removes; each phase is bounded (BENCH_SECONDS, default 4, max 10).
// Prints one JSON line. Needs dist/ (`npx tsc -p tsconfig.json`) and the native addon.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ipv4HeaderChecksum } from '../dist/packet/checksum.js';
import { senderBinary } from './lib/flood.js';

const SELF = fileURLToPath(import.meta.url);
const SECONDS = Math.min(10, Math.max(1, Number(process.env.BENCH_SECONDS ?? 4)));
const QUEUE = 0;
const PORT = 9;
const SERVER = '10.232.0.1';
const CLIENT = '10.232.0.2';

/** Inside the server namespace: drop every queued packet, one verdict call per batch or per packet. */
async function worker(mode) {
  const { NfqueueSocket } = await import('../dist/capture/nfqueue.js');
  const queue = NfqueueSocket.open({ queue: QUEUE, maxLen: 16384, copyRange: 128, maxBatch: 1024 }, (batch, q) => {
    if (mode === 'batch') return q.dropBatch(batch);
    const ids = batch.ids(); // one verdict call, and so one message, per packet
    for (let i = 0; i < ids.length; i++) q.drop(ids.subarray(i, i + 1));
  });
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    process.stdout.write(`${JSON.stringify({ stats: queue.stats(), kernel: queue.kernelCounters() })}\n`);
    queue.close();
    process.exit(0);
  });
}

function sh(cmd, args, input) {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}
const inNs = (ns, cmd, args, input) => sh('ip', ['netns', 'exec', ns, cmd, ...args], input);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Packets the client's interface sent (its kernel counter: what the flood really put on the wire). */
const txPackets = (client) => Number(inNs(client, 'cat', ['/sys/class/net/cli0/statistics/tx_packets']).trim());

/** Floods UDP to SERVER:PORT from the client namespace for SECONDS (the bench's sender); returns packets sent. */
function flood(client, frames) {
  const before = txPackets(client);
  spawnSync('ip', ['netns', 'exec', client, senderBinary(), 'cli0', frames, String(SECONDS)], { encoding: 'utf8', timeout: (SECONDS + 10) * 1000 });
  return txPackets(client) - before;
}

/** UDP datagrams with 16 bytes of payload and rising source ports (the IPv4 UDP checksum left at 0: none). */
function floodFrames(server, client) {
  const mac = (ns, dev) =>
    Buffer.from(
      /link\/ether (\S+)/
        .exec(sh('ip', ['-n', ns, 'link', 'show', dev]))[1]
        .split(':')
        .map((h) => parseInt(h, 16)),
    );
  const ethernet = Buffer.concat([mac(server, 'srv0'), mac(client, 'cli0'), Buffer.from([0x08, 0x00])]);
  const address = (text) => Buffer.from(text.split('.').map(Number));
  const chunks = [];
  for (let sport = 1024; sport < 1024 + 4096; sport++) {
    const packet = Buffer.alloc(20 + 8 + 16, 0x41);
    packet[0] = 0x45;
    packet[1] = 0;
    packet.writeUInt16BE(packet.length, 2);
    packet.writeUInt32BE(0, 4);
    packet[8] = 64;
    packet[9] = 17;
    packet.writeUInt16BE(0, 10);
    address(CLIENT).copy(packet, 12);
    address(SERVER).copy(packet, 16);
    packet.writeUInt16BE(ipv4HeaderChecksum(packet, 0, 20), 10);
    packet.writeUInt16BE(sport, 20);
    packet.writeUInt16BE(PORT, 22);
    packet.writeUInt16BE(8 + 16, 24);
    packet.writeUInt16BE(0, 26);
    const length = Buffer.alloc(2);
    length.writeUInt16LE(ethernet.length + packet.length);
    chunks.push(length, ethernet, packet);
  }
  const frames = `/tmp/kp-bench-${process.pid}.frames`;
  writeFileSync(frames, Buffer.concat(chunks));
  return frames;
}

async function kernelPhase(server, client, frames) {
  inNs(
    server,
    'nft',
    ['-f', '-'],
    `table inet kpbench {
  chain input { type filter hook input priority 0; udp dport ${PORT} counter drop; }
}
`,
  );
  const started = process.hrtime.bigint();
  const sent = flood(client, frames);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const json = JSON.parse(inNs(server, 'nft', ['-j', 'list', 'table', 'inet', 'kpbench']));
  const rule = json.nftables.find((o) => o.rule)?.rule;
  const dropped = rule.expr.find((e) => e.counter).counter.packets;
  inNs(server, 'nft', ['delete', 'table', 'inet', 'kpbench']);
  return { sent, handled: dropped, seconds, pps: Math.round(dropped / seconds) };
}

async function queuePhase(server, client, frames, mode) {
  inNs(server, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', String(PORT), '-j', 'NFQUEUE', '--queue-num', String(QUEUE)]);
  const child = spawn('ip', ['netns', 'exec', server, process.execPath, SELF, '--worker', mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  try {
    if ((await lines.next()).value !== 'ready') throw new Error('NFQUEUE worker did not start');
    const started = process.hrtime.bigint();
    const sent = flood(client, frames);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await sleep(200); // let the worker finish the last batch
    child.stdin.end();
    const report = JSON.parse((await lines.next()).value);
    const verdicts = report.stats.verdicts;
    return {
      sent,
      handled: verdicts,
      seconds,
      pps: Math.round(verdicts / seconds),
      batches: report.stats.batches,
      verdictMessages: report.stats.verdictMessages,
      enobufs: report.stats.enobufs,
      queueDropped: report.kernel?.queueDropped ?? 0,
      userDropped: report.kernel?.userDropped ?? 0,
    };
  } finally {
    child.kill('SIGKILL');
    inNs(server, 'iptables', ['-F', 'INPUT']);
  }
}

async function main() {
  if (process.getuid?.() !== 0) {
    process.stdout.write(`${JSON.stringify({ bench: 'nfqueue-throughput', skipped: 'needs root (network namespaces, NFQUEUE)' })}\n`);
    return;
  }
  const tag = `${process.pid.toString(36)}-${randomBytes(2).toString('hex')}`;
  const server = `kpbench-s-${tag}`;
  const client = `kpbench-c-${tag}`;
  let frames;
  try {
    for (const ns of [server, client]) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    sh('ip', ['link', 'add', 'srv0', 'netns', server, 'type', 'veth', 'peer', 'name', 'cli0', 'netns', client]);
    sh('ip', ['-n', server, 'addr', 'add', `${SERVER}/24`, 'dev', 'srv0']);
    sh('ip', ['-n', client, 'addr', 'add', `${CLIENT}/24`, 'dev', 'cli0']);
    sh('ip', ['-n', server, 'link', 'set', 'srv0', 'up']);
    sh('ip', ['-n', client, 'link', 'set', 'cli0', 'up']);
    // Static neighbour entry: the flood must not wait on ARP.
    const serverMac = /link\/ether (\S+)/.exec(sh('ip', ['-n', server, 'link', 'show', 'srv0']))[1];
    sh('ip', ['-n', client, 'neigh', 'replace', SERVER, 'lladdr', serverMac, 'dev', 'cli0']);
    frames = floodFrames(server, client);

    const kernel = await kernelPhase(server, client, frames);
    const batch = await queuePhase(server, client, frames, 'batch');
    const perPacket = await queuePhase(server, client, frames, 'per-packet');
    process.stdout.write(
      `${JSON.stringify({
        bench: 'nfqueue-throughput',
        generator: 'bench/lib/flood-sender.c (sent: the client interface transmit counter)',
        phaseSeconds: SECONDS,
        kernelDropPps: kernel.pps,
        nfqueueBatchVerdictPps: batch.pps,
        nfqueuePerPacketVerdictPps: perPacket.pps,
        ratioBatch: Number((batch.pps / kernel.pps).toFixed(3)),
        ratioPerPacket: Number((perPacket.pps / kernel.pps).toFixed(3)),
        phases: { kernel, batch, perPacket },
      })}\n`,
    );
  } finally {
    for (const ns of [server, client]) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
    if (frames) sh('rm', ['-f', frames]);
  }
}

if (process.argv[2] === '--worker') await worker(process.argv[3]);
else await main();
