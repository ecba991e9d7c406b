/**
 * The in-kernel step-1 prefilter with the real daemon, on every backend this kernel runs
 * (nftables + NFLOG, iptables-nft + NFQUEUE and NFLOG, iptables-legacy + NFQUEUE, the VyOS
 * layout; nftables + NFQUEUE in the stock-kernel VM). What an operator checks: a flood of
 * junk and wrong-path data segments (with and without a real handshake, IPv4 and IPv6) never
 * reaches the daemon (its step-1 counters stay flat) while the firewall's own prefilter
 * counter rises by as many; SYNs still get their cookie SYN-ACK; a correct knock still opens
 * the HTTPS port. With `step1_handshake: none`, SYNs carrying junk are dropped likewise and a
 * SYN carrying the knock still opens it. Namespaces are made by the test; traffic stays inside them.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, leftToTheVm, waitFor } from '../../helpers/netns.js';
import { prefilterDrops, type PrefilterTool } from '../../helpers/prefilter.js';
import { injectSegments } from '../../helpers/raw-inject.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { nftQueueMissing, rowsForThisRun, scaled } from '../../helpers/vm.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { bracket, execIn, tcpConnects } from '../attacks/probes.js';

const FILE = 'test/kernel/firewall/prefilter.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'iptables', 'iptables-legacy', 'ip6tables-legacy', 'curl', 'openssl', 'hping3', 'python3']));

const STEP1_PATH = '/knock-pre-6b21d4';
const STEP2_PATH = '/step2-pre-0e93ac';
const KEYS = { http: 'prefilter-http-key-4c1e', https: 'prefilter-https-key-93ab' };
const METRICS_PORT = 9464;
/** hping3 segments per flood: bounded, and more than the per-source budget would let through. */
const FLOOD = 200;
/** The full-speed junk flood, bounded in time. */
const FLOOD_SECONDS = 2;

/**
 * The junk flood may cost the daemon at most this share of what a flood it must inspect costs,
 * per packet, in the same run. Inspecting the junk would cost about as much (the same capture
 * and cookie check); half leaves room for a busy machine charging interrupt work to the daemon.
 */
const MAX_SHARE_OF_INSPECTION = 0.5;

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /s, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const BACKENDS = rowsForThisRun([
  {
    name: 'nftables + NFLOG',
    label: 'pfn',
    firewall: 'nftables',
    capture: 'nflog',
    args: [] as string[],
    tool: 'nft' as PrefilterTool,
    vm: false,
    unavailable: () => undefined,
  },
  {
    name: 'nftables + NFQUEUE',
    label: 'pfq',
    firewall: 'nftables',
    capture: 'nfqueue',
    args: [],
    tool: 'nft' as PrefilterTool,
    vm: true,
    unavailable: () => (skip ? undefined : nftQueueMissing()),
  },
  {
    name: 'iptables-nft + NFQUEUE',
    label: 'pfi',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    tool: 'iptables' as PrefilterTool,
    vm: false,
    unavailable: () => undefined,
  },
  {
    name: 'iptables-nft + NFLOG',
    label: 'pfl',
    firewall: 'iptables',
    capture: 'nflog',
    args: ['--iptables-variant', 'nft'],
    tool: 'iptables' as PrefilterTool,
    vm: false,
    unavailable: () => undefined,
  },
  {
    name: 'iptables-legacy + NFQUEUE',
    label: 'pfg',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'legacy'],
    tool: 'iptables-legacy' as PrefilterTool,
    vm: false,
    unavailable: () => undefined,
  },
  {
    name: 'VyOS layout + NFLOG',
    label: 'pfv',
    firewall: 'vyos',
    capture: 'nflog',
    args: [],
    tool: 'nft' as PrefilterTool,
    vm: false,
    unavailable: () => undefined,
  },
]).filter((backend) => !leftToTheVm(FILE, backend.name, skip ? undefined : backend.unavailable()));

