/**
 * Budgets an attacker cannot multiply, where the kernel decides: the per-source SYN meters count
 * a whole IPv6 /64 (two addresses of one /64 share one budget, another /64 has its own), on the
 * nftables and iptables backends; and the iptables step-1 hashlimit table survives a
 * random-source SYN flood at the daemon's capacity without dropping new sources, so a valid
 * knock still gets through; a full nftables meter stops limiting new sources rather than
 * dropping them; and the real daemon locks an app after wrong keys from several sources, logs
 * and counts it. The real daemon in namespaces this test creates; traffic stays in them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { announceSkip, kernelSkipReason, type Netns } from '../../helpers/netns.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { execIn as execInNs, synFlood } from '../../helpers/scenario.js';
import { curlFrom, execIn } from './probes.js';

const skip = announceSkip('attacks/budgets', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'nping', 'trafgen']));

const STEP1_PATH = '/knock-bud-3c81e5';
const STEP2_PATH = '/step2-bud-9a0d72';
const KEYS = { http: 'budget-http-key-5e1f0a', https: 'budget-https-key-7b3c9d' };
const STEP1_PORT = 80;

function configYaml(sandbox: Sandbox, settings: Record<string, string | number>): string {
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, interface_int: undefined, ...settings })}svc:
  port: 8080
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 20
`;
}

async function start(sandbox: Sandbox, settings: Record<string, string | number>, args: string[]): Promise<Daemon> {
  const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, settings));
  const daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...args]);
  if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  return daemon;
}

const BACKENDS = [
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] as string[], prefix: 'bnf' },
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'], prefix: 'bip' },
];

/** Two addresses of the client's /64 (the wire's) and one of another /64 routed through the client. */
const SAME_64 = ['2001:db8:1::a1', '2001:db8:1::b2'] as const;
const OTHER_64 = '2001:db8:1:c::c3';

describe.skipIf(skip).each(BACKENDS)('per-/64 SYN meter in the kernel: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox(backend.prefix);
    for (const address of [...SAME_64, OTHER_64]) sandbox.client.ip('addr', 'add', `${address}/64`, 'dev', IF.clientWan, 'nodad');
    sandbox.gw.ip('-6', 'route', 'add', '2001:db8:1:c::/64', 'via', ADDR.client6);
    // 1 SYN a second, burst 2, per /64: one address's burst drains its neighbours' budget.
    daemon = await start(sandbox, { firewall_type: backend.firewall, capture: backend.capture, syn_rate_per_second: 1, source_prefix_v6: 64 }, backend.args);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('two addresses of one /64 share one budget; another /64 keeps its own', async () => {
    const wire = { ifname: IF.clientWan, peer: sandbox.gw, peerIf: IF.gwWan };
    const flood = (from: string) => synFlood(sandbox.client, wire, from, ADDR.gwWan6, STEP1_PORT, 20, 100);
    // At the same time (xt_hashlimit forgets a source idle for a second): 0.2 s of SYNs from each.
    const [first, neighbour] = await Promise.all(SAME_64.map(flood));
    const other = await flood(OTHER_64);
    console.log(
      `[budgets] ${backend.name} SYN-ACKs for 20 SYNs each: ${SAME_64[0]} ${first!.answered}, ${SAME_64[1]} ${neighbour!.answered}, ${OTHER_64} ${other.answered}`,
    );
    expect([first!.sent, neighbour!.sent, other.sent]).toEqual([20, 20, 20]);
    // One burst of 2 (plus what a second's refill adds) between them; per address each would have had 2.
    expect(first!.answered + neighbour!.answered).toBeGreaterThanOrEqual(1);
    expect(first!.answered + neighbour!.answered).toBeLessThanOrEqual(3);
    expect(other.answered).toBeGreaterThanOrEqual(2);
    if (backend.firewall === 'nftables') {
      const set = JSON.parse(sandbox.gw.exec('nft', ['-j', 'list', 'set', 'inet', 'knockport', 'step1_rate_v6'])) as {
        nftables: Array<{ set?: { elem?: Array<{ elem: { val: string } }> } }>;
      };
      const keys = set.nftables.flatMap((entry) => entry.set?.elem?.map((e) => e.elem.val) ?? []).sort();
      expect(keys).toEqual(['2001:db8:1::', '2001:db8:1:c::']);
    }
  });
});

/** The daemon's measured inspection capacity is 100,000-150,000 packets a second (bench/RESULTS.md). */
const FLOOD_PPS = 100_000;
const FLOOD_SECONDS = 10;
/** Fresh client addresses, one knock each, all at once during the flood. */
const KNOCKERS = Array.from({ length: 10 }, (_, i) => `192.0.2.${80 + i}`);

