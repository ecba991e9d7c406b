/**
 * The step-1 XDP front with the real daemon (nftables + NFLOG) on the sandbox's veth pair, in
 * native mode (the client's side running an XDP program of its own, without which a veth drops
 * what native XDP_TX sends it) and with
 * `auto`, which takes generic mode on a veth. What an operator checks: `health` says where it
 * runs; curl knocks open HTTPS, IPv4 and IPv6, while the daemon sees no SYN at all (XDP answered
 * them with the daemon's cookie, which the daemon then accepts); junk and spoofed data segments
 * end in XDP's counters, exactly, and never reach the kernel's prefilter or the daemon; other
 * traffic to the gateway passes; after kill -9 the program is gone and step 1, step 2 and the
 * service stay dropped, IPv4 and IPv6, for addresses without a grant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { knockStep1 } from '../../helpers/knock.js';
import { metricByLabel } from '../../helpers/metrics-scrape.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { prefilterDrops } from '../../helpers/prefilter.js';
import { injectSegments } from '../../helpers/raw-inject.js';
import { runUntilReady, startServices, tcpProbe } from '../../helpers/scenario.js';
import { ADDR, CLI, IF, REPO_ROOT, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { rowsForThisRun, scaled } from '../../helpers/vm.js';
import { bracket, execIn, tcpConnects } from '../attacks/probes.js';

const FILE = 'test/kernel/step1/xdp.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'python3']));

const STEP1_PATH = '/knock-xdp-5e0c2a';
const STEP2_PATH = '/step2-xdp-a41f77';
const KEYS = { http: 'xdp-http-key-77c1d0', https: 'xdp-https-key-0b5e92' };
const METRICS_PORT = 9465;
/** A client address that never knocks. */
const UNGRANTED6 = '2001:db8:1::3';
const FAMILIES = [
  [ADDR.client4, ADDR.gwWan4],
  [ADDR.client6, ADDR.gwWan6],
] as const;

const JUNK = [
  `POST ${STEP1_PATH}x HTTP/1.1\r\n\r\n`,
  `GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH}`,
  '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03',
].map((text) => Buffer.from(text, 'latin1'));
/** The knock's request line without a handshake: passes the prefix, fails the cookie. */
const SPOOFED = [Buffer.from(`POST ${STEP1_PATH} HTTP/1.1\r\nContent-Length: 3\r\n\r\na=b`, 'latin1')];

/** Node code holding a native XDP program that passes everything (knock-port's, unconfigured) on `ifname`. */
const passingPeer = (ifname: string): string =>
  `const addon = require(${JSON.stringify(`${REPO_ROOT}/build/Release/knockport_native.node`)});` +
  `new addon.Xdp().attach(Number(require('fs').readFileSync('/sys/class/net/${ifname}/ifindex', 'utf8')), 'native');` +
  `console.log('ready'); setInterval(() => {}, 1 << 30);`;

const ROWS = rowsForThisRun([
  { name: 'native (peer with an XDP program)', label: 'xdn', setting: 'native', expected: 'native', vm: true },
  { name: 'auto (generic on a veth)', label: 'xda', setting: 'auto', expected: 'generic', vm: false },
]);

interface XdpHealthJson {
  xdp?: { attached: { interface: string; mode: string }[]; counters: Record<string, number> };
}

