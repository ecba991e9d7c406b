/**
 * Invisible mode (`step1_handshake: none`) with the real daemon on this kernel, IPv4 and IPv6,
 * on the nftables backend with NFLOG capture, on iptables-nft with NFQUEUE, and on nftables
 * with NFQUEUE where the kernel has the nft `queue` expression (`npm run test:vm`).
 *
 * What a user checks: nothing ever answers a SYN on the step-1 port, so `nmap -sS` sees it
 * `filtered` like the protected ports (a closed port answers RST); a plain curl cannot knock;
 * a knock carried in the SYN by TCP Fast Open (curl --tcp-fastopen with the client's
 * net.ipv4.tcp_fastopen = 5, or `knock-port knock --tcp-fastopen` with the default 1) opens
 * the step-2 window and nothing more; step 2 then opens the service; a wrong key opens
 * nothing. tcpdump in the gateway namespace records what really crosses the wire.
 * net.ipv4.tcp_fastopen is per network namespace (Linux 4.12 and later): it is only ever
 * set in the client namespace, and the test checks the host's value never moves.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readCaptureFile } from '../../../src/capture/pcap-file.js';
import { formatIPv4, formatIPv6 } from '../../../src/packet/address.js';
import { TCP_ACK, TCP_RST, TCP_SYN, TcpSegmentView, decodeTcpPacket } from '../../../src/packet/decode.js';
import { ipPacketOf } from '../../../src/packet/link.js';
import { announceSkip, kernelSkipReason, leftToTheVm, requiredInCi, waitFor, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { SourcePool, bracketed, curlFrom, execIn, startServices, tcpProbe, type Family } from '../../helpers/scenario.js';
import { itInVmWhen, itOnHost, nftQueueMissing, rowsForThisRun, scaled, scaledSeconds } from '../../helpers/vm.js';

/** Cookie-less client Fast Open (TCP_FASTOPEN_NO_COOKIE, and the sysctl's 0x4) came with Linux 4.15; CI's kernels have it. */
function kernelTooOld(): string | undefined {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  return requiredInCi(
    major > 4 || (major === 4 && minor >= 15) ? undefined : `Linux ${release()} cannot send data in a SYN without a Fast Open cookie (needs 4.15)`,
  );
}

const skip = announceSkip('step1/invisible', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'tcpdump', 'nmap']) ?? kernelTooOld());

const STEP1_PATH = '/knock-invisible-3e81c5';
const STEP2_PATH = '/step2-invisible-b7042d';
const HTTP_KEY = 'invisible-http-key-5d29';
const HTTPS_KEY = 'invisible-https-key-a6f3';
const PORTS = { step1: 80, https: 443, service: 8080, closed: 9999 };
/** Room for the checks between the knock and step 2 (each CLI call is a Node start: seconds in the VM). */
const WINDOW = scaledSeconds(15);
const DURATION = scaledSeconds(60);
const CLOSED_MS = scaled(800);
const OPEN_MS = scaled(1500);
/** Step 1 never answers; 2 s lets the capture show the kernel's first SYN retransmission. */
const STEP1_SECONDS = scaled(2);
const STEP2_SECONDS = scaled(4);
const FASTOPEN_SYSCTL = 'net.ipv4.tcp_fastopen';
/** Client Fast Open (0x1) and data in the SYN without a cookie (0x4): what curl --tcp-fastopen needs here. */
const CURL_FASTOPEN = 0x1 | 0x4;

const BACKENDS = rowsForThisRun([
  { name: 'nftables + NFLOG', label: 'ivn', firewall: 'nftables', capture: 'nflog', args: [] as string[], vm: false, unavailable: () => undefined },
  {
    name: 'nftables + NFQUEUE',
    label: 'ivq',
    firewall: 'nftables',
    capture: 'nfqueue',
    args: [],
    vm: true,
    unavailable: () => (skip ? undefined : nftQueueMissing()),
  },
  {
    name: 'iptables-nft + NFQUEUE',
    label: 'ivi',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    vm: false,
    unavailable: () => undefined,
  },
])
  // Rows this kernel cannot run (nft `queue`) are not registered here: the VM tier runs them.
  .filter((backend) => skip || !leftToTheVm('test/kernel/step1/invisible.test.ts', backend.name, backend.unavailable()))
  .map((backend) => ({ ...backend, skipped: skip }));

