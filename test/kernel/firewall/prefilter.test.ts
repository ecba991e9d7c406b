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
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { prefilterDrops, type PrefilterTool } from '../../helpers/prefilter.js';
import { injectSegments } from '../../helpers/raw-inject.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { nftQueueMissing, rowsForThisRun, scaled } from '../../helpers/vm.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { bracket, curlFrom, execIn, tcpConnects } from '../attacks/probes.js';

const skip = announceSkip(
  'firewall/prefilter',
  kernelSkipReason(['ip', 'nft', 'iptables', 'iptables-legacy', 'ip6tables-legacy', 'curl', 'openssl', 'hping3', 'python3']),
);

const STEP1_PATH = '/knock-pre-6b21d4';
const STEP2_PATH = '/step2-pre-0e93ac';
const KEYS = { http: 'prefilter-http-key-4c1e', https: 'prefilter-https-key-93ab' };
const METRICS_PORT = 9464;
/** hping3 segments per flood: bounded, and more than the per-source budget would let through. */
const FLOOD = 200;
/** The full-speed junk flood, bounded in time. */
const FLOOD_SECONDS = 2;

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
]).map((backend) => ({ ...backend, skipped: skip || announceSkip(`firewall/prefilter [${backend.name}]`, backend.unavailable()) }));

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

describe.each(BACKENDS)('step-1 prefilter in the kernel: $name', (backend) => {
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
    if (backend.skipped) return;
    sandbox = createSandbox(backend.label);
    if (backend.firewall === 'vyos') vyosCommit(sandbox.gw, 'drop');
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it.skipIf(backend.skipped)('a junk and wrong-path flood never reaches the daemon; the prefilter counter rises by as many', async () => {
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

  it.skipIf(backend.skipped)(`a ${FLOOD_SECONDS} s junk flood at full speed costs the daemon nothing`, async () => {
    const before = await outcomes();
    const dropsBefore = kernelDrops();
    const pid = daemon!.proc.pid!;
    const cpuBefore = cpuSeconds(pid);
    const flood = await execIn(
      sandbox.client,
      'timeout',
      ['-s', 'INT', String(FLOOD_SECONDS), 'hping3', '--flood', '-q', '-n', '-A', '-P', '-d', '200', '-p', '80', '--rand-source', ADDR.gwWan4],
      (FLOOD_SECONDS + 5) * 1000,
    );
    const sent = Number(/(\d+) packets transmitted/.exec(flood.out + flood.err)?.[1] ?? NaN);
    const dropped = kernelDrops() - dropsBefore;
    const cpu = cpuSeconds(pid) - cpuBefore;
    const after = await outcomes();
    console.log(
      `[prefilter] ${backend.name}: flood of ${sent} junk segments in ${FLOOD_SECONDS} s (${Math.round(sent / FLOOD_SECONDS)}/s), kernel prefilter dropped ${dropped}, daemon CPU ${cpu.toFixed(2)} s, daemon outcomes unchanged: ${JSON.stringify(after) === JSON.stringify(before)}`,
    );
    expect(sent).toBeGreaterThan(1000);
    // What the veth's backlog let through (most of it) ended on the prefilter rule, none in the daemon.
    expect(dropped).toBeGreaterThan(sent * 0.5);
    expect(after).toEqual(before);
  });

  it.skipIf(backend.skipped)('a correct knock still passes and opens the HTTPS port, IPv4 and IPv6', async () => {
    for (const [from, gw] of [
      [ADDR.client4, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const) {
      expect(await tcpConnects(sandbox.client, from, gw, 443, scaled(800))).toBe(false);
      const knock = await curlFrom(sandbox.client, from, ['-d', `app=svc&access_key=${KEYS.http}`, `http://${bracket(gw)}${STEP1_PATH}`], scaled(1));
      expect(knock.status).toBe('000');
      expect(await waitFor(async () => tcpConnects(sandbox.client, from, gw, 443, scaled(800)), scaled(4000), 200)).toBe(true);
    }
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
]).map((backend) => ({ ...backend, skipped: skip || announceSkip(`firewall/prefilter handshake none [${backend.name}]`, backend.unavailable()) }));

describe.each(INVISIBLE)('step-1 prefilter without a handshake (data in the SYN): $name', (backend) => {
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
    if (backend.skipped) return;
    sandbox = createSandbox(backend.label);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture, 'none'));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it.skipIf(backend.skipped)('SYNs carrying junk or a wrong path are dropped in the kernel; a SYN carrying the knock opens HTTPS', async () => {
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
