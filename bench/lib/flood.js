/**
 * Step-1 floods from the client namespace, bounded in time, all sent by the bench's own sender
 * (bench/lib/flood-sender.c, built on demand with the system's C compiler): a pool of
 * prebuilt frames, sent round after round through a raw AF_PACKET socket. Each flood reports
 * how long it ran and the CPU its sender used (it shares the machine's cores with the daemon,
 * so its share bounds what the daemon can get); what it sent is read by the caller from the
 * client interface's kernel counters, never from the sender's own report.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KeyedCookieSource } from '../../dist/step1/cookie.js';
import { APP, KEYS, NET, PATHS, PORTS } from './config.js';
import { sleep } from './netns.js';
import { TCP_ACK, TCP_PSH, TCP_SYN, cookieDataSegment, ipv4Tcp, knockRequest } from './packets.js';
import { treeCpuTracker } from './proc.js';

/**
 * syn: SYNs from spoofed sources (random addresses in SPOOFED_PREFIX, routed back through the
 * client, whose interface drops their SYN-ACKs as they arrive: see gateway.js), random ports.
 * junk: data segments with a bad cookie and 400 random payload bytes (the original's junk flood).
 * wrongPath: well-formed requests that are not `POST <path>` (`GET /` and `POST /wrong`), bad cookie.
 * wrongKey: the real path with a valid cookie and a wrong key: parsed and key-checked, from
 *   16,000 sources in 10.99.192.0/18.
 */
export const FLOOD_KINDS = ['syn', 'junk', 'wrongPath', 'wrongKey'];

/** Wrong-key knocks in the pool: more than the retransmission cache, spread over many sources. */
const WRONG_KEY_PACKETS = 70_000;
/** Distinct frames in the pool of the other floods (random fields drawn once, then sent round after round). */
const POOL_FRAMES = { syn: 65_536, junk: 4_096, wrongPath: 4_096 };
/** 10.99.160.1 - 10.99.191.254: the spoofed sources of the SYN flood (NET.spoofedPrefix). */
const SPOOFED_RANGE = [0x0a63a001, 0x0a63bffe];

const SENDER_SOURCE = fileURLToPath(new URL('./flood-sender.c', import.meta.url));

/**
 * The sender binary, compiled once per version of its source (kept in the temporary directory
 * under the source's hash, so a changed source is rebuilt and a run does not rebuild it).
 */
