/**
 * Step-1 floods from the client namespace, bounded in time: trafgen for SYNs, junk data and
 * wrong-path requests, and a replayed capture of wrong-key knocks that carry valid cookies
 * (netsniff-ng). Each flood reports the packets it sent and the CPU its sender used (it shares
 * the machine's cores with the daemon, so its share bounds what the daemon can get).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyedCookieSource } from '../../dist/step1/cookie.js';
import { APP, KEYS, NET, PATHS, PORTS } from './config.js';
import { sleep } from './netns.js';
import { cookieDataSegment, knockRequest, writeEthernetPcap } from './packets.js';
import { treeCpuTracker } from './proc.js';

/**
 * syn: SYNs from spoofed sources (random addresses in 10.99.160.0/19, routed back through the
 * client, where the SYN-ACKs die), random ports.
 * junk: data segments with a bad cookie and 400 random payload bytes (the original's junk flood).
 * wrongPath: well-formed requests that are not `POST <path>` (`GET /` and `POST /wrong`), bad cookie.
 * wrongKey: the real path with a valid cookie and a wrong key: parsed and key-checked, from
 *   16,000 sources in 10.99.192.0/18.
 */
export const FLOOD_KINDS = ['syn', 'junk', 'wrongPath', 'wrongKey'];

/** Wrong-key knocks in the replayed capture: more than the retransmission cache, spread over many sources. */
const WRONG_KEY_PACKETS = 70_000;
/** 10.99.160.1 - 10.99.191.254 as 32-bit numbers (trafgen's drnd range on the address field). */
const SPOOFED_RANGE = [0x0a63a001, 0x0a63bffe];

const hexBytes = (text) => [...Buffer.from(text, 'latin1')].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(', ');

