/**
 * The scenario matrix (issue 7, scenarios 1-10) on the real kernel: the real daemon in a
 * gateway namespace, real curl / TCP / UDP clients and nping in a client namespace, a LAN
 * host behind the gateway; every backend this kernel can run, IPv4 and IPv6.
 *
 * One daemon per backend. Scenarios run concurrently, each from its own client source
 * addresses, so none shares a grant, a window or a rate limit with another. Rows marked `vm`
 * also run in Debian's stock kernel (`npm run test:vm`), with durations scaled for it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { totpAt } from '../../../src/auth/totp.js';
import { TOTP_PERIOD_SECONDS } from '../../../src/shared/otp-format.js';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, leftToTheVm, requiredInCi, tryRun, waitFor } from '../../helpers/netns.js';
import { prefilterDrops, type PrefilterTool } from '../../helpers/prefilter.js';
import { ADDR, CLI, IF, createSandbox, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { Prober } from '../../helpers/prober.js';
import { bracketed, curlFrom, execIn, SourcePool, startServices, synFlood, type Family } from '../../helpers/scenario.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { TIME_SCALE, autoCapture, itOnHost, nftQueueMissing, rowsForThisRun, scaled, scaledSeconds } from '../../helpers/vm.js';

const FILE = 'scenarios/scenarios';
const skipAll = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'nping']));

const STEP1_PATH = '/knock-sc-5e81c0d7';
const STEP2_PATH = '/step2-sc-9a4f27b3';
const DURATION = scaledSeconds(4);
const WINDOW = scaledSeconds(3);
/** For scenarios that make several step-2 requests in one window, so a busy machine cannot run it out. */
const LONG_WINDOW = scaledSeconds(10);
const RATE_PER_MINUTE = 10;
/** Seconds of scheduling slack on each side of a kernel expiry (ipset timeouts tick in whole seconds). */
const EXPIRY_SLACK = scaled(2);