function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: PORTS.step1,
    https_port: PORTS.https,
    firewall_type: firewall,
    capture,
    step1_handshake: 'none',
    metrics_listen: '127.0.0.1:9464',
  })}tcpsvc:
  port: ${PORTS.service}
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  duration: ${DURATION}
  step2_https_duration: ${WINDOW}
`;
}

/** One TCP segment seen on the gateway's WAN interface. */
interface Segment {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  payload: Buffer;
}

function segmentsIn(pcap: string): Segment[] {
  const view = new TcpSegmentView();
  const segments: Segment[] = [];
  for (const { linkType, frame } of readCaptureFile(pcap)) {
    const packet = ipPacketOf(linkType, frame);
    if (packet === undefined || decodeTcpPacket(packet, view) !== undefined) continue;
    const format = view.family === 4 ? formatIPv4 : formatIPv6;
    segments.push({
      src: format(packet, view.srcOffset),
      dst: format(packet, view.dstOffset),
      sport: view.sport,
      dport: view.dport,
      flags: view.flags,
      payload: Buffer.from(packet.subarray(view.payloadOffset, view.end)),
    });
  }
  return segments;
}

const isBareSyn = (s: Segment): boolean => (s.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;

/**
 * Records every TCP segment to or from `host` on the gateway's WAN interface while `action`
 * runs. tcpdump is our own child, stopped by its handle; the file is complete on return.
 */
async function captureOnGateway<T>(gw: Netns, pcap: string, host: string, action: () => Promise<T>): Promise<{ result: T; segments: Segment[] }> {
  const tcpdump: ChildProcess = gw.spawn('tcpdump', ['-i', IF.gwWan, '-U', '-n', '-w', pcap, `tcp and host ${host}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  tcpdump.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => tcpdump.once('exit', () => resolve()));
  let result: T;
  try {
    if (!(await waitFor(() => stderr.includes('listening on'), scaled(5_000)))) throw new Error(`tcpdump did not start: ${stderr}`);
    result = await action();
    // The last packets the action caused are on the wire by now; give tcpdump a moment to write them.
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    tcpdump.kill('SIGINT');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
  }
  return { result, segments: segmentsIn(pcap) };
}

/** nmap's verdict per TCP port, from its grepable output. */
function nmapStates(out: string): Record<number, string> {
  const states: Record<number, string> = {};
  for (const match of out.matchAll(/(\d+)\/([a-z|]+)\/tcp/g)) states[Number(match[1])] = match[2]!;
  return states;
}

/** The host's own value, which must never change: the test only sets the client namespace's. */
const hostFastOpen = (): string => readFileSync(`/proc/sys/${FASTOPEN_SYSCTL.replaceAll('.', '/')}`, 'utf8').trim();