describe.skipIf(skip)('iptables step-1 hashlimit under a random-source SYN flood', () => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox('bfl');
    for (const address of KNOCKERS) sandbox.client.ip('addr', 'add', `${address}/24`, 'dev', IF.clientWan);
    // A gateway has a default route: SYN-ACKs to the spoofed sources leave by the WAN link (and die in the client namespace).
    sandbox.gw.ip('route', 'add', 'default', 'via', ADDR.client4);
    daemon = await start(sandbox, { firewall_type: 'iptables', capture: 'nfqueue' }, ['--iptables-variant', 'nft']);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it(`drops no new source while flooded at ${FLOOD_PPS.toLocaleString('en')} random sources a second, and valid knocks get through`, async () => {
    const { gw, client } = sandbox;
    const table = /--hashlimit-name (\S+)/.exec(gw.exec('iptables', ['-S', 'KNOCKPORT-CAPTURE']))?.[1];
    expect(table, 'step-1 hashlimit rule').toBeDefined();
    const before = captureCounters(gw);

    let flooding = true;
    const flood = randomSourceSynFlood(sandbox, FLOOD_PPS, FLOOD_SECONDS).then((r) => {
      flooding = false;
      return r;
    });

    await sleep(2_000);
    const entries = Number((await execInNs(gw, 'sh', ['-c', `wc -l < /proc/net/ipt_hashlimit/${table}`])).out.trim());
    // Valid knocks from addresses the table has never seen, all at once while the flood runs,
    // each retried as a user would (the daemon itself is saturated and its queue overflows).
    const knock = async (from: string): Promise<string> => {
      let status = '000';
      for (let attempt = 0; attempt < 3 && flooding && status !== '200'; attempt++) {
        await curlFrom(client, from, ['-d', `app=svc&access_key=${KEYS.http}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 2);
        status = (await curlFrom(client, from, ['-k', '--data-binary', `app=svc&access_key=${KEYS.https}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 2)).status;
      }
      return status;
    };
    const statuses = await Promise.all(KNOCKERS.map(knock));
    const opened = statuses.filter((s) => s === '200').length;
    const duringFlood = flooding;
    const sent = await flood;
    const after = captureCounters(gw);
    const entered = after.entered - before.entered;
    const passed = after.queued - before.queued;
    const limited = after.limited - before.limited;
    const hotdropped = entered - passed - limited;
    const packets = sent.packets;
    console.log(
      `[budgets] flood: ${packets} SYNs in ${sent.seconds.toFixed(1)} s (${Math.round(packets / sent.seconds)}/s offered); reached the step-1 chain ${entered}, ` +
        `passed the hashlimit ${passed}, over a source's rate ${limited}, dropped for want of a table entry ${hotdropped}; table entries ${entries}; ` +
        `valid knocks: ${opened}/${KNOCKERS.length} opened, ${duringFlood ? 'during' : 'after'} the flood`,
    );
    expect(packets).toBeGreaterThan(FLOOD_PPS * FLOOD_SECONDS * 0.5);
    expect(entered).toBeGreaterThan(FLOOD_PPS * FLOOD_SECONDS * 0.5);
    expect(hotdropped / entered, 'share of SYNs dropped because the table was full').toBeLessThan(0.01);
    expect(opened, 'valid knocks during the flood').toBe(KNOCKERS.length);
    expect(duringFlood, 'the knocks completed while the flood was still running').toBe(true);
  });
});

describe.skipIf(skip)('nftables step-1 meter when full', () => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox('bnm');
    sandbox.client.ip('addr', 'add', '192.0.2.70/24', 'dev', IF.clientWan);
    sandbox.gw.ip('route', 'add', 'default', 'via', ADDR.client4);
    daemon = await start(sandbox, { firewall_type: 'nftables', capture: 'nflog', syn_rate_per_second: 1 }, []);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('stops limiting sources it cannot add (it does not drop them)', async () => {
    const wire = { ifname: IF.clientWan, peer: sandbox.gw, peerIf: IF.gwWan };
    const limited = await synFlood(sandbox.client, wire, ADDR.client4, ADDR.gwWan4, STEP1_PORT, 20, 100);
    // Fill the meter (65,535 sources, each remembered for a minute) from random sources.
    await randomSourceSynFlood(sandbox, FLOOD_PPS, 1.5);
    const elements = Number(
      (await execIn(sandbox.gw, 'sh', ['-c', "nft list set inet knockport step1_rate_v4 | grep -o 'limit rate over' | wc -l"])).out.trim(),
    );
    const unlimited = await synFlood(sandbox.client, wire, '192.0.2.70', ADDR.gwWan4, STEP1_PORT, 20, 100);
    console.log(
      `[budgets] nft meter: ${limited.answered}/20 SYN-ACKs before it filled, ${elements} elements after the flood, ${unlimited.answered}/20 for a new source then`,
    );
    expect(limited.answered).toBeLessThanOrEqual(3);
    expect(elements).toBeGreaterThanOrEqual(65_000);
    expect(unlimited.answered).toBeGreaterThanOrEqual(15);
  });
});