const KEYS = {
  tcpsvc: { http: 'sc-tcp-http-3b8e1f07', https: 'sc-tcp-https-6c2d9a41' },
  longsvc: { http: 'sc-long-http-8f2a6c51', https: 'sc-long-https-4d9e0b73' },
  udpsvc: { http: 'sc-udp-http-9d4c2e18', https: 'sc-udp-https-1f7b3a62' },
  fwd4: { http: 'sc-fwd4-http-5a0c7e93', https: 'sc-fwd4-https-8e2b4d16' },
  fwd6: { http: 'sc-fwd6-http-2c9f8b04', https: 'sc-fwd6-https-7d1e5a39' },
} as const;
const TOTP_USERS = {
  4: { name: 'alice4', http: 'sc-totp4-http-4e7a1c90', https: 'sc-totp4-https-0b6d3f25', secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' },
  6: { name: 'alice6', http: 'sc-totp6-http-6a3e9d12', https: 'sc-totp6-https-3c8b0e47', secret: 'KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF' },
} as const;
const PORTS = { tcpsvc: 8080, totpsvc: 8081, longsvc: 8082, udpsvc: 5300, fwd4: 3389, fwd6: 3391, lan: 3390, https: 443 } as const;
const BANNER = { gw: 'hello from the gateway', lan: 'hello from the LAN host' };
/** Step 1 never answers: curl gives up after this, long after its POST went out. */
const STEP1_CURL_SECONDS = scaled(1.2);
/** The longest a valid knock may take to open its step-2 window (it ends as soon as it does). */
const KNOCK_SECONDS = scaled(5);
/** How long the daemon may take to log its refusal of a knock. */
const REFUSAL_MS = scaled(5000);
/** A TLS handshake and one request. */
const STEP2_CURL_SECONDS = scaled(4);
/** Step 2 to a port that must stay closed: how long curl waits before it counts as dropped. */
const STEP2_CLOSED_SECONDS = scaled(2);

interface Backend {
  name: string;
  firewall: 'nftables' | 'iptables' | 'vyos';
  capture: 'auto' | 'nfqueue' | 'nflog';
  expectCapture: 'nfqueue' | 'nflog';
  args: string[];
  /** What lists the step-1 prefilter's counters: nft, or the iptables variant in use. */
  tool: PrefilterTool;
  /** Also run in the stock-kernel VM (`npm run test:vm`); the host kernel covers the other rows. */
  vm: boolean;
  /** Why this kernel cannot run the backend, or undefined. */
  unavailable(): string | undefined;
}

/** Why a backend's command is missing; in CI (every package list installed) a missing one fails instead. */
const commandMissing = (cmd: string) => requiredInCi(tryRun('sh', ['-c', `command -v ${cmd}`]).ok ? undefined : `the '${cmd}' command is not installed`);

/** `capture: auto` picks NFQUEUE where the kernel has the nft `queue` expression, NFLOG elsewhere. */
const AUTO = skipAll ? 'nflog' : autoCapture();

const BACKENDS: Backend[] = rowsForThisRun<Backend>([
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', expectCapture: 'nflog', args: [], tool: 'nft', vm: false, unavailable: () => undefined },
  {
    name: 'nftables + NFQUEUE',
    firewall: 'nftables',
    capture: 'nfqueue',
    expectCapture: 'nfqueue',
    args: [],
    tool: 'nft',
    vm: true,
    unavailable: nftQueueMissing,
  },
  {
    name: 'iptables-nft + NFQUEUE',
    firewall: 'iptables',
    capture: 'nfqueue',
    expectCapture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    tool: 'iptables',
    vm: false,
    unavailable: () => commandMissing('iptables-nft'),
  },
  {
    name: 'iptables-legacy + NFQUEUE',
    firewall: 'iptables',
    capture: 'nfqueue',
    expectCapture: 'nfqueue',
    args: ['--iptables-variant', 'legacy'],
    tool: 'iptables-legacy',
    vm: false,
    unavailable: () => commandMissing('iptables-legacy'),
  },
  // `auto`: NFQUEUE in the stock-kernel VM, NFLOG on kernels without nft `queue`.
  {
    name: `VyOS layout + auto (${AUTO.toUpperCase()})`,
    firewall: 'vyos',
    capture: 'auto',
    expectCapture: AUTO,
    args: [],
    tool: 'nft',
    vm: true,
    unavailable: () => undefined,
  },
]);

function configYaml(sandbox: Sandbox, backend: Backend): string {
  const app = (name: keyof typeof KEYS, port: number, protocol: string, destination: string, window = WINDOW) => `${name}:
  port: ${port}
  access_key_http: [${KEYS[name].http}]
  access_key_https: [${KEYS[name].https}]
  destination: ${destination}
  protocol: ${protocol}
  duration: ${DURATION}
  step2_https_duration: ${window}
`;
  const totpUser = (u: (typeof TOTP_USERS)[Family]) => `    - name: ${u.name}
      access_key_http: ${u.http}
      access_key_https: ${u.https}
      totp_secret: ${u.secret}
`;
  return `global:
  http_post_path: ${STEP1_PATH}
  https_post_path: ${STEP2_PATH}
  step1_2_rate_limit_per_minute: ${RATE_PER_MINUTE}
  # Every scenario's sources share the client's /64: budget each address on its own, as separate clients.
  source_prefix_v6: 128
  interface_ext: ${IF.gwWan}
  interface_int: ${IF.gwLan}
  https_port: ${PORTS.https}
  firewall_type: ${backend.firewall}
  capture: ${backend.capture}
  state_dir: ${join(sandbox.dir, 'state')}
  control_socket: ${join(sandbox.dir, 'control.sock')}
${app('tcpsvc', PORTS.tcpsvc, 'tcp', 'local')}${app('longsvc', PORTS.longsvc, 'tcp', 'local', LONG_WINDOW)}${app('udpsvc', PORTS.udpsvc, 'udp', 'local')}${app('fwd4', PORTS.fwd4, 'tcp', `'${ADDR.lan4}:${PORTS.lan}'`)}${app('fwd6', PORTS.fwd6, 'tcp', `'[${ADDR.lan6}]:${PORTS.lan}'`)}totpsvc:
  port: ${PORTS.totpsvc}
  protocol: tcp
  duration: ${DURATION}
  step2_https_duration: ${LONG_WINDOW}
  users:
${totpUser(TOTP_USERS[4])}${totpUser(TOTP_USERS[6])}`;
}

/** A TOTP code valid at none of the steps the daemon accepts now (previous, current, next). */
function wrongTotp(secret: string, nowSeconds: number): string {
  const valid = new Set([-1, 0, 1].map((d) => totpAt(secret, nowSeconds + d * TOTP_PERIOD_SECONDS)));
  for (let n = 0; ; n++) {
    const candidate = String((Number(totpAt(secret, nowSeconds)) + 500_000 + n) % 1_000_000).padStart(6, '0');
    if (!valid.has(candidate)) return candidate;
  }
}

for (const backend of BACKENDS) {
  // A row this kernel cannot run (nft `queue`) is not registered here: the VM tier runs it.
  if (!skipAll && leftToTheVm('test/kernel/scenarios/scenarios.test.ts', backend.name, backend.unavailable())) continue;

  describe.skipIf(skipAll)(`scenarios: ${backend.name}`, () => {
    let sandbox: Sandbox;
    let daemon: Daemon;
    let prober: Prober;
    const sources = new SourcePool(40);

    beforeAll(async () => {
      sandbox = createSandbox(`s${backend.firewall.slice(0, 2)}`);
      sources.install(sandbox.client, IF.clientWan);
      await startServices(sandbox.gw, { tcp: { [PORTS.tcpsvc]: BANNER.gw, [PORTS.totpsvc]: BANNER.gw, [PORTS.longsvc]: BANNER.gw }, udp: [PORTS.udpsvc] });
      await startServices(sandbox.lan, { tcp: { [PORTS.lan]: BANNER.lan } });
      prober = await Prober.start(sandbox.client);
      if (backend.firewall === 'vyos') vyosCommit(sandbox.gw);
      const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend));
      daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug', ...backend.args]);
      if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    });

    afterAll(async () => {
      prober?.stop();
      await daemon?.stop('SIGKILL');
      sandbox?.destroy();
    });

    it('captures step 1 the expected way', () => {
      expect(daemon.output.find((l) => l.includes('"capture"'))).toContain(`"capture":"${backend.expectCapture}"`);
    });

    describe.concurrent.each([4, 6] as const)('IPv%i', (family) => {
      const gw = family === 4 ? ADDR.gwWan4 : ADDR.gwWan6;
      const fwdApp = family === 4 ? 'fwd4' : 'fwd6';
      const client = () => sandbox.client;
      /** Step 1 with curl, waiting out its whole timeout: for knocks that must open nothing and for the silence of step 1. */
      const step1 = (from: string, body: string, path = STEP1_PATH, extra: string[] = []) =>
        curlFrom(client(), from, ['-d', body, ...extra, `http://${bracketed(gw)}${path}`], STEP1_CURL_SECONDS);
      /** A knock that must work: true as soon as the daemon opened the step-2 window for `from`. */
      const knock = (from: string, body: string) =>
        knockStep1({ client: client(), daemon, url: `http://${bracketed(gw)}${STEP1_PATH}`, body, from, timeoutSeconds: KNOCK_SECONDS });
      const step2 = (from: string, body: string, seconds = STEP2_CURL_SECONDS) =>
        curlFrom(client(), from, ['-k', '-d', body, `https://${bracketed(gw)}${STEP2_PATH}`], seconds);
      const form = (app: string, key: string, more = '') => `app=${app}&access_key=${key}${more}`;
      const tcp = (from: string, port: number, timeoutMs = 800) => prober.tcp(from, gw, port, scaled(timeoutMs));
      const echoes = (from: string, timeoutMs = 800) => prober.udpEchoes(from, gw, PORTS.udpsvc, scaled(timeoutMs));
      /**
       * Seconds from `since` to the start of the first probe that finds the port closed: the
       * probe's SYN goes out when it starts, so a slow probe (a loaded machine, a timeout)
       * does not add its own duration to the measurement.
       */
      /**
       * When a grant closed, in seconds after `since`, as the interval the probes bound it to: the
       * start of the last probe that found it open and of the first that found it closed. On a
       * loaded machine the loop can stall between two probes, so the interval is what a check may
       * rely on: open no later than it should be (`lastOpen`), closed no sooner (`firstClosed`).
       */
      const closedAfter = async (since: number, isClosed: () => Promise<boolean>, limitSeconds: number) => {
        const deadline = Date.now() + limitSeconds * 1000;
        let lastOpen = 0;
        while (Date.now() < deadline) {
          const probeStart = Date.now();
          if (await isClosed()) return { lastOpen, firstClosed: (probeStart - since) / 1000 };
          lastOpen = (probeStart - since) / 1000;
          await new Promise((r) => setTimeout(r, 200));
        }
        return { lastOpen, firstClosed: Infinity };
      };
      const expectClosedAround = ({ lastOpen, firstClosed }: { lastOpen: number; firstClosed: number }, seconds: number) => {
        expect(firstClosed, 'closed too soon').toBeGreaterThan(seconds - EXPIRY_SLACK);
        expect(firstClosed, 'never closed').toBeLessThan(Infinity);
        expect(lastOpen, 'still open too late').toBeLessThan(seconds + EXPIRY_SLACK);
      };
      /** Step-1 data segments the kernel's prefilter dropped so far (all scenarios together: the rule counts, not per source). */
      const kernelDrops = () => prefilterDrops(sandbox.gw, backend.tool);
      /** True once the prefilter counter has risen by at least `count` since `before`. */
      const kernelDropped = (before: number, count: number) => waitFor(() => kernelDrops() - before >= count, scaled(3000), 100);
      const refusals = (from: string) =>
        daemon.output
          .filter((l) => l.includes('step-1 knock refused') && l.includes(`"ip":"${from}"`))
          .map((l) => (JSON.parse(l) as { reason: string }).reason);
      /** True once the daemon logged `count` refusals of knocks from `from` for `reason`. */
      const refused = (from: string, reason: string, count = 1) => waitFor(() => refusals(from).filter((r) => r === reason).length >= count, REFUSAL_MS, 50);

      it('1. local service: closed, step 1 silent, step 2 opens TCP and UDP, both close after duration', async ({ expect }) => {
        const [from, quiet] = [sources.take(family), sources.take(family)];
        // Step 1 is silent: a valid knock gets no answer at all (curl times out), yet it opened the HTTPS window.
        const silence = (async () => {
          const { status } = await step1(quiet, form('tcpsvc', KEYS.tcpsvc.http));
          return [status, (await tcp(quiet, PORTS.https)).kind];
        })();
        const [closedTcp, closedUdp] = await Promise.all([tcp(from, PORTS.tcpsvc), echoes(from)]);
        expect([closedTcp.kind, closedUdp]).toEqual(['timeout', false]);

        // Each window used as soon as it opened (one knock at a time: a knock ends at its source's next window).
        expect(await knock(from, form('tcpsvc', KEYS.tcpsvc.http))).toBe(true);
        expect(await step2(from, form('tcpsvc', KEYS.tcpsvc.https))).toEqual({ status: '200', body: 'OK\n' });
        const tcpGrantedAt = Date.now();
        expect(await knock(from, form('udpsvc', KEYS.udpsvc.http))).toBe(true);
        expect((await step2(from, form('udpsvc', KEYS.udpsvc.https))).status).toBe('200');
        const udpGrantedAt = Date.now();
        const [service, echo] = await Promise.all([tcp(from, PORTS.tcpsvc), echoes(from)]);
        expect([service, echo]).toEqual([{ kind: 'open', banner: BANNER.gw }, true]);
        expect(await silence).toEqual(['000', 'open']);

        const limit = DURATION + EXPIRY_SLACK + scaled(2);
        const [tcpClosed, udpClosed] = await Promise.all([
          closedAfter(tcpGrantedAt, async () => (await tcp(from, PORTS.tcpsvc, 400)).kind === 'timeout', limit),
          closedAfter(udpGrantedAt, async () => !(await echoes(from, 400)), limit),
        ]);
        for (const closed of [tcpClosed, udpClosed]) expectClosedAround(closed, DURATION);
      });

      itOnHost('2. forwarded service: the app port reaches the LAN host on another port', async ({ expect }) => {
        const from = sources.take(family);
        const app = KEYS[fwdApp];
        expect((await tcp(from, PORTS[fwdApp])).kind).toBe('timeout');
        expect(await knock(from, form(fwdApp, app.http))).toBe(true);
        expect((await step2(from, form(fwdApp, app.https))).status).toBe('200');
        expect(await tcp(from, PORTS[fwdApp], 1500)).toEqual({ kind: 'open', banner: BANNER.lan });
        // The grant is for this app only: the local service stays closed.
        expect((await tcp(from, PORTS.tcpsvc)).kind).toBe('timeout');
      });

      itOnHost('3. service and HTTPS ports are dropped (not refused) by default, TCP and UDP', async ({ expect }) => {
        const from = sources.take(family);
        const [probes, udp] = await Promise.all([
          Promise.all([PORTS.tcpsvc, PORTS.totpsvc, PORTS[fwdApp], PORTS.https].map((port) => tcp(from, port))),
          echoes(from),
        ]);
        expect(probes.map((p) => p.kind)).toEqual(['timeout', 'timeout', 'timeout', 'timeout']);
        expect(udp).toBe(false);
      });

      itOnHost('4. step 1 with a wrong key, a wrong app, an empty body: HTTPS stays closed', async ({ expect }) => {
        const cases = [
          { body: form('tcpsvc', 'sc-not-the-key-0a1b2c3d'), reason: 'bad-key' },
          { body: form('nosuchapp', KEYS.tcpsvc.http), reason: 'unknown-app' },
          { body: form('udpsvc', KEYS.tcpsvc.http), reason: 'bad-key' },
          { body: '', reason: 'bad-body' },
        ].map((c) => ({ ...c, from: sources.take(family) }));
        await Promise.all(
          cases.map(async ({ body, from, reason }) => {
            const silent = step1(from, body);
            // The knock reached the inspector and was refused for the reason it carries; then nothing opened.
            expect(await refused(from, reason), `refusals logged for ${from}: ${refusals(from).join(', ')}`).toBe(true);
            const [https, s2] = await Promise.all([tcp(from, PORTS.https), step2(from, form('tcpsvc', KEYS.tcpsvc.https), STEP2_CLOSED_SECONDS)]);
            expect([https.kind, s2.status]).toEqual(['timeout', '000']);
            expect((await silent).status).toBe('000');
          }),
        );
      });

      itOnHost('5. step 2 with a wrong app or key: 403, the service stays closed', async ({ expect }) => {
        const from = sources.take(family);
        expect(await knock(from, form('longsvc', KEYS.longsvc.http))).toBe(true);
        const wrong = [
          form('nosuchapp', KEYS.longsvc.https),
          form('tcpsvc', KEYS.longsvc.https),
          form('longsvc', 'sc-not-the-key-0a1b2c3d'),
          form('longsvc', KEYS.longsvc.http),
        ];
        // One TLS request at a time: they cost little on the host, and a dozen at once starve an emulated CPU (the VM tier).
        for (const body of wrong) expect(await step2(from, body)).toEqual({ status: '403', body: 'Forbidden\n' });
        const [service, other] = await Promise.all([tcp(from, PORTS.longsvc), tcp(from, PORTS.tcpsvc)]);
        expect([service.kind, other.kind]).toEqual(['timeout', 'timeout']);
        // The window itself still works for the right key (the failures did not use it up).
        expect((await step2(from, form('longsvc', KEYS.longsvc.https))).status).toBe('200');
        expect((await tcp(from, PORTS.longsvc)).kind).toBe('open');
      });

      itOnHost('6. a GET to the step-1 path times out, is dropped in the kernel and leaves HTTPS closed', async ({ expect }) => {
        const from = sources.take(family);
        const dropsBefore = kernelDrops();
        const query = `?${form('tcpsvc', KEYS.tcpsvc.http)}`;
        const gets = Promise.all([
          curlFrom(client(), from, [`http://${bracketed(gw)}${STEP1_PATH}${query}`], STEP1_CURL_SECONDS),
          step1(from, form('tcpsvc', KEYS.tcpsvc.http), STEP1_PATH, ['-X', 'GET']),
        ]);
        // The kernel's prefilter dropped both GETs (the counter rises by at least two: curl retransmits them too),
        // so the daemon refused nothing from this source (it used to log `not-post` twice).
        expect(await kernelDropped(dropsBefore, 2)).toBe(true);
        const [https, s2] = await Promise.all([tcp(from, PORTS.https), step2(from, form('tcpsvc', KEYS.tcpsvc.https), STEP2_CLOSED_SECONDS)]);
        expect([https.kind, s2.status]).toEqual(['timeout', '000']);
        expect((await gets).map((g) => g.status)).toEqual(['000', '000']);
        expect(refusals(from)).toEqual([]);
      });

      itOnHost('7. wrong paths of several lengths and the right path as a prefix: dropped in the kernel, HTTPS stays closed', async ({ expect }) => {
        const from = sources.take(family);
        const paths = [
          '/',
          '/k',
          STEP1_PATH.slice(0, 5),
          STEP1_PATH.slice(0, -1),
          `${STEP1_PATH}2`,
          `${STEP1_PATH}/`,
          STEP1_PATH.toUpperCase(),
          `/${'k'.repeat(300)}`,
        ];
        const dropsBefore = kernelDrops();
        const knocks = Promise.all(paths.map((path) => step1(from, form('tcpsvc', KEYS.tcpsvc.http), path)));
        // Every one of them ended on the kernel's prefilter rule; the daemon refused nothing from this source.
        expect(await kernelDropped(dropsBefore, paths.length)).toBe(true);
        const [https, s2] = await Promise.all([tcp(from, PORTS.https), step2(from, form('tcpsvc', KEYS.tcpsvc.https), STEP2_CLOSED_SECONDS)]);
        expect([https.kind, s2.status]).toEqual(['timeout', '000']);
        expect((await knocks).map((s) => s.status)).toEqual(paths.map(() => '000'));
        expect(refusals(from)).toEqual([]);
      });

      itOnHost('8. the step-2 window expires after step2_https_duration', async ({ expect }) => {
        const from = sources.take(family);
        expect(await knock(from, form('tcpsvc', KEYS.tcpsvc.http))).toBe(true);
        // The window's clock starts at the grant, which the knock just saw.
        const knockedAt = Date.now();
        expect((await tcp(from, PORTS.https)).kind).toBe('open');
        const closed = await closedAfter(knockedAt, async () => (await tcp(from, PORTS.https, 400)).kind === 'timeout', WINDOW + EXPIRY_SLACK + scaled(2));
        expectClosedAround(closed, WINDOW);
        const [s2, service] = await Promise.all([step2(from, form('tcpsvc', KEYS.tcpsvc.https), STEP2_CLOSED_SECONDS), tcp(from, PORTS.tcpsvc)]);
        expect([s2.status, service.kind]).toEqual(['000', 'timeout']);
      });

      itOnHost('9. TOTP: no token 403 (as a wrong key), wrong token 403, right token 200, the same token again 403', async ({ expect }) => {
        const from = sources.take(family);
        const user = TOTP_USERS[family];
        expect(await knock(from, form('totpsvc', user.http))).toBe(true);
        expect(await step2(from, form('totpsvc', user.https))).toEqual({ status: '403', body: 'Forbidden\n' });
        const now = Date.now() / 1000;
        const [wrong, closed] = await Promise.all([
          step2(from, form('totpsvc', user.https, `&token=${wrongTotp(user.secret, now)}`)),
          tcp(from, PORTS.totpsvc, 500),
        ]);
        expect([wrong.status, closed.kind]).toEqual(['403', 'timeout']);
        const token = totpAt(user.secret, now);
        expect((await step2(from, form('totpsvc', user.https, `&token=${token}`))).status).toBe('200');
        expect((await step2(from, form('totpsvc', user.https, `&token=${token}`))).status).toBe('403');
        // The window was still open: only the used-code cache refused the replayed token.
        expect((await tcp(from, PORTS.https)).kind).toBe('open');
        expect(await tcp(from, PORTS.totpsvc)).toEqual({ kind: 'open', banner: BANNER.gw });
      });

      itOnHost(`10a. step-1 rate limit: the ${RATE_PER_MINUTE + 1}th knock in a minute is ignored`, async ({ expect }) => {
        const from = sources.take(family);
        const wrong = Array.from({ length: RATE_PER_MINUTE - 1 }, (_, i) => step1(from, form('tcpsvc', `sc-wrong-key-${i}-5f3e9a`)));
        expect(await refused(from, 'bad-key', RATE_PER_MINUTE - 1)).toBe(true);
        expect(await knock(from, form('longsvc', KEYS.longsvc.http))).toBe(true); // the Nth: still counted and valid
        const over = step1(from, form('udpsvc', KEYS.udpsvc.http)); // the N+1st: over the limit
        expect(await refused(from, 'rate-limited')).toBe(true);
        const [udp, long] = await Promise.all([step2(from, form('udpsvc', KEYS.udpsvc.https)), step2(from, form('longsvc', KEYS.longsvc.https))]);
        expect(udp).toEqual({ status: '403', body: 'Forbidden\n' });
        expect(long.status).toBe('200');
        await Promise.all([...wrong, over]);
        const reasons = refusals(from);
        expect(reasons.filter((r) => r === 'bad-key')).toHaveLength(RATE_PER_MINUTE - 1);
        expect(reasons.filter((r) => r === 'rate-limited')).toHaveLength(1);
      });

      itOnHost(`10b. step-2 rate limit: the ${RATE_PER_MINUTE + 1}th request in a minute gets 429`, async ({ expect }) => {
        const from = sources.take(family);
        expect(await knock(from, form('longsvc', KEYS.longsvc.http))).toBe(true);
        for (let i = 0; i < RATE_PER_MINUTE; i++) expect((await step2(from, form('longsvc', `sc-wrong-key-${i}-5f3e9a`))).status).toBe('403');
        expect(await step2(from, form('longsvc', KEYS.longsvc.https))).toEqual({ status: '429', body: 'Too Many Requests\n' });
        expect((await tcp(from, PORTS.longsvc)).kind).toBe('timeout');
      });

      itOnHost('10c. no kernel budget is keyed on a claimed source: 400 SYNs forged from a client leave its knocks working', async ({ expect }) => {
        const victim = sources.take(family);
        const wire = { ifname: IF.clientWan, peer: sandbox.gw, peerIf: IF.gwWan };
        // Before the cookie nothing proves a source, so every forged SYN is answered like any other
        // (one budget for all sources, far above this), and the victim's own knock still opens its port.
        // Sent over the same scaled time in the VM, whose emulated CPU answers more slowly.
        const forged = await synFlood(client(), wire, victim, gw, 80, 400, Math.round(1000 / TIME_SCALE));
        expect(forged.sent).toBe(400);
        // Three in four at least: a busy or emulated machine loses some in the queue (two VMs sharing two
        // cores answered 353), while a budget per claimed source at the old meter's ~260 a second would
        // answer fewer. The exact check that no budget is keyed on a source is step1-budget-oracle.test.ts.
        expect(forged.answered).toBeGreaterThanOrEqual(300);
        expect(await knock(victim, form('tcpsvc', KEYS.tcpsvc.http))).toBe(true);
        expect((await step2(victim, form('tcpsvc', KEYS.tcpsvc.https))).status).toBe('200');
        expect((await tcp(victim, PORTS.tcpsvc)).kind).toBe('open');
      });
    });

    it('the daemon is still healthy after every scenario', async () => {
      expect(daemon.proc.exitCode).toBeNull();
      const health = await execIn(sandbox.gw, process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')]);
      expect(health.out.trim()).toBe('healthy');
    });
  });
}