function configYaml(sandbox: Sandbox, firewall: string, capture: string, handshake = 'cookie'): string {
  return `${globalSection(sandbox, {
    step1_handshake: handshake,
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    firewall_type: firewall,
    capture,
    // One queue or group: this test is about which packets reach it, not about fanout.
    step1_workers: 1,
    metrics_listen: `127.0.0.1:${METRICS_PORT}`,
  })}svc:
  port: 8080
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 20
`;
}

/** Wrong-path and junk payloads with the shape of a knock, or none at all. */
const JUNK: Buffer[] = [
  `POST /knock-pre-6b21d5 HTTP/1.1\r\nContent-Length: 3\r\n\r\na=b`,
  `POST ${STEP1_PATH}x HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH.slice(0, -1)} HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH}?a=1 HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH.toUpperCase()} HTTP/1.1\r\n\r\n`,
  `GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH}`,
  `\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03`,
].map((text) => Buffer.from(text, 'latin1'));

describe.skipIf(skip).each(BACKENDS)('step-1 prefilter in the kernel: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  const scrape = async () => (await execIn(sandbox.gw, 'curl', ['-sS', '-m', '2', `http://127.0.0.1:${METRICS_PORT}/metrics`])).out;
  /** Step-1 packets the daemon judged, by outcome (syn, ignored, spoofed, rejected, ...). */
  const outcomes = async (): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (const m of (await scrape()).matchAll(/^knockport_step1_packets_total\{outcome="([a-z]+)",reason=""\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
    return counts;
  };
  /** Packets the firewall's prefilter rules dropped, both families, from the rule counters. */
  const kernelDrops = (): number => prefilterDrops(sandbox.gw, backend.tool);

  beforeAll(async () => {
    sandbox = createSandbox(backend.label);
    if (backend.firewall === 'vyos') vyosCommit(sandbox.gw, 'drop');
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('a junk and wrong-path flood never reaches the daemon; the prefilter counter rises by as many', async () => {
    const before = await outcomes();
    const dropsBefore = kernelDrops();
    // Without a handshake: ACK+PSH segments with 64 bytes of junk, at a rate far over the per-source budget.
    const hping = await execIn(sandbox.client, 'hping3', ['-q', '-c', String(FLOOD), '-i', 'u2000', '-A', '-P', '-d', '64', '-p', '80', ADDR.gwWan4], 30_000);
    expect(hping.out + hping.err).toMatch(new RegExp(`${FLOOD} packets transmitted`));
    let sent = FLOOD;
    let synAcks = 0;
    for (const [src, dst] of [
      [ADDR.client4, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const) {
      // Spoofed: no handshake, random acknowledgement.
      sent += injectSegments(sandbox.client, { iface: IF.clientWan, src, dst, dport: 80, segments: JUNK }).sent;
      // A real handshake (the SYN reaches the daemon and is answered), then wrong payloads with a valid cookie.
      const real = injectSegments(sandbox.client, { iface: IF.clientWan, src, dst, dport: 80, handshake: true, segments: JUNK });
      if (real.synAck) synAcks++;
      sent += real.sent;
    }
    expect(sent).toBe(FLOOD + 4 * JUNK.length);
    // SYNs still reach the daemon and get their cookie SYN-ACK.
    expect(synAcks).toBe(2);
    expect(await waitFor(() => kernelDrops() - dropsBefore >= sent, scaled(3000), 100)).toBe(true);
    const after = await outcomes();
    console.log(
      `[prefilter] ${backend.name}: ${sent} junk data segments sent, kernel prefilter dropped ${kernelDrops() - dropsBefore}, daemon outcomes before ${JSON.stringify(before)} after ${JSON.stringify(after)}`,
    );
    expect(kernelDrops() - dropsBefore).toBe(sent);
    // Only the two handshakes' SYNs reached the daemon.
    const count = (counts: Record<string, number>, outcome: string) => counts[outcome] ?? 0;
    expect(count(after, 'syn') - count(before, 'syn')).toBe(2);
    for (const outcome of ['ignored', 'spoofed', 'granted', 'rejected', 'retransmission']) expect(count(after, outcome), outcome).toBe(count(before, outcome));
  });

  /** A FLOOD_SECONDS hping3 flood of ACK+PSH segments (random sources) carrying `payload`: packets sent and daemon CPU seconds used. */
  const flood = async (payload: Buffer): Promise<{ sent: number; cpu: number }> => {
    const file = writeFile(sandbox, 'flood.bin', payload.toString('latin1'));
    const pid = daemon!.proc.pid!;
    const cpuBefore = cpuSeconds(pid);
    const hping = await execIn(
      sandbox.client,
      'timeout',
      [
        '-s',
        'INT',
        String(FLOOD_SECONDS),
        'hping3',
        '--flood',
        '-q',
        '-n',
        '-A',
        '-P',
        '-d',
        String(payload.length),
        '-E',
        file,
        '-p',
        '80',
        '--rand-source',
        ADDR.gwWan4,
      ],
      (FLOOD_SECONDS + 5) * 1000,
    );
    // Let the daemon finish what its queue still holds before reading its CPU.
    await new Promise((resolve) => setTimeout(resolve, scaled(300)));
    return {
      sent: Number(/(\d+) packets transmitted/.exec(hping.out + hping.err)?.[1] ?? NaN),
      cpu: cpuSeconds(pid) - cpuBefore,
    };
  };
  /** Daemon CPU seconds over `ms` without traffic. */
  const idleCpu = async (ms: number): Promise<number> => {
    const pid = daemon!.proc.pid!;
    const cpuBefore = cpuSeconds(pid);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return cpuSeconds(pid) - cpuBefore;
  };

  it(`a ${FLOOD_SECONDS} s junk flood at full speed costs the daemon nothing: no packet, and less CPU than inspecting it would`, async () => {
    // What the daemon spends anyway over a flood's time (timers, self-heal, scrapes) is nobody's
    // packets: measured first, while nothing else runs, and taken off both floods.
    const idle = await idleCpu(FLOOD_SECONDS * 1000 + scaled(300));
    const before = await outcomes();
    const dropsBefore = kernelDrops();
    const junk = await flood(Buffer.alloc(200, 'x'));
    const dropped = kernelDrops() - dropsBefore;
    const after = await outcomes();
    expect(junk.sent).toBeGreaterThan(1000);
    // What the veth's backlog let through (most of it) ended on the prefilter rule, none in the daemon.
    expect(dropped).toBeGreaterThan(junk.sent * 0.5);
    expect(after).toEqual(before);

    // The reference, same run and machine: segments that pass the prefilter (the knock's request
    // line) without a cookie, which the daemon must capture, check and judge spoofed.
    const inspect = await flood(Buffer.from(`POST ${STEP1_PATH} HTTP/1.1\r\n${'x'.repeat(200)}`.slice(0, 200), 'latin1'));
    const judged = ((await outcomes()).spoofed ?? 0) - (after.spoofed ?? 0);
    const cpuPerInspected = (inspect.cpu - idle) / judged;
    const junkCpu = junk.cpu - idle;
    console.log(
      `[prefilter] ${backend.name}: junk flood of ${junk.sent} segments in ${FLOOD_SECONDS} s, kernel prefilter dropped ${dropped}, daemon CPU ${junk.cpu.toFixed(3)} s (idle ${idle.toFixed(3)} s); ` +
        `reference flood of ${inspect.sent}, daemon judged ${judged} for ${inspect.cpu.toFixed(3)} s CPU (${(cpuPerInspected * 1e6).toFixed(1)} µs each beyond idle): ` +
        `inspecting the junk would have cost ${(dropped * cpuPerInspected).toFixed(3)} s`,
    );
    expect(judged).toBeGreaterThan(1000);
    expect(junkCpu).toBeLessThan(MAX_SHARE_OF_INSPECTION * dropped * cpuPerInspected);
  });

  it('a correct knock still passes and opens the HTTPS port, IPv4 and IPv6', async () => {
    const families = [
      [ADDR.client4, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const;
    expect(await Promise.all(families.map(([from, gw]) => tcpConnects(sandbox.client, from, gw, 443, scaled(800))))).toEqual([false, false]);
    const body = `app=svc&access_key=${KEYS.http}`;
    const knockThenConnect = async ([from, gw]: (typeof families)[number]) => ({
      knocked: await knockStep1({ client: sandbox.client, daemon: daemon!, url: `http://${bracket(gw)}${STEP1_PATH}`, body, from, timeoutSeconds: scaled(1) }),
      opened: await waitFor(async () => tcpConnects(sandbox.client, from, gw, 443, scaled(800)), scaled(4000), 200),
    });
    expect(await Promise.all(families.map(knockThenConnect))).toEqual(families.map(() => ({ knocked: true, opened: true })));
    expect((await outcomes()).granted).toBe(2);
  });
});

/** The step-1 request, whole, as a client without a handshake sends it inside its SYN. */
function knockInSyn(body: string): Buffer {
  return Buffer.from(
    `POST ${STEP1_PATH} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    'latin1',
  );
}

const INVISIBLE = rowsForThisRun([
  { name: 'nftables + NFLOG', label: 'pnn', firewall: 'nftables', capture: 'nflog', args: [] as string[], vm: false, unavailable: () => undefined },
  {
    name: 'nftables + NFQUEUE',
    label: 'pnq',
    firewall: 'nftables',
    capture: 'nfqueue',
    args: [],
    vm: true,
    unavailable: () => (skip ? undefined : nftQueueMissing()),
  },
  {
    name: 'iptables-nft + NFQUEUE',
    label: 'pni',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    vm: false,
    unavailable: () => undefined,
  },
]).filter((backend) => !leftToTheVm(FILE, `handshake none, ${backend.name}`, skip ? undefined : backend.unavailable()));

describe.skipIf(skip).each(INVISIBLE)('step-1 prefilter without a handshake (data in the SYN): $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;
  const scrape = async () => (await execIn(sandbox.gw, 'curl', ['-sS', '-m', '2', `http://127.0.0.1:${METRICS_PORT}/metrics`])).out;
  const granted = async () => Number(/^knockport_step1_packets_total\{outcome="granted",reason=""\} (\d+)$/m.exec(await scrape())?.[1] ?? 0);
  const judged = async () =>
    [...(await scrape()).matchAll(/^knockport_step1_packets_total\{outcome="[a-z]+",reason=""\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  /** One SYN from the client carrying `payload` (hping3 reads it from a file). */
  const synWith = async (name: string, payload: Buffer, count = 1) => {
    const file = writeFile(sandbox, name, payload.toString('latin1'));
    const r = await execIn(
      sandbox.client,
      'hping3',
      ['-q', '-c', String(count), '-i', 'u5000', '-S', '-d', String(payload.length), '-E', file, '-p', '80', ADDR.gwWan4],
      30_000,
    );
    expect(r.out + r.err).toMatch(new RegExp(`${count} packets transmitted`));
  };

  beforeAll(async () => {
    sandbox = createSandbox(backend.label);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture, 'none'));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('SYNs carrying junk or a wrong path are dropped in the kernel; a SYN carrying the knock opens HTTPS', async () => {
    const before = await judged();
    await synWith('junk.bin', Buffer.from(`POST ${STEP1_PATH}x HTTP/1.1\r\n\r\n`, 'latin1'), 20);
    await synWith('get.bin', Buffer.from(`GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`, 'latin1'), 20);
    // Give any packet that slipped through the time to be judged.
    await new Promise((resolve) => setTimeout(resolve, scaled(300)));
    expect(await judged()).toBe(before);
    expect(await tcpConnects(sandbox.client, ADDR.client4, ADDR.gwWan4, 443, scaled(800))).toBe(false);
    await synWith('knock.bin', knockInSyn(`app=svc&access_key=${KEYS.http}`));
    expect(await waitFor(async () => (await granted()) === 1, scaled(3000), 100)).toBe(true);
    expect(await waitFor(async () => tcpConnects(sandbox.client, ADDR.client4, ADDR.gwWan4, 443, scaled(800)), scaled(4000), 200)).toBe(true);
  });
});
