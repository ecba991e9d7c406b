#!/usr/bin/env node
// The step-1 inspector alone, in process, on one core: packets/s for a SYN (cookie SYN-ACK
// built), junk data (bad cookie: spoofed), a wrong-key knock (valid cookie, parsed and
// authenticated), a valid knock, and with a valid cookie a GET and an oversize POST (refused
// before any key check), against bare packet decoding in the same run; and the lockout check a
// cookie-valid knock makes, alone. Each inspector runs on the step-1 tables a daemon worker gets
// (shared memory), built here explicitly as the worker builds them.
// Needs dist/. Prints one JSON line when run directly.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { SecretLockout, lockoutPolicy } from '../dist/auth/lockout.js';
import { TotpVerifier } from '../dist/auth/totp.js';
import { UsedCodes } from '../dist/auth/used-codes.js';
import { parseConfig } from '../dist/config/load.js';
import { TcpSegmentView, decodeTcpPacket } from '../dist/packet/decode.js';
import { KeyedCookieSource, randomCookieSecret } from '../dist/step1/cookie.js';
import { Inspector } from '../dist/step1/inspector.js';
import {
  DEFAULT_SHARED_SIZES,
  SharedDecidedSegments,
  SharedLockoutStates,
  SharedSourceBudget,
  SharedUsedCodeStore,
  createSharedState,
} from '../dist/step1/shared-state.js';
import { APP, KEYS, NET, PATHS, PORTS, benchConfigYaml } from './lib/config.js';
import { TCP_ACK, TCP_PSH, TCP_SYN, cookieDataSegment, extraAddress, ipv4Tcp, knockRequest } from './lib/packets.js';

/** More distinct segments than the retransmission table holds (SEGMENT_SETS × 8), so none is a hit. */
const DISTINCT = 70_000;
/** The daemon's sizes but for the retransmission table: 16,384 segments, far fewer than DISTINCT. */
const SIZES = { ...DEFAULT_SHARED_SIZES, segmentSets: 2_048 };
/** Lockout checks timed per measurement loop turn. */
const CHECKS_PER_TURN = 1000;
/** Packets of each kind inspected before any is timed, so every row is measured on compiled code. */
const WARM_UP = 20_000;

function packetSets(cookie, now) {
  const isn = () => randomBytes(4).readUInt32BE(0);
  const make = (build) => Array.from({ length: DISTINCT }, (_, i) => build(i));
  const knock = (key) => (i) =>
    cookieDataSegment(cookie, now, {
      src: extraAddress(i),
      dst: NET.server,
      sport: 1024 + (i % 60_000),
      dport: PORTS.step1,
      isn: isn(),
      payload: knockRequest(NET.server, PATHS.step1, `app=${APP}&access_key=${key}`),
    });
  const dataWithCookie = (payload) => (i) =>
    cookieDataSegment(cookie, now, { src: extraAddress(i), dst: NET.server, sport: 1024 + (i % 60_000), dport: PORTS.step1, isn: isn(), payload });
  return {
    syn: make((i) => ipv4Tcp({ src: NET.client, dst: NET.server, sport: 1024 + (i % 60_000), dport: PORTS.step1, seq: isn(), flags: TCP_SYN })),
    junk: make((i) =>
      ipv4Tcp({
        src: NET.client,
        dst: NET.server,
        sport: 1024 + (i % 60_000),
        dport: PORTS.step1,
        seq: isn(),
        ack: isn(),
        flags: TCP_ACK | TCP_PSH,
        payload: randomBytes(400),
      }),
    ),
    wrongKey: make(knock(KEYS.wrong)),
    validKnock: make(knock(KEYS.http)),
    getWithCookie: make(dataWithCookie(Buffer.from(`GET / HTTP/1.1\r\nHost: ${NET.server}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n`, 'latin1'))),
    oversize: make(dataWithCookie(knockRequest(NET.server, PATHS.step1, `app=${APP}&access_key=${'k'.repeat(2100)}`))),
  };
}