export function senderBinary() {
  const source = readFileSync(SENDER_SOURCE);
  const binary = join(tmpdir(), `kpbench-flood-sender-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
  if (!existsSync(binary)) {
    const building = `${binary}.${process.pid}`;
    execFileSync('cc', ['-O2', '-Wall', '-o', building, SENDER_SOURCE], { timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
    renameSync(building, binary);
  }
  return binary;
}

const ipv4Text = (n) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The frames of one pool: random ports, sequence and acknowledgment numbers (and sources for SYNs). */
function poolPackets(kind) {
  const count = POOL_FRAMES[kind];
  const random = randomBytes(16 * count);
  const wrongPath = [
    Buffer.from(`GET / HTTP/1.1\r\nHost: ${NET.server}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n`, 'latin1'),
    knockRequest(NET.server, '/wrong', `app=${APP}&access_key=${KEYS.wrong}`),
  ];
  return Array.from({ length: count }, (_, i) => {
    const r = random.subarray(16 * i, 16 * i + 16);
    const ports = { dst: NET.server, sport: 1024 + (r.readUInt16BE(0) % 64_512), dport: PORTS.step1, seq: r.readUInt32BE(2) };
    if (kind === 'syn') {
      const span = SPOOFED_RANGE[1] - SPOOFED_RANGE[0] + 1;
      return ipv4Tcp({ ...ports, src: ipv4Text(SPOOFED_RANGE[0] + (r.readUInt32BE(6) % span)), flags: TCP_SYN });
    }
    // Data segments from the client's own address, with an acknowledgment no cookie matches.
    const payload = kind === 'junk' ? randomBytes(400) : wrongPath[i % 2];
    return ipv4Tcp({ ...ports, src: NET.client, ack: r.readUInt32BE(10), flags: TCP_ACK | TCP_PSH, payload });
  });
}

/** Writes IP packets as Ethernet frames in the sender's format: a 16-bit little-endian length, then the frame. */
function writeFrames(path, packets, dstMac, srcMac) {
  const mac = (text) => Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
  const ethernet = Buffer.concat([mac(dstMac), mac(srcMac), Buffer.from([0x08, 0x00])]);
  const chunks = [];
  for (const packet of packets) {
    const length = Buffer.alloc(2);
    length.writeUInt16LE(ethernet.length + packet.length);
    chunks.push(length, ethernet, packet);
  }
  writeFileSync(path, Buffer.concat(chunks));
}

/**
 * Sources of the wrong-key knocks: 10.99.192.1 onwards, apart from the client addresses that
 * valid knocks use (the daemon's per-address step-1 budget, spent by the flood, would refuse
 * a later valid knock from the same address).
 */
function wrongKeySource(i) {
  const n = (i % 16_000) + 1;
  return `10.99.${192 + (n >> 8)}.${n & 255}`;
}

/** Wrong-key knocks with cookies valid for the daemon's secret (read from its state dir). */
function wrongKeyPackets(stateDir) {
  const secretFile = join(stateDir, 'step1-cookie.key');
  if (!existsSync(secretFile))
    throw new Error(
      'the daemon keeps its cookie secret in memory only (no step1-cookie.key in state_dir): the wrong-key flood, which needs valid cookies, cannot be built',
    );
  const secret = Buffer.from(readFileSync(secretFile, 'utf8').trim(), 'hex');
  const cookie = new KeyedCookieSource(secret);
  const now = Date.now();
  const payload = knockRequest(NET.server, PATHS.step1, `app=${APP}&access_key=${KEYS.wrong}`);
  const isns = randomBytes(4 * WRONG_KEY_PACKETS);
  return Array.from({ length: WRONG_KEY_PACKETS }, (_, i) =>
    cookieDataSegment(cookie, now, {
      src: wrongKeySource(i),
      dst: NET.server,
      sport: 1024 + (i % 60_000),
      dport: PORTS.step1,
      isn: isns.readUInt32BE(4 * i),
      payload,
    }),
  );
}

/**
 * Prepares a flood of `kind`. `start(ratePps?, maxSeconds)` begins it and returns `stop()`,
 * which resolves { sent, seconds, generatorCpuPercent } (`sent`: what the sender says it handed
 * to the kernel, for the record only; seconds: the sender's wall time; CPU in % of one core);
 * `run(seconds, ratePps?)` is start, wait, stop. Every flood ends by itself after maxSeconds
 * even if nobody stops it. Cookies are valid for 64-128 s, so the wrong-key pool is made right
 * before use (and a flood of it must not outlive that).
 */
export function prepareFlood(gateway, kind, stateDir) {
  const binary = senderBinary();
  const packets = kind === 'wrongKey' ? wrongKeyPackets(stateDir) : poolPackets(kind);
  const frames = join(gateway.dir, `${kind}.frames`);
  writeFrames(frames, packets, gateway.gw.mac(NET.gwIf), gateway.client.mac(NET.clientIf));
  const start = (ratePps, maxSeconds = 60) => send(gateway, binary, frames, ratePps, maxSeconds);
  return {
    kind,
    start,
    async run(seconds, ratePps) {
      const flood = start(ratePps, seconds + 5);
      await sleep(seconds * 1000);
      return flood.stop();
    },
    dispose: () => rmSync(frames, { force: true }),
  };
}

/**
 * Runs the sender in the client namespace (`ip netns exec` execs, so the child is the sender
 * itself). It ends by itself after maxSeconds; stop() ends it earlier with SIGINT.
 */
function send(gateway, binary, frames, ratePps, maxSeconds) {
  const started = performance.now();
  const cpu = treeCpuTracker();
  const args = [NET.clientIf, frames, String(maxSeconds), ...(ratePps ? [String(Math.round(ratePps))] : [])];
  const child = gateway.client.spawn(binary, args);
  cpu.add(child.pid);
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    async stop() {
      const cpuSeconds = cpu.sample();
      const seconds = (performance.now() - started) / 1000;
      child.kill('SIGINT');
      const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(kill);
      cpu.stop();
      // A sender that failed (or was killed) sent for part of the time only: say so, the kernel counters show how much.
      const report = (() => {
        try {
          return JSON.parse(out.trim().split('\n').pop());
        } catch {
          return {};
        }
      })();
      return {
        sent: report.sent ?? NaN,
        // How often the sender found no room (its send buffer full, or the interface refusing frames).
        senderWaits: { wouldBlock: report.wouldBlock, noBuffers: report.noBuffers },
        seconds,
        generatorCpuPercent: (cpuSeconds / seconds) * 100,
        senderError: code === 0 ? undefined : err.trim().slice(-200) || `exit ${code}`,
      };
    },
  };
}
