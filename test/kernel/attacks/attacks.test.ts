/**
 * The attack matrix on the real kernel: the real daemon in a gateway namespace, attackers in
 * a client namespace (curl, nmap and hand-crafted packets), on the nftables backend
 * with NFLOG capture and on the iptables-nft backend with NFQUEUE, IPv4 and IPv6.
 * Each attack asserts what the attacker sees (every port still closed from its address) and
 * the reason the daemon counted, or, for data that does not begin with `POST <path> HTTP/1.`
 * (a GET, junk), that the kernel's step-1 prefilter counted it and the daemon counted nothing;
 * after each one the daemon is healthy, and at the end a valid knock still opens the service.
 * The floods against the same gateway are in floods.test.ts (they run alone).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { totpAt } from '../../../src/auth/totp.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { prefilterDrops } from '../../helpers/prefilter.js';
import { captureWhile, injectSegments, replayCapturedSegment, type InjectSpec } from '../../helpers/raw-inject.js';
import { ADDR, CLI, IF, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { knockStep1, step2WindowLogged } from '../../helpers/knock.js';
import {
  ALICE,
  BACKENDS,
  FAMILIES,
  OLGA,
  OLGA_OTP_SECRET,
  PORTS,
  STEP1_PATH,
  STEP2_PATH,
  aliceBody,
  attackerPool,
  knockRequest,
  metricValue,
  scrapeMetrics as scrapeMetricsOf,
  startGateway,
} from './gateway.js';
import { ALL_CLOSED, bracket, curlFrom, execIn, exposure, tcpConnects } from './probes.js';

const skip = announceSkip('attacks/attacks', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'python3', 'tcpdump']));
/** Only the port scan needs nmap: without it that one test skips (and fails in CI), the rest run. */
const noNmap = skip ? undefined : announceSkip('attacks/attacks [port scan]', kernelSkipReason(['nmap']));