/** An inspector on fresh step-1 tables in shared memory, as a daemon worker gets them. */
function workerInspector(config, cookie, now) {
  const g = config.global;
  const shared = createSharedState(g.rateLimitPerMinute, SIZES);
  const clock = () => now;
  return new Inspector(config, {
    cookie,
    now: clock,
    totp: new TotpVerifier(1, () => now / 1000, new UsedCodes({ store: new SharedUsedCodeStore(shared) })),
    lockout: new SecretLockout(lockoutPolicy(g), { states: new SharedLockoutStates(shared), now: clock }),
    budget: new SharedSourceBudget(shared, g.sourcePrefixV4, g.sourcePrefixV6, clock),
    decided: new SharedDecidedSegments(shared),
  });
}

/**
 * The check every cookie-valid knock makes before its key decides anything (is the app's step-1
 * key locked?), on a shared lockout table holding the app's counts: checks/s of CPU time.
 */
function lockoutCheck(config, seconds, now) {
  const lockout = new SecretLockout(lockoutPolicy(config.global), { states: new SharedLockoutStates(createSharedState(1, SIZES)), now: () => now });
  lockout.fail('step1-key', APP);
  const checks = Array.from({ length: CHECKS_PER_TURN }, () => 'step1-key');
  let locked = 0;
  const result = measure(checks, seconds, (factor) => {
    if (lockout.isLocked(factor, APP)) locked++;
  });
  if (locked !== 0) throw new Error('the bench app got locked');
  return result.perSecond;
}

/** Runs `handle` over the packets (cycling) for about `seconds`; packets/s of CPU time on this one thread. */
function measure(packets, seconds, handle) {
  const deadline = performance.now() + seconds * 1000;
  const cpuStart = process.cpuUsage();
  let count = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 1000; i++) handle(packets[count++ % packets.length]);
  }
  const cpu = process.cpuUsage(cpuStart);
  return { packets: count, perSecond: Math.round(count / ((cpu.user + cpu.system) / 1e6)) };
}

export function inspectorBench({ seconds = 1 } = {}) {
  // Each inspection gets a fresh inspector, so rate limits and caches start empty; the limit is
  // raised so every wrong-key and valid knock reaches the parser and the key check.
  const config = parseConfig(
    benchConfigYaml({
      firewall: 'nftables',
      capture: 'nflog',
      stateDir: '/var/lib/knock-port-bench',
      controlSocket: '/run/kpb.sock',
      rateLimitPerMinute: 1_000_000,
    }),
    'bench',
  );
  const cookie = new KeyedCookieSource(randomCookieSecret());
  const now = Date.now();
  const sets = packetSets(cookie, now);
  const view = new TcpSegmentView();
  const reference = measure(sets.junk, seconds, (p) => decodeTcpPacket(p, view));
  // Untimed pass over every kind first: otherwise the first knock row measured also pays for
  // compiling the parser and key check that the later rows get for free.
  for (const packets of Object.values(sets)) {
    const inspector = workerInspector(config, cookie, now);
    for (let i = 0; i < WARM_UP; i++) inspector.inspect(packets[i]);
  }
  const rows = {};
  const outcomes = {};
  for (const [kind, packets] of Object.entries(sets)) {
    const inspector = workerInspector(config, cookie, now);
    const seen = new Map();
    rows[kind] = measure(packets, seconds, (p) => {
      const d = inspector.inspect(p);
      seen.set(d.result, (seen.get(d.result) ?? 0) + 1);
    });
    outcomes[kind] = Object.fromEntries(seen);
  }
  lockoutCheck(config, seconds / 4, now);
  const lockoutCheckPps = lockoutCheck(config, seconds, now);
  return { decodeOnlyPps: reference.perSecond, rows, outcomes, distinctPackets: DISTINCT, lockoutCheckPps };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify({ bench: 'inspector', ...inspectorBench({ seconds: Number(process.env.BENCH_SECONDS ?? 1) }) })}\n`);
}