describe.each(BACKENDS)('invisible step 1 (step1_handshake: none): $name', (backend) => {
  if (backend.skipped) {
    it.skip('not run on this kernel (reason printed above)', () => {});
    return;
  }
  let sandbox: Sandbox;
  let daemon: Daemon;
  let keyFile: string;
  const pool = new SourcePool(12);
  const hostValue = skip ? '' : hostFastOpen();

  function setClientFastOpen(value: number): void {
    sandbox.client.sysctl(FASTOPEN_SYSCTL, String(value));
    expect(sandbox.client.exec('sysctl', ['-n', FASTOPEN_SYSCTL]).trim()).toBe(String(value));
    expect(hostFastOpen(), 'net.ipv4.tcp_fastopen must be per network namespace').toBe(hostValue);
  }

  function metric(reason: string): number {
    const text = sandbox.gw.exec('curl', ['-sS', '-m', String(scaled(5)), 'http://127.0.0.1:9464/metrics']);
    const match = new RegExp(`^knockport_step1_packets_total\\{outcome="[a-z]+",reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
    return Number(match?.[1] ?? 0);
  }

  function sessionsFor(ip: string): Array<{ ip: string; app: string; step: string }> {
    const out = sandbox.gw.exec(process.execPath, [CLI, 'sessions', '--json', '--socket', join(sandbox.dir, 'control.sock')]);
    return (JSON.parse(out) as Array<{ ip: string; app: string; step: string }>).filter((s) => s.ip === ip);
  }

  const url = (gw: string, scheme: 'http' | 'https', path: string): string => `${scheme}://${bracketed(gw)}${path}`;

  /** curl from the client namespace; `code` is curl's exit code (28: timed out). */
  async function curlCode(args: string[], seconds: number): Promise<number | null> {
    const r = await execIn(sandbox.client, 'curl', ['-sS', '-o', '/dev/null', '-m', String(seconds), ...args], (seconds + 5) * 1000);
    if (r.ok) return 0;
    return Number(/curl: \((\d+)\)/.exec(r.err)?.[1] ?? NaN);
  }

  async function closedFrom(from: string, gw: string): Promise<{ https: string; service: string }> {
    const [https, service] = await Promise.all([
      tcpProbe(sandbox.client, from, gw, PORTS.https, CLOSED_MS),
      tcpProbe(sandbox.client, from, gw, PORTS.service, CLOSED_MS),
    ]);
    return { https: https.kind, service: service.kind };
  }

  function knock(args: string[]) {
    return sandbox.client.runCommand(process.execPath, [CLI, 'knock', ...args], { timeoutMs: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  }

  beforeAll(async () => {
    sandbox = createSandbox(backend.label);
    pool.install(sandbox.client, IF.clientWan);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    keyFile = writeFile(sandbox, 'client.keys', `http_key=${HTTP_KEY}\nhttps_key=${HTTPS_KEY}\n`);
    await startServices(sandbox.gw, { tcp: { [PORTS.service]: 'hello\n' } });
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug', ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') console.log(daemon.output.slice(-20).join('\n'));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
    if (!skip) expect(hostFastOpen()).toBe(hostValue);
  });

  it(`captures with ${backend.capture}, as configured`, () => {
    expect(daemon.output.some((l) => l.includes('knock-port ready') && l.includes(`"capture":"${backend.capture}"`))).toBe(true);
    const rules = backend.firewall === 'nftables' ? sandbox.gw.exec('nft', ['list', 'ruleset']) : sandbox.gw.exec('iptables-save');
    expect(rules).toContain(backend.capture === 'nflog' ? 'log group 1 queue-threshold 1' : backend.firewall === 'nftables' ? 'queue' : '-j NFQUEUE');
  });

  for (const family of [4, 6] as const satisfies readonly Family[]) {
    const gw = family === 4 ? ADDR.gwWan4 : ADDR.gwWan6;
    const tag = `IPv${family}`;

    // One family proves in the VM that the queue's verdict answers nothing; the host runs both.
    itInVmWhen(family === 4)(
      `${tag}: nothing answers a SYN: nmap -sS sees the step-1 port filtered like the protected ports, a closed port answers; plain curl cannot knock`,
      async () => {
        const from = pool.take(family);
        const ignoredBefore = metric('handshake-none');
        const pcap = join(sandbox.dir, `nmap-${tag}.pcap`);
        const { result: scan, segments } = await captureOnGateway(sandbox.gw, pcap, from, () =>
          execIn(
            sandbox.client,
            'nmap',
            [
              ...(family === 6 ? ['-6'] : []),
              '-n',
              '-Pn',
              '-sS',
              '--max-retries',
              '1',
              '--host-timeout',
              '30s',
              '-S',
              from,
              '-e',
              IF.clientWan,
              '-oG',
              '-',
              '-p',
              `${PORTS.step1},${PORTS.https},${PORTS.service},${PORTS.closed}`,
              gw,
            ],
            60_000,
          ),
        );
        expect(scan.ok, scan.err).toBe(true);
        expect(nmapStates(scan.out)).toEqual({ [PORTS.step1]: 'filtered', [PORTS.https]: 'filtered', [PORTS.service]: 'filtered', [PORTS.closed]: 'closed' });
        // On the wire: nmap's SYNs reached the gateway; only the unprotected closed port answered (RST).
        expect(segments.filter((s) => s.src === from && s.dport === PORTS.step1 && isBareSyn(s)).length).toBeGreaterThanOrEqual(1);
        expect(segments.filter((s) => s.src === gw && s.sport === PORTS.step1)).toEqual([]);
        expect(segments.filter((s) => s.src === gw && s.sport === PORTS.closed && (s.flags & TCP_RST) !== 0).length).toBeGreaterThanOrEqual(1);

        // A plain curl with the right key: its SYN goes unanswered, so the request never leaves it.
        const plain = await captureOnGateway(sandbox.gw, join(sandbox.dir, `plain-${tag}.pcap`), from, () =>
          curlCode(['--interface', from, '-d', `app=tcpsvc&access_key=${HTTP_KEY}`, url(gw, 'http', STEP1_PATH)], STEP1_SECONDS),
        );
        expect(plain.result).toBe(28);
        expect(plain.segments.length).toBeGreaterThanOrEqual(2); // the SYN and the kernel's retransmission
        expect(plain.segments.every((s) => s.src === from && isBareSyn(s) && s.payload.length === 0)).toBe(true);
        expect(await closedFrom(from, gw)).toEqual({ https: 'timeout', service: 'timeout' });
        expect(metric('handshake-none')).toBeGreaterThanOrEqual(ignoredBefore + 3);
      },
    );

    it(`${tag}: curl --tcp-fastopen (client sysctl ${CURL_FASTOPEN}) knocks inside the SYN: the step-2 window opens, not the service; step 2 opens it`, async () => {
      setClientFastOpen(CURL_FASTOPEN);
      const from = pool.take(family);
      expect(await closedFrom(from, gw)).toEqual({ https: 'timeout', service: 'timeout' });
      const pcap = join(sandbox.dir, `tfo-curl-${tag}.pcap`);
      const { result: code, segments } = await captureOnGateway(sandbox.gw, pcap, from, () =>
        curlCode(['--tcp-fastopen', '--interface', from, '-d', `app=tcpsvc&access_key=${HTTP_KEY}`, url(gw, 'http', STEP1_PATH)], STEP1_SECONDS),
      );
      expect(code).toBe(28); // timed out by design
      const [first, ...rest] = segments;
      // The whole request rides in the first SYN; the kernel's retransmissions are bare SYNs; the gateway sends nothing.
      expect(first).toMatchObject({ src: from, dport: PORTS.step1 });
      expect(isBareSyn(first!)).toBe(true);
      const request = first!.payload.toString('latin1');
      expect(request).toMatch(new RegExp(`^POST ${STEP1_PATH} HTTP/1\\.1\\r\\n`));
      expect(request.endsWith(`\r\n\r\napp=tcpsvc&access_key=${HTTP_KEY}`)).toBe(true);
      expect(rest.length).toBeGreaterThanOrEqual(1);
      expect(rest.every((s) => s.src === from && isBareSyn(s) && s.payload.length === 0)).toBe(true);

      // Spoofable, so it opened the step-2 window and nothing else.
      const [sessions, https, service] = await Promise.all([
        execIn(sandbox.gw, process.execPath, [CLI, 'sessions', '--json', '--socket', join(sandbox.dir, 'control.sock')]),
        tcpProbe(sandbox.client, from, gw, PORTS.https, OPEN_MS),
        tcpProbe(sandbox.client, from, gw, PORTS.service, CLOSED_MS),
      ]);
      expect((JSON.parse(sessions.out) as Array<{ ip: string; step: string }>).filter((s) => s.ip === from).map((s) => s.step)).toEqual(['step2']);
      expect([https.kind, service.kind]).toEqual(['open', 'timeout']);

      const step2 = await curlFrom(
        sandbox.client,
        from,
        ['--cacert', sandbox.cert, '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, url(gw, 'https', STEP2_PATH)],
        STEP2_SECONDS,
      );
      expect(step2).toEqual({ status: '200', body: 'OK\n' });
      expect(await tcpProbe(sandbox.client, from, gw, PORTS.service, OPEN_MS)).toEqual({ kind: 'open', banner: 'hello' });
    });

    itOnHost(`${tag}: the wrong key in a Fast Open SYN opens nothing`, async () => {
      setClientFastOpen(CURL_FASTOPEN);
      const from = pool.take(family);
      const { result: code, segments } = await captureOnGateway(sandbox.gw, join(sandbox.dir, `tfo-wrong-${tag}.pcap`), from, () =>
        curlCode(['--tcp-fastopen', '--interface', from, '-d', 'app=tcpsvc&access_key=not-the-step1-key-0000', url(gw, 'http', STEP1_PATH)], STEP1_SECONDS),
      );
      expect(code).toBe(28);
      expect(segments[0]!.payload.toString('latin1')).toContain('access_key=not-the-step1-key-0000');
      expect(segments.filter((s) => s.src === gw)).toEqual([]);
      const refused = new RegExp(`"ip":"${from}".*"reason":"bad-key".*step-1 knock refused`);
      expect(await waitFor(() => daemon.output.some((l) => refused.test(l)), scaled(5_000))).toBe(true);
      expect(sessionsFor(from)).toEqual([]);
      expect(await closedFrom(from, gw)).toEqual({ https: 'timeout', service: 'timeout' });
      // The right step-2 key cannot get through either: the HTTPS port never opened.
      const step2 = await curlFrom(
        sandbox.client,
        from,
        ['--cacert', sandbox.cert, '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, url(gw, 'https', STEP2_PATH)],
        scaled(1),
      );
      expect(step2.status).toBe('000');
    });

    itOnHost(`${tag}: knock-port knock --tcp-fastopen with the client's default sysctl (1): exit 0, the service opens`, async () => {
      setClientFastOpen(1);
      const { result: run, segments } = await captureOnGateway(sandbox.gw, join(sandbox.dir, `tfo-knock-${tag}.pcap`), gw, async () =>
        knock([
          '--tcp-fastopen',
          '--url',
          url(gw, 'http', STEP1_PATH),
          '--url',
          url(gw, 'https', STEP2_PATH),
          '--app',
          'tcpsvc',
          '--key-file',
          keyFile,
          '--ca',
          sandbox.cert,
          '--service-port',
          String(PORTS.service),
          '--wait',
          String(scaled(10)),
        ]),
      );
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain('knock sent inside the SYN (TCP Fast Open)');
      expect(run.stderr).toContain(`service port ${PORTS.service} is open`);
      const knockSyn = segments.find((s) => s.dport === PORTS.step1 && isBareSyn(s) && s.payload.length > 0);
      expect(knockSyn?.payload.toString('latin1')).toMatch(
        new RegExp(`^POST ${STEP1_PATH} HTTP/1\\.1\\r\\n[\\s\\S]*\\r\\n\\r\\napp=tcpsvc&access_key=${HTTP_KEY}$`),
      );
      expect(segments.filter((s) => s.sport === PORTS.step1)).toEqual([]);
      expect(
        sessionsFor(knockSyn!.src)
          .map((s) => s.step)
          .sort(),
      ).toEqual(['service', 'step2']);
      expect(await tcpProbe(sandbox.client, knockSyn!.src, gw, PORTS.service, OPEN_MS)).toEqual({ kind: 'open', banner: 'hello' });
    });
  }

  itOnHost('knock-port knock says what to do when it cannot knock: no --tcp-fastopen, or client Fast Open disabled', () => {
    const target = [
      '--url',
      url(ADDR.gwWan4, 'http', STEP1_PATH),
      '--url',
      url(ADDR.gwWan4, 'https', STEP2_PATH),
      '--app',
      'tcpsvc',
      '--key-file',
      keyFile,
      '--ca',
      sandbox.cert,
    ];
    const plain = knock([...target, '--connect-timeout', String(scaled(1))]);
    expect(plain.code).toBe(3);
    expect(plain.stderr).toContain('if the gateway runs step1_handshake: none, add --tcp-fastopen');
    try {
      setClientFastOpen(0);
      const disabled = knock(['--tcp-fastopen', ...target]);
      expect(disabled.code).toBe(1);
      expect(disabled.stderr).toContain('sudo sysctl -w net.ipv4.tcp_fastopen=1');
    } finally {
      setClientFastOpen(1);
    }
  });
});
