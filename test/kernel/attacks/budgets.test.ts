/**
 * Budgets an attacker cannot multiply, where the kernel decides: the per-source SYN meters count
 * a whole IPv6 /64 (two addresses of one /64 share one budget, another /64 has its own), on the
 * nftables and iptables backends; and the iptables step-1 hashlimit table survives a
 * random-source SYN flood at the daemon's capacity without dropping new sources, so a valid
 * knock still gets through. The real daemon in namespaces this test creates; traffic stays in them.
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
    const first = await flood(SAME_64[0]);
    const neighbour = await flood(SAME_64[1]);
    const other = await flood(OTHER_64);
    console.log(`[budgets] ${backend.name} SYN-ACKs for 20 SYNs each: first ${first.answered}, same /64 ${neighbour.answered}, other /64 ${other.answered}`);
    expect(first.sent).toBe(20);
    expect(first.answered).toBeGreaterThanOrEqual(1);
    expect(first.answered).toBeLessThanOrEqual(3);
    // Per address, the neighbour would have had a fresh burst of 2.
    expect(neighbour.answered).toBeLessThanOrEqual(1);
    expect(other.answered).toBeGreaterThanOrEqual(2);
    if (backend.firewall === 'nftables') {
      const set = JSON.parse(sandbox.gw.exec('nft', ['-j', 'list', 'set', 'inet', 'knockport', 'step1_rate_v6'])) as { nftables: Array<{ set?: { elem?: Array<{ elem: { val: string } }> } }> };
      const keys = set.nftables.flatMap((entry) => entry.set?.elem?.map((e) => e.elem.val) ?? []).sort();
      expect(keys).toEqual(['2001:db8:1:c::', '2001:db8:1::']);
    }
  });
});

/** The daemon's measured inspection capacity is 100,000-150,000 packets a second (bench/RESULTS.md). */
const FLOOD_PPS = 100_000;
const FLOOD_SECONDS = 10;
const KNOCKER = '192.0.2.77';

describe.skipIf(skip)('iptables step-1 hashlimit under a random-source SYN flood', () => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox('bfl');
    sandbox.client.ip('addr', 'add', `${KNOCKER}/24`, 'dev', IF.clientWan);
    // A gateway has a default route: SYN-ACKs to the spoofed sources leave by the WAN link (and die in the client namespace).
    sandbox.gw.ip('route', 'add', 'default', 'via', ADDR.client4);
    daemon = await start(sandbox, { firewall_type: 'iptables', capture: 'nfqueue' }, ['--iptables-variant', 'nft']);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it(`drops no new source while flooded at ${FLOOD_PPS.toLocaleString('en')} random sources a second, and a valid knock gets through`, async () => {
    const { gw, client } = sandbox;
    const table = /--hashlimit-name (\S+)/.exec(gw.exec('iptables', ['-S', 'KNOCKPORT-CAPTURE']))?.[1];
    expect(table, 'step-1 hashlimit rule').toBeDefined();
    const before = captureCounters(gw);

    const cfg = join(sandbox.dir, 'flood.trafgen');
    writeFileSync(cfg, `{ eth(da=${macOf(gw, IF.gwWan)}, sa=${macOf(client, IF.clientWan)}), ipv4(saddr=drnd(), daddr=${ADDR.gwWan4}, ttl=64), tcp(sp=drnd(), dp=${STEP1_PORT}, seq=drnd(), syn, window=64240) }\n`);
    const started = performance.now();
    let flooding = true;
    // Bounded by count and by time; `timeout` ends it with SIGINT, after which trafgen still reports.
    const flood = execIn(client, 'timeout', ['-s', 'INT', String(FLOOD_SECONDS + 2), 'trafgen', '-o', IF.clientWan, '-i', cfg, '-P', '1', '-q', '-b', `${FLOOD_PPS}pps`, '-n', String(FLOOD_PPS * FLOOD_SECONDS)], (FLOOD_SECONDS + 10) * 1000).then((r) => {
      flooding = false;
      return { ...r, seconds: (performance.now() - started) / 1000 };
    });

    await sleep(2_000);
    const entries = Number((await execInNs(gw, 'sh', ['-c', `wc -l < /proc/net/ipt_hashlimit/${table}`])).out.trim());
    // A valid knock from an address the table has never seen, retried as a user would, while the flood runs.
    let attempts = 0;
    let status = '000';
    while (flooding && status !== '200' && attempts < 3) {
      attempts++;
      await curlFrom(client, KNOCKER, ['-d', `app=svc&access_key=${KEYS.http}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 3);
      status = (await curlFrom(client, KNOCKER, ['-k', '--data-binary', `app=svc&access_key=${KEYS.https}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 1)).status;
    }
    const duringFlood = flooding;
    const sent = await flood;
    const after = captureCounters(gw);
    const entered = after.entered - before.entered;
    const passed = after.queued - before.queued;
    const limited = after.limited - before.limited;
    const hotdropped = entered - passed - limited;
    const packets = Number(/(\d+) packets outgoing/.exec(sent.out + sent.err)?.[1] ?? NaN);
    console.log(
      `[budgets] flood: ${packets} SYNs in ${sent.seconds.toFixed(1)} s (${Math.round(packets / sent.seconds)}/s offered); reached the step-1 chain ${entered}, ` +
        `passed the hashlimit ${passed}, over a source's rate ${limited}, dropped for want of a table entry ${hotdropped}; table entries ${entries}; ` +
        `knock: ${status} after ${attempts} attempt(s), ${duringFlood ? 'during' : 'after'} the flood`,
    );
    expect(packets).toBeGreaterThan(FLOOD_PPS * FLOOD_SECONDS * 0.5);
    expect(entered).toBeGreaterThan(FLOOD_PPS * FLOOD_SECONDS * 0.5);
    expect(entries).toBeGreaterThan(10_000); // the flood did fill it, far beyond what a knock needs
    expect(hotdropped / entered, 'share of SYNs dropped because the table was full').toBeLessThan(0.01);
    expect(status, 'valid knock during the flood').toBe('200');
    expect(duringFlood, 'the knock completed while the flood was still running').toBe(true);
  });
});

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