describe.skipIf(skip)('secret lockout in the running daemon', () => {
  const GUESSERS = ['192.0.2.61', '192.0.2.62', '192.0.2.63'];
  const HOLDER = '192.0.2.64';
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox('blk');
    for (const address of [...GUESSERS, HOLDER]) sandbox.client.ip('addr', 'add', `${address}/24`, 'dev', IF.clientWan);
    daemon = await start(sandbox, { firewall_type: 'nftables', capture: 'nflog', lockout_app_failures: 3, metrics_listen: '127.0.0.1:9464' }, []);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('locks the app after wrong keys from several addresses, refuses its right key, logs and counts it', async () => {
    const step1 = (from: string, key: string) => curlFrom(sandbox.client, from, ['-d', `app=svc&access_key=${key}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 1);
    const step2 = (from: string) =>
      curlFrom(sandbox.client, from, ['-k', '--data-binary', `app=svc&access_key=${KEYS.https}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 2);
    for (const [i, from] of GUESSERS.entries()) await step1(from, `guessed-key-${i}-0123456789`);
    expect(await daemon!.waitForLog(/app locked after 3 wrong keys/, 5_000)).toBe(true);
    // The right key, from an address that never guessed, opens nothing while the app is locked.
    await step1(HOLDER, KEYS.http);
    expect((await step2(HOLDER)).status).toBe('000');
    const metrics = (await execIn(sandbox.gw, 'curl', ['-sS', '-m', '2', 'http://127.0.0.1:9464/metrics'])).out;
    expect(metrics).toMatch(/^knockport_lockouts_total\{factor="step1-key"\} 1$/m);
    expect(metrics).toMatch(/^knockport_lockout_refusals_total\{factor="step1-key"\} [1-9]/m);
    const lock = daemon!.output.find((line) => line.includes('app locked after'))!;
    expect(JSON.parse(lock)).toMatchObject({ level: 40, factor: 'step1-key', app: 'svc', failures: 3, lockSeconds: 900 });
    for (const secret of [KEYS.http, 'guessed-key-0']) expect(daemon!.output.join('\n')).not.toContain(secret);
  });
});

/**
 * A SYN flood from random IPv4 sources to the gateway's step-1 port, from the client namespace,
 * for `seconds` (`timeout` ends it with SIGINT, after which trafgen still reports), and at most
 * twice the packets `perSecond` asks for (trafgen's pacing is approximate).
 */
async function randomSourceSynFlood(sandbox: Sandbox, perSecond: number, seconds: number): Promise<{ packets: number; seconds: number }> {
  const cfg = join(sandbox.dir, 'flood.trafgen');
  writeFileSync(
    cfg,
    `{ eth(da=${macOf(sandbox.gw, IF.gwWan)}, sa=${macOf(sandbox.client, IF.clientWan)}), ipv4(saddr=drnd(), daddr=${ADDR.gwWan4}, ttl=64), tcp(sp=drnd(), dp=${STEP1_PORT}, seq=drnd(), syn, window=64240) }\n`,
  );
  const started = performance.now();
  const count = Math.round(2 * perSecond * seconds);
  const r = await execIn(
    sandbox.client,
    'timeout',
    ['-s', 'INT', String(seconds), 'trafgen', '-o', IF.clientWan, '-i', cfg, '-P', '1', '-q', '-b', `${perSecond}pps`, '-n', String(count)],
    (seconds + 10) * 1000,
  );
  return { packets: Number(/(\d+) packets outgoing/.exec(r.out + r.err)?.[1] ?? NaN), seconds: (performance.now() - started) / 1000 };
}

/** Packet counters of the step-1 path: SYNs into the capture chain, over-rate drops, queued to the daemon. */
function captureCounters(gw: Netns): { entered: number; limited: number; queued: number } {
  const counts = (chain: string) =>
    gw
      .exec('iptables', ['-L', chain, '-v', '-x', '-n'])
      .split('\n')
      .slice(2)
      .filter((l) => l.trim() !== '')
      .map((line) => ({ packets: Number(line.trim().split(/\s+/)[0]), line }));
  const step1 = counts('KNOCKPORT-STEP1');
  const capture = counts('KNOCKPORT-CAPTURE');
  return {
    entered: step1.find((r) => r.line.includes('KNOCKPORT-CAPTURE') && r.line.includes('flags:0x17/0x02'))?.packets ?? NaN,
    limited: capture.find((r) => r.line.includes('limit: above'))?.packets ?? NaN,
    queued: capture.find((r) => r.line.includes('NFQUEUE'))?.packets ?? NaN,
  };
}

function macOf(ns: Netns, ifname: string): string {
  const [link] = JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as Array<{ address: string }>;
  if (!link) throw new Error(`no interface ${ifname} in ${ns.name}`);
  return link.address;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