/** A request the client refuses to build (over one packet): written out by hand, as an attacker would. */
const oversizedRequest = (gw: string, body: string): Buffer =>
  Buffer.from(
    `POST ${STEP1_PATH} HTTP/1.1\r\nHost: ${bracket(gw)}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    'latin1',
  );

describe.skipIf(skip).each(BACKENDS)('attacks: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  const socket = () => join(sandbox.dir, 'control.sock');
  /** A client address no attack has used yet. */
  const fresh = attackerPool();

  const closedFrom = (from: string, gw: string) => exposure(sandbox.client, from, gw, PORTS);
  const step1 = (from: string, gw: string, body: string, extra: string[] = []) =>
    curlFrom(sandbox.client, from, [...extra, '-d', body, `http://${bracket(gw)}${STEP1_PATH}`], 1);
  /** A valid knock: done once the daemon opened the step-2 window (curl itself never hears back). */
  const knock = (from: string, gw: string, body: string, timeoutSeconds = 1) =>
    knockStep1({ client: sandbox.client, daemon, from, url: `http://${bracket(gw)}${STEP1_PATH}`, body, timeoutSeconds });
  const step2 = (from: string, gw: string, body: string, extra: string[] = []) =>
    curlFrom(sandbox.client, from, ['-k', ...extra, '--data-binary', body, `https://${bracket(gw)}${STEP2_PATH}`], 3);
  /** Step-1 data segments the kernel's prefilter dropped so far (the operator's `nft list chain` / `iptables -L -v` counter). */
  const kernelDrops = () => prefilterDrops(sandbox.gw, backend.tool);
  const grantedStep2 = (ip: string) => step2WindowLogged(daemon, ip);
  /**
   * The daemon's step-1 refusals by reason, from its metrics endpoint. Attacks run one at a
   * time against one daemon, so what a test sees counted since its baseline is its own doing.
   */
  const refusalCounts = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const m of (await scrapeMetrics()).matchAll(/^knockport_step1_packets_total\{outcome="[a-z]+",reason="([^"]+)"\} (\d+)$/gm))
      counts.set(m[1]!, Number(m[2]));
    return counts;
  };
  let baseline = new Map<string, number>();
  const rebaseline = async () => {
    baseline = await refusalCounts();
  };
  /** True once the daemon has refused a step-1 packet for one of `reasons` since the baseline. */
  const refusedFor = (...reasons: string[]) =>
    waitFor(
      async () => {
        const now = await refusalCounts();
        return reasons.some((r) => (now.get(r) ?? 0) > (baseline.get(r) ?? 0));
      },
      3_000,
      100,
    );

  /**
   * A request in unusual packaging (IP fragments, IPv6 extension headers) is judged whole:
   * the kernel reassembles fragments (and steps over extension headers) before the firewall
   * hands the packet over, so the packaging skips no check. Spoofed: refused on its cookie;
   * wrong key: refused on its key; a valid knock in the same packaging opens HTTPS as usual.
   */
  const expectInspectedWhole = async (gw: string, family: 'IPv4' | 'IPv6', packaging: Pick<InjectSpec, 'fragment' | 'extension'>) => {
    const [spoofer, guesser, holder] = [fresh(family), fresh(family), fresh(family)];
    const send = (src: string, handshake: boolean, body: string) =>
      injectSegments(sandbox.client, { iface: IF.clientWan, src, dst: gw, dport: PORTS.step1, handshake, segments: [knockRequest(gw, body)], ...packaging });
    const datagrams = packaging.fragment ? 3 : 1;
    expect(send(spoofer, false, aliceBody).sent).toBeGreaterThanOrEqual(datagrams);
    expect(send(guesser, true, 'app=tcpsvc&access_key=wrong-key-0123456789')).toMatchObject({ synAck: true });
    expect(send(holder, true, aliceBody)).toMatchObject({ synAck: true });
    expect(await refusedFor('bad-cookie')).toBe(true);
    expect(await refusedFor('bad-credentials')).toBe(true);
    expect(await waitFor(() => grantedStep2(holder), 3_000)).toBe(true);
    const [spoofed, guessed, held] = await Promise.all([closedFrom(spoofer, gw), closedFrom(guesser, gw), closedFrom(holder, gw)]);
    expect(spoofed).toEqual(ALL_CLOSED);
    expect(guessed).toEqual(ALL_CLOSED);
    expect(held).toEqual({ https: true, tcpService: false, udpService: false });
  };

  beforeAll(async () => {
    ({ sandbox, daemon } = await startGateway(backend));
  });

  beforeEach(rebaseline);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && process.env.KP_DEBUG) {
      console.log(daemon.output.slice(-30).join('\n'), sandbox.gw.tryExec('cat', ['/proc/net/netlink']).out);
    }
    const health = await execIn(sandbox.gw, process.execPath, [CLI, 'health', '--socket', socket()]);
    expect(health.code, `knock-port health after "${ctx.task.name}": ${health.out}${health.err}`).toBe(0);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it.skipIf(noNmap)('a port scan before any knock sees HTTPS and the service ports filtered', async () => {
    for (const f of FAMILIES) {
      const from = fresh(f.family);
      const args = [
        '-n',
        '-Pn',
        '-sS',
        '-sU',
        '--max-retries',
        '1',
        '--host-timeout',
        '20s',
        '-S',
        from,
        '-e',
        IF.clientWan,
        '-oG',
        '-',
        '-p',
        `T:${PORTS.https},${PORTS.tcp},U:${PORTS.udp}`,
        f.gw,
      ];
      const scan = await execIn(sandbox.client, 'nmap', f.family === 'IPv6' ? ['-6', ...args] : args, 30_000);
      expect(scan.code, scan.err).toBe(0);
      expect(scan.out).toContain(`${PORTS.https}/filtered/tcp`);
      expect(scan.out).toContain(`${PORTS.tcp}/filtered/tcp`);
      expect(scan.out).toMatch(new RegExp(`${PORTS.udp}/(open\\|)?filtered/udp`));
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    }
  });

  for (const f of FAMILIES) {
    it(`${f.family}: a spoofed data segment with a valid key, from an address that never did the handshake`, async () => {
      const from = fresh(f.family);
      const sent = injectSegments(sandbox.client, { iface: IF.clientWan, src: from, dst: f.gw, dport: PORTS.step1, segments: [knockRequest(f.gw, aliceBody)] });
      expect(sent.sent).toBe(1);
      expect(await refusedFor('bad-cookie')).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: a captured valid knock replayed from a second address`, async () => {
      const victim = fresh(f.family);
      const attacker = fresh(f.family);
      const pcap = join(sandbox.dir, `knock-${f.family}.pcap`);
      await captureWhile(sandbox.client, { iface: IF.clientWan, src: victim, dport: PORTS.step1, pcap }, () => knock(victim, f.gw, aliceBody));
      // The captured knock was valid: it opened HTTPS for its sender.
      expect(grantedStep2(victim)).toBe(true);
      expect(readFileSync(pcap).length).toBeGreaterThan(24);
      replayCapturedSegment(sandbox.client, { iface: IF.clientWan, pcap, src: attacker, dport: PORTS.step1 });
      expect(await refusedFor('bad-cookie')).toBe(true);
      expect(await closedFrom(attacker, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: with a step-1 otp, the same knock replayed from the same address after use`, async () => {
      const from = fresh(f.family);
      // One daemon serves both families, and a code is good once: the IPv6 knock uses the next
      // time step's code (accepted, ±1 step), which the IPv4 knock cannot have used.
      const stepOffset = f.family === 'IPv6' ? 30 : 0;
      const knock = knockRequest(f.gw, `app=tcpsvc&access_key=${OLGA.http}&otp=${totpAt(OLGA_OTP_SECRET, Date.now() / 1000 + stepOffset)}`);
      const first = injectSegments(sandbox.client, { iface: IF.clientWan, src: from, dst: f.gw, dport: PORTS.step1, handshake: true, segments: [knock] });
      expect(first.synAck).toBe(true);
      expect(await waitFor(() => grantedStep2(from), 3_000)).toBe(true);
      await execIn(sandbox.gw, process.execPath, [CLI, 'revoke', from, '--socket', socket()]);
      expect((await closedFrom(from, f.gw)).https).toBe(false);

      // The sniffed request, sent again from the same address in a new, valid handshake.
      const replay = injectSegments(sandbox.client, { iface: IF.clientWan, src: from, dst: f.gw, dport: PORTS.step1, handshake: true, segments: [knock] });
      expect(replay.synAck).toBe(true);
      // Refused on its used otp, counted like every credential failure.
      expect(await refusedFor('bad-credentials')).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: the request split over two segments`, async () => {
      const from = fresh(f.family);
      const request = knockRequest(f.gw, aliceBody);
      const cut = request.indexOf('\r\n\r\n');
      const sent = injectSegments(sandbox.client, {
        iface: IF.clientWan,
        src: from,
        dst: f.gw,
        dport: PORTS.step1,
        handshake: true,
        segments: [request.subarray(0, cut), request.subarray(cut)],
      });
      expect(sent).toMatchObject({ synAck: true, sent: 2 });
      expect(await refusedFor('incomplete')).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: a GET carrying "POST <path> " in a header is dropped in the kernel and never reaches the daemon`, async () => {
      const from = fresh(f.family);
      const dropsBefore = kernelDrops();
      expect((await step1(from, f.gw, aliceBody, ['-X', 'GET', '-H', `X-Note: POST ${STEP1_PATH} HTTP/1.1`])).status).toBe('000');
      // The request (and curl's retransmissions of it) ended on the prefilter rule...
      expect(await waitFor(() => kernelDrops() > dropsBefore, 3_000, 100)).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
      // ...so the daemon refused nothing, for any reason (`not-post` is what it would have said).
      expect(await refusalCounts()).toEqual(baseline);
    });

    it(`${f.family}: a body larger than the cap`, async () => {
      const from = fresh(f.family);
      const body = `${aliceBody}&pad=${'x'.repeat(3000)}`;
      expect((await step1(from, f.gw, body, ['-H', 'Expect:'])).status).toBe('000');
      // Refused as the first of several segments, or whole when the client's segmentation offload hands the
      // kernel one large packet (NFLOG copies it as is; NFQUEUE segments it first).
      expect(await refusedFor('incomplete', 'too-large')).toBe(true);
      await rebaseline();
      // The same request as one segment (in IP fragments, reassembled by the kernel): over the cap.
      const whole = injectSegments(sandbox.client, {
        iface: IF.clientWan,
        src: from,
        dst: f.gw,
        dport: PORTS.step1,
        handshake: true,
        segments: [oversizedRequest(f.gw, body)],
        fragment: 1232,
      });
      expect(whole.synAck).toBe(true);
      expect(await refusedFor('too-large')).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: a Content-Length that lies (shorter, then longer than the body)`, async () => {
      const from = fresh(f.family);
      await step1(from, f.gw, aliceBody, ['-H', 'Content-Length: 10']);
      expect(await refusedFor('length-mismatch')).toBe(true);
      await rebaseline();
      await step1(from, f.gw, aliceBody, ['-H', `Content-Length: ${aliceBody.length + 20}`]);
      expect(await refusedFor('incomplete')).toBe(true);
      expect(await closedFrom(from, f.gw)).toEqual(ALL_CLOSED);
    });

    it(`${f.family}: IP fragments carrying the request`, async () => {
      await expectInspectedWhole(f.gw, f.family, { fragment: 64 });
    });
  }

  for (const extension of ['hop-by-hop', 'destination', 'atomic-fragment'] as const) {
    it(`IPv6: a ${extension} extension header in front of the request`, async () => {
      await expectInspectedWhole(ADDR.gwWan6, 'IPv6', { extension });
    });
  }

  it('slowloris, silent connections and oversized headers on HTTPS after a valid step 1 hold up no one', async () => {
    const { client } = sandbox;
    const attackers = FAMILIES.map((f) => ({ f, from: fresh(f.family) }));
    for (const { f, from } of attackers) await knock(from, f.gw, aliceBody);
    const slow = attackers.map(({ f, from }) => execIn(client, process.execPath, ['-e', slowlorisScript(f.gw, from)], 20_000));
    await sleep(1_500);
    // Other clients, both families, complete both steps while the slow connections are held open.
    for (const f of FAMILIES) {
      const other = fresh(f.family);
      await knock(other, f.gw, aliceBody);
      expect((await step2(other, f.gw, `app=tcpsvc&access_key=${ALICE.https}`)).status).toBe('200');
      expect(await tcpConnects(client, other, f.gw, PORTS.tcp)).toBe(true);
    }
    for (const [i, result] of (await Promise.all(slow)).entries()) {
      const report = JSON.parse(result.out) as { connections: number; established: number; closedByServer: number; lastClosedMs: number };
      console.log(`[attacks] ${backend.name} ${attackers[i]!.f.family} slowloris: ${result.out.trim()}`);
      expect(report.established).toBeGreaterThan(0);
      expect(report.closedByServer, 'the server cut every slow or silent connection').toBe(report.connections);
    }
    for (const { f, from } of attackers) {
      const bigHeader = await step2(from, f.gw, `app=tcpsvc&access_key=${ALICE.https}`, ['-H', `X-Big: ${'h'.repeat(16_384)}`]);
      expect(bigHeader.status).toBe('431');
      const bigBody = await step2(from, f.gw, `app=tcpsvc&access_key=${ALICE.https}&pad=${'b'.repeat(4_096)}`);
      expect(bigBody.status).toBe('413');
      expect(await closedFrom(from, f.gw)).toEqual({ https: true, tcpService: false, udpService: false });
    }
  });

  it('after the attacks above a valid knock still opens the service, and the refusals were counted', async () => {
    for (const f of FAMILIES) {
      const from = fresh(f.family);
      await knock(from, f.gw, aliceBody);
      expect((await step2(from, f.gw, `app=tcpsvc&access_key=${ALICE.https}`)).status).toBe('200');
      expect((await closedFrom(from, f.gw)).tcpService).toBe(true);
    }
    const metrics = await scrapeMetrics();
    for (const [outcome, reason] of [
      ['spoofed', 'bad-cookie'],
      ['rejected', 'bad-credentials'],
      ['rejected', 'incomplete'],
      ['rejected', 'length-mismatch'],
      ['rejected', 'too-large'],
    ]) {
      expect(metricValue(metrics, `knockport_step1_packets_total{outcome="${outcome}",reason="${reason}"}`), reason).toBeGreaterThan(0);
    }
    // The GETs never reached the daemon: the kernel's prefilter counted them (and the split request's second half) instead.
    expect(metricValue(metrics, 'knockport_step1_packets_total{outcome="rejected",reason="not-post"}')).toBe(0);
    expect(kernelDrops()).toBeGreaterThan(0);
  });

  const scrapeMetrics = () => scrapeMetricsOf(sandbox);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Holds HTTPS connections from one address: TLS ones that send headers one line a second
 * and never finish, and plain TCP ones that stay silent. Prints how many the server closed.
 */
function slowlorisScript(gw: string, from: string): string {
  return `
    const net = require('node:net'), tls = require('node:tls');
    const started = Date.now();
    const report = { connections: 0, established: 0, closedByServer: 0, lastClosedMs: 0 };
    const finish = () => { console.log(JSON.stringify(report)); process.exit(0); };
    const closed = () => {
      report.closedByServer++;
      report.lastClosedMs = Date.now() - started;
      if (report.closedByServer === report.connections) finish();
    };
    const target = { host: ${JSON.stringify(gw)}, port: ${PORTS.https}, localAddress: ${JSON.stringify(from)} };
    for (let i = 0; i < 6; i++) {
      report.connections++;
      const s = tls.connect({ ...target, rejectUnauthorized: false });
      let drip;
      s.on('secureConnect', () => {
        report.established++;
        s.write('POST ${STEP2_PATH} HTTP/1.1\\r\\nHost: gw\\r\\n');
        drip = setInterval(() => s.write('X-Slow: 1\\r\\n'), 1000);
      });
      s.on('error', () => {});
      s.on('close', () => { clearInterval(drip); closed(); });
    }
    for (let i = 0; i < 2; i++) {
      report.connections++;
      const s = net.connect(target);
      s.on('connect', () => report.established++);
      s.on('error', () => {});
      s.on('close', closed);
    }
    setTimeout(finish, 12000);`;
}