describe.skipIf(skip).each(ROWS)('step-1 XDP front: $name', (row) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;
  let controlSocket: string;

  const series = (name: string, label: string) => metricByLabel(sandbox.gw, METRICS_PORT, name, label);
  const daemonOutcomes = () => series('knockport_step1_packets_total', 'outcome');
  const xdpCounts = () => series('knockport_step1_xdp_packets_total', 'outcome');
  const health = async (): Promise<XdpHealthJson> =>
    JSON.parse((await execIn(sandbox.gw, 'node', [CLI, 'health', '--json', '--socket', controlSocket])).out) as XdpHealthJson;

  beforeAll(async () => {
    sandbox = createSandbox(row.label);
    if (row.setting === 'native') await runUntilReady(sandbox.client, passingPeer(IF.clientWan), 'the peer XDP program');
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    controlSocket = `${sandbox.dir}/control.sock`;
    const config = `${globalSection(sandbox, {
      step1_xdp: row.setting,
      http_post_path: STEP1_PATH,
      https_post_path: STEP2_PATH,
      firewall_type: 'nftables',
      capture: 'nflog',
      step1_workers: 1,
      metrics_listen: `127.0.0.1:${METRICS_PORT}`,
    })}svc:
  port: 8080
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  duration: 30
  step2_https_duration: 20
`;
    daemon = startDaemon(sandbox, ['-c', writeFile(sandbox, 'config.yaml', config), '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it(`runs in ${row.expected} mode on ${IF.gwWan}, as health says`, async () => {
    expect((await health()).xdp?.attached).toEqual([{ interface: IF.gwWan, mode: row.expected }]);
    expect(sandbox.gw.ip('-d', 'link', 'show', 'dev', IF.gwWan)).toMatch(row.expected === 'native' ? / xdp qdisc / : / xdpgeneric qdisc /);
  });

  it('curl knocks open HTTPS, IPv4 and IPv6; XDP answered their SYNs, the daemon saw none', async () => {
    const before = { daemon: await daemonOutcomes(), xdp: await xdpCounts() };
    expect(await Promise.all(FAMILIES.map(([from, gw]) => tcpConnects(sandbox.client, from, gw, 443, scaled(800))))).toEqual([false, false]);
    const body = `app=svc&access_key=${KEYS.http}`;
    const knockThenConnect = async ([from, gw]: (typeof FAMILIES)[number]) => ({
      knocked: await knockStep1({ client: sandbox.client, daemon: daemon!, url: `http://${bracket(gw)}${STEP1_PATH}`, body, from, timeoutSeconds: scaled(2) }),
      // Traffic that is not step 1 passes the program untouched.
      opened: await waitFor(async () => tcpConnects(sandbox.client, from, gw, 443, scaled(800)), scaled(4000), 200),
    });
    expect(await Promise.all(FAMILIES.map(knockThenConnect))).toEqual(FAMILIES.map(() => ({ knocked: true, opened: true })));
    const after = { daemon: await daemonOutcomes(), xdp: await xdpCounts() };
    expect((after.xdp.syn_answered ?? 0) - (before.xdp.syn_answered ?? 0)).toBeGreaterThanOrEqual(2);
    expect((after.xdp.passed_knock ?? 0) - (before.xdp.passed_knock ?? 0)).toBeGreaterThanOrEqual(2);
    expect(after.daemon.syn ?? 0).toBe(before.daemon.syn ?? 0);
    expect((after.daemon.granted ?? 0) - (before.daemon.granted ?? 0)).toBe(2);
  });

  it('junk and spoofed knocks are dropped by XDP, counted exactly; neither the prefilter nor the daemon sees them', async () => {
    const before = { daemon: await daemonOutcomes(), xdp: await xdpCounts(), prefilter: prefilterDrops(sandbox.gw, 'nft') };
    let junk = 0;
    let spoofed = 0;
    for (const [src, dst] of FAMILIES) {
      const spec = { iface: IF.clientWan, src, dst, dport: 80 };
      junk += injectSegments(sandbox.client, { ...spec, segments: JUNK }).sent;
      const real = injectSegments(sandbox.client, { ...spec, handshake: true, segments: JUNK });
      expect(real.synAck).toBe(true);
      junk += real.sent;
      spoofed += injectSegments(sandbox.client, { ...spec, segments: SPOOFED }).sent;
    }
    expect([junk, spoofed]).toEqual([4 * JUNK.length, 2 * SPOOFED.length]);
    const dropped = async () => {
      const now = await xdpCounts();
      return [(now.bad_prefix ?? 0) - (before.xdp.bad_prefix ?? 0), (now.bad_cookie ?? 0) - (before.xdp.bad_cookie ?? 0)];
    };
    expect(await waitFor(async () => (await dropped()).join() === [junk, spoofed].join(), scaled(3000), 100)).toBe(true);
    expect(await dropped()).toEqual([junk, spoofed]);
    expect(prefilterDrops(sandbox.gw, 'nft')).toBe(before.prefilter);
    // The earlier knocks' sockets still retransmit their data (the daemon never acknowledges it): those count apart.
    const after = await daemonOutcomes();
    for (const outcome of ['syn', 'ignored', 'spoofed', 'rejected', 'granted']) expect(after[outcome] ?? 0, outcome).toBe(before.daemon[outcome] ?? 0);
  });

  it('kill -9 takes the program with it: nothing answers step 1, step 2 and the service stay dropped, IPv4 and IPv6', async () => {
    await daemon!.stop('SIGKILL');
    daemon = undefined;
    expect(await waitFor(() => !/prog\/xdp/.test(sandbox.gw.ip('-d', 'link', 'show', 'dev', IF.gwWan)), scaled(3000), 100)).toBe(true);
    // Addresses that never knocked: dropped (no answer at all), not refused and not open.
    sandbox.client.ip('addr', 'add', `${UNGRANTED6}/64`, 'dev', IF.clientWan, 'nodad');
    const probes = [
      [ADDR.client4b, ADDR.gwWan4],
      [UNGRANTED6, ADDR.gwWan6],
    ].flatMap(([from, gw]) =>
      [80, 443, 8080].map(async (port) => [`${from} to ${bracket(gw!)}:${port}`, (await tcpProbe(sandbox.client, from!, gw!, port, scaled(800))).kind]),
    );
    const outcomes = await Promise.all(probes);
    expect(outcomes).toEqual(outcomes.map(([what]) => [what, 'timeout']));
  });
});
