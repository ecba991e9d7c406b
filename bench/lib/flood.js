/**
 * Step-1 floods from the client namespace, bounded in time: trafgen for SYNs and junk data
 * segments, and a replayed capture of wrong-key knocks that carry valid cookies (netsniff-ng).
 * Each flood returns the packets it sent.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { execAsync, sleep } from './netns.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { KeyedCookieSource, COOKIE_SECRET_FILE } from '../../dist/step1/cookie.js';
import { APP, KEYS, NET, PATHS, PORTS } from './config.js';
import { cookieDataSegment, extraAddress, knockRequest, writeEthernetPcap } from './packets.js';

export const FLOOD_KINDS = ['syn', 'junk', 'wrongKey'];

/** Wrong-key knocks in the replayed capture: more than the retransmission cache, spread over many sources. */
const WRONG_KEY_PACKETS = 70_000;

function trafgenConfig(gateway, kind) {
  const eth = `eth(da=${gateway.gw.mac(NET.gwIf)}, sa=${gateway.client.mac(NET.clientIf)})`;
  const ip = `ipv4(saddr=${NET.client}, daddr=${NET.server}, ttl=64, df)`;
  if (kind === 'syn') return `{ ${eth}, ${ip}, tcp(sp=drnd(), dp=${PORTS.step1}, seq=drnd(), syn, window=64240) }\n`;
  // The original's junk flood: random ports, sequence and ack numbers, 400 random payload bytes.
  return `{ ${eth}, ${ip}, tcp(sp=drnd(), dp=${PORTS.step1}, seq=drnd(), ackseq=drnd(), ack, psh, window=502), drnd(400) }\n`;
}

/** Wrong-key knocks with cookies valid for the daemon's secret (read from its state dir). */
function wrongKeyCapture(gateway, stateDir) {
  const secret = Buffer.from(readFileSync(join(stateDir, COOKIE_SECRET_FILE), 'utf8').trim(), 'hex');
  const cookie = new KeyedCookieSource(secret);
  const now = Date.now();
  const payload = knockRequest(NET.server, PATHS.step1, `app=${APP}&access_key=${KEYS.wrong}`);
  const isns = randomBytes(4 * WRONG_KEY_PACKETS);
  const packets = Array.from({ length: WRONG_KEY_PACKETS }, (_, i) =>
    cookieDataSegment(cookie, now, { src: extraAddress(i), dst: NET.server, sport: 1024 + (i % 60_000), dport: PORTS.step1, isn: isns.readUInt32BE(4 * i), payload }),
  );
  const path = join(gateway.dir, 'wrong-key.pcap');
  writeEthernetPcap(path, packets, gateway.gw.mac(NET.gwIf), gateway.client.mac(NET.clientIf));
  return path;
}

/**
 * Prepares a flood of `kind`; `run(seconds, ratePps?)` sends it and resolves
 * { sent, seconds } (the sender's own wall time).
 * Cookies are valid for 64-128 s, so the wrong-key capture is made right before use.
 */
export function prepareFlood(gateway, kind, stateDir) {
  if (kind === 'wrongKey') {
    const pcap = wrongKeyCapture(gateway, stateDir);
    return {
      run: (seconds, ratePps) => replay(gateway, pcap, seconds, ratePps),
      dispose: () => rmSync(pcap, { force: true }),
    };
  }
  const cfg = join(gateway.dir, `${kind}.trafgen`);
  writeFileSync(cfg, trafgenConfig(gateway, kind));
  return {
    run: (seconds, ratePps) => trafgen(gateway, cfg, seconds, ratePps),
    dispose: () => rmSync(cfg, { force: true }),
  };
}

async function trafgen(gateway, cfg, seconds, ratePps) {
  // One sender process (one core); `timeout` ends it with SIGINT, so a non-zero status is normal.
  const rate = ratePps ? ['-b', `${Math.round(ratePps)}pps`] : [];
  const started = performance.now();
  const r = await execAsync(gateway.client, 'timeout', ['-s', 'INT', String(seconds), 'trafgen', '-o', NET.clientIf, '-i', cfg, '-P', '1', '-q', ...rate], (seconds + 10) * 1000);
  return { sent: Number(/(\d+) packets outgoing/.exec(r.out)?.[1] ?? NaN), seconds: (performance.now() - started) / 1000 };
}

/**
 * Replays the capture pass after pass (about 0.3 s per pass at full speed) until `seconds`
 * have passed; with `ratePps`, pauses between passes so the average is that rate (in bursts).
 */
async function replay(gateway, pcap, seconds, ratePps) {
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  let passes = 0;
  while (elapsed() < seconds) {
    const passStart = performance.now();
    const r = await execAsync(gateway.client, 'netsniff-ng', ['--in', pcap, '--mmap', '--out', NET.clientIf, '--silent', '-A', '-S', '16MiB', '-k', '100'], 10_000);
    if (r.code !== 0) throw new Error(`netsniff-ng failed: ${r.err.slice(-500)}`);
    passes++;
    if (ratePps) await sleep(Math.max(0, (WRONG_KEY_PACKETS / ratePps) * 1000 - (performance.now() - passStart)));
  }
  return { sent: passes * WRONG_KEY_PACKETS, seconds: elapsed() };
}