function trafgenConfig(gateway, kind) {
  const eth = `eth(da=${gateway.gw.mac(NET.gwIf)}, sa=${gateway.client.mac(NET.clientIf)})`;
  const ip = `ipv4(saddr=${NET.client}, daddr=${NET.server}, ttl=64, df)`;
  const data = `tcp(sp=drnd(), dp=${PORTS.step1}, seq=drnd(), ackseq=drnd(), ack, psh, window=502)`;
  if (kind === 'syn') {
    const spoofed = `ipv4(saddr=10.99.160.1, saddr=drnd(${SPOOFED_RANGE[0]}, ${SPOOFED_RANGE[1]}), daddr=${NET.server}, ttl=64, df)`;
    return `{ ${eth}, ${spoofed}, tcp(sp=drnd(), dp=${PORTS.step1}, seq=drnd(), syn, window=64240) }\n`;
  }
  if (kind === 'wrongPath') {
    // trafgen sends its packets in turn: half GET /, half POST to a path that is not the knock path.
    const get = `GET / HTTP/1.1\r\nHost: ${NET.server}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n`;
    const post = knockRequest(NET.server, '/wrong', `app=${APP}&access_key=${KEYS.wrong}`).toString('latin1');
    return `{ ${eth}, ${ip}, ${data}, ${hexBytes(get)} }\n{ ${eth}, ${ip}, ${data}, ${hexBytes(post)} }\n`;
  }
  // The original's junk flood: random ports, sequence and ack numbers, 400 random payload bytes.
  return `{ ${eth}, ${ip}, ${data}, drnd(400) }\n`;
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
function wrongKeyCapture(gateway, stateDir) {
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
  const packets = Array.from({ length: WRONG_KEY_PACKETS }, (_, i) =>
    cookieDataSegment(cookie, now, {
      src: wrongKeySource(i),
      dst: NET.server,
      sport: 1024 + (i % 60_000),
      dport: PORTS.step1,
      isn: isns.readUInt32BE(4 * i),
      payload,
    }),
  );
  const path = join(gateway.dir, 'wrong-key.pcap');
  writeEthernetPcap(path, packets, gateway.gw.mac(NET.gwIf), gateway.client.mac(NET.clientIf));
  return path;
}

/**
 * Prepares a flood of `kind`. `start(ratePps?, maxSeconds)` begins it and returns `stop()`,
 * which resolves { sent, seconds, generatorCpuPercent } (the sender's own wall time and CPU in %
 * of one core); `run(seconds, ratePps?)` is start, wait, stop. Every flood ends by itself after
 * maxSeconds even if nobody stops it. Cookies are valid for 64-128 s, so the wrong-key capture
 * is made right before use (and a flood of it must not outlive that).
 */
export function prepareFlood(gateway, kind, stateDir) {
  let start;
  let dispose;
  if (kind === 'wrongKey') {
    const pcap = wrongKeyCapture(gateway, stateDir);
    start = (ratePps, maxSeconds) => replay(gateway, pcap, ratePps, maxSeconds);
    dispose = () => rmSync(pcap, { force: true });
  } else {
    const cfg = join(gateway.dir, `${kind}.trafgen`);
    writeFileSync(cfg, trafgenConfig(gateway, kind));
    start = (ratePps, maxSeconds) => trafgen(gateway, cfg, ratePps, maxSeconds);
    dispose = () => rmSync(cfg, { force: true });
  }
  return {
    kind,
    start: (ratePps, maxSeconds = 60) => start(ratePps, maxSeconds),
    async run(seconds, ratePps) {
      const flood = start(ratePps, seconds + 5);
      await sleep(seconds * 1000);
      return flood.stop();
    },
    dispose,
  };
}

/**
 * Spawns a sender in the client namespace, in a process group of its own: trafgen forks its
 * sending processes, and a signal to the parent alone leaves them sending. `signal(name)`
 * reaches the whole group; `exited` resolves { code, out, err }.
 */
function spawnSender(gateway, cmd, args) {
  const child = gateway.client.spawn(cmd, args, { detached: true });
  const signal = (name) => {
    try {
      process.kill(-child.pid, name);
    } catch {
      /* already gone */
    }
  };
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
  return { child, exited, signal };
}

function trafgen(gateway, cfg, ratePps, maxSeconds) {
  // One sending process (one core). `ip netns exec` execs, so the child is trafgen itself; SIGINT
  // to its group makes it print its count and exit. The timer bounds a flood nobody stops.
  const rate = ratePps ? ['-b', `${Math.round(ratePps)}pps`] : [];
  const started = performance.now();
  const cpu = treeCpuTracker();
  const { child, exited, signal } = spawnSender(gateway, 'trafgen', ['-o', NET.clientIf, '-i', cfg, '-P', '1', '-q', ...rate]);
  cpu.add(child.pid);
  const bound = setTimeout(() => signal('SIGINT'), maxSeconds * 1000);
  return {
    async stop() {
      const cpuSeconds = cpu.sample();
      const seconds = (performance.now() - started) / 1000;
      signal('SIGINT');
      const kill = setTimeout(() => signal('SIGKILL'), 5_000);
      const r = await exited;
      clearTimeout(kill);
      clearTimeout(bound);
      cpu.stop();
      return { sent: Number(/(\d+) packets outgoing/.exec(r.out)?.[1] ?? NaN), seconds, generatorCpuPercent: (cpuSeconds / seconds) * 100 };
    },
  };
}

/**
 * Replays the capture pass after pass (about 0.3 s per pass at full speed) until stopped;
 * with `ratePps`, pauses between passes so the average is that rate (in bursts).
 */
function replay(gateway, pcap, ratePps, maxSeconds) {
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const cpu = treeCpuTracker();
  let stopping = false;
  // A pass can fail when the machine is saturated (netsniff-ng: "Flushing TX_RING failed:
  // Resource temporarily unavailable"): what it sent is unknown, so the flood reports it
  // (`failedPasses`) and counts only whole passes; several failures in a row end the flood.
  let failedPasses = 0;
  let lastError;
  const loop = (async () => {
    let passes = 0;
    let failuresInRow = 0;
    while (!stopping && elapsed() < maxSeconds && failuresInRow < 3) {
      const passStart = performance.now();
      const sender = spawnSender(gateway, 'netsniff-ng', ['--in', pcap, '--mmap', '--out', NET.clientIf, '--silent', '-A', '-S', '16MiB', '-k', '100']);
      cpu.add(sender.child.pid);
      const kill = setTimeout(() => sender.signal('SIGKILL'), 10_000);
      const r = await sender.exited;
      clearTimeout(kill);
      if (r.code === 0) {
        passes++;
        failuresInRow = 0;
      } else {
        failedPasses++;
        failuresInRow++;
        lastError = r.err.trim().slice(-200);
        await sleep(50);
      }
      if (ratePps && !stopping) await sleep(Math.max(0, (WRONG_KEY_PACKETS / ratePps) * 1000 - (performance.now() - passStart)));
    }
    return passes;
  })();
  return {
    async stop() {
      // The pass under way finishes (a fraction of a second) so the count stays exact.
      stopping = true;
      const passes = await loop;
      const seconds = elapsed();
      return { sent: passes * WRONG_KEY_PACKETS, seconds, generatorCpuPercent: (cpu.stop() / seconds) * 100, failedPasses, senderError: lastError };
    },
  };
}
