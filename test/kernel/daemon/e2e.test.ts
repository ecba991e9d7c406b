/**
 * The real daemon on this kernel, in namespaces this test creates: real curl as the
 * client, a real TCP and a real UDP service, IPv4 and IPv6, on the nftables backend with
 * NFLOG and with NFQUEUE capture (the latter needs a kernel with the nft `queue` expression:
 * `npm run test:vm` runs it in a stock kernel) and on the iptables backend with NFQUEUE;
 * and which capture `auto` resolves to on this kernel. Rows marked `vm` also run in that VM,
 * with durations scaled for it (test/helpers/vm.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, leftToTheVm, Netns, tcpOpen, waitFor } from '../../helpers/netns.js';
import { Prober } from '../../helpers/prober.js';
import { curlFrom, execIn, startServices } from '../../helpers/scenario.js';
import { ADDR, CLI, IF, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { autoCapture, itOnHost, nftQueueMissing, rowsForThisRun, scaled, scaledSeconds } from '../../helpers/vm.js';

const skip = announceSkip('daemon/e2e', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'ss']));

const STEP1_PATH = '/knock-e2e-7f3a91';
const STEP2_PATH = '/step2-e2e-c4d2b8';
const HTTP_KEY = 'http-key-0123456789a';
const HTTPS_KEY = 'https-key-0123456789b';
/** Long enough for `knock-port sessions` (a Node start: seconds in the VM) to list the grant before it expires. */
const DURATION = scaledSeconds(6);
const WINDOW = scaledSeconds(3);
/**
 * Long enough to outlive, for the kill -9 test, the checks while the daemon is down and a restart
 * under load (10 s ran out on a loaded machine: the grant expired as the restarted daemon listed it).
 */
const LONG_DURATION = scaledSeconds(10) + 10;
/** Client timeouts, in seconds: step 1 never answers; step 2 is a TLS handshake and a request. */
const STEP1_SECONDS = scaled(1);
/** The longest a valid knock may take to open its step-2 window (it ends as soon as it does). */
const KNOCK_SECONDS = scaled(5);
const STEP2_SECONDS = scaled(4);
/** How long a TCP connect or a UDP echo may take before the port counts as closed. */
const CLOSED_MS = scaled(800);
const OPEN_MS = scaled(1000);
/** Client addresses that never knock: every protected port, listener or not, stays closed to them. */
const STRANGERS = { 4: '192.0.2.50', 6: '2001:db8:1::50' } as const;

function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    firewall_type: firewall,
    capture,
    metrics_listen: '127.0.0.1:9464',
  })}tcpsvc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: ${DURATION}
  step2_https_duration: ${WINDOW}
longsvc:
  port: 8081
  access_key_http: [long-http-key-0123456789]
  access_key_https: [long-https-key-0123456789]
  destination: local
  protocol: tcp
  duration: ${LONG_DURATION}
  step2_https_duration: ${WINDOW}
udpsvc:
  port: 5300
  access_key_http: [udp-http-key-0123456789]
  access_key_https: [udp-https-key-0123456789]
  destination: local
  protocol: udp
  duration: ${DURATION}
  step2_https_duration: ${WINDOW}
`;
}

function url(addr: string, scheme: 'http' | 'https', path: string): string {
  const host = addr.includes(':') ? `[${addr}]` : addr;
  return `${scheme}://${host}${path}`;
}

/** A knock that must work, from `from`: true as soon as the daemon opened the step-2 window for it. */
function knock(client: Netns, daemon: Daemon, addr: string, body: string, from: string, timeoutSeconds = KNOCK_SECONDS): Promise<boolean> {
  return knockStep1({ client, daemon, url: url(addr, 'http', STEP1_PATH), body, from, timeoutSeconds });
}

function step2(client: Netns, addr: string, body: string, from?: string, seconds = STEP2_SECONDS): { status: string; body: string } {
  return curl(client, ['-k', '-d', body, ...(from ? ['--interface', from] : []), url(addr, 'https', STEP2_PATH)], seconds);
}

function sessionsJson(sandbox: Sandbox): Array<{ ip: string; app: string; step: string; secondsLeft: number }> {
  const out = sandbox.gw.exec(process.execPath, [CLI, 'sessions', '--json', '--socket', join(sandbox.dir, 'control.sock')]);
  return JSON.parse(out) as Array<{ ip: string; app: string; step: string; secondsLeft: number }>;
}

/** `vm`: also run in the stock-kernel VM (`npm run test:vm`); the host kernel covers the others. */
const BACKENDS = rowsForThisRun([
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] as string[], vm: false, unavailable: () => undefined },
  { name: 'nftables + NFQUEUE', firewall: 'nftables', capture: 'nfqueue', args: [], vm: true, unavailable: () => (skip ? undefined : nftQueueMissing()) },
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'], vm: false, unavailable: () => undefined },
])
  // Rows this kernel cannot run (nft `queue`) are not registered here: the VM tier runs them.
  .filter((backend) => skip || !leftToTheVm('test/kernel/daemon/e2e.test.ts', backend.name, backend.unavailable()))
  .map((backend) => ({ ...backend, skipped: skip }));

describe.each(BACKENDS)('daemon end to end: $name', (backend) => {
  if (backend.skipped) {
    it.skip('not run on this kernel (reason printed above)', () => {});
    return;
  }
  let sandbox: Sandbox;
  let daemon: Daemon;
  let prober: Prober;
  let configPath: string;
  /** Whether knock-port's base ruleset is in the gateway's kernel. */
  const installed = (): boolean =>
    backend.firewall === 'nftables'
      ? sandbox.gw.tryExec('nft', ['list', 'table', 'inet', 'knockport']).ok
      : sandbox.gw.tryExec('iptables-nft', ['-S', 'KNOCKPORT-INPUT']).ok;
  /** From a stranger, all at once: no listening service port (TCP 8080, 8081, UDP 5300) is reachable, IPv4 and IPv6. */
  const expectClosedToStrangers = async () => {
    const probes = ([4, 6] as const).flatMap((family) => {
      const gw = family === 4 ? ADDR.gwWan4 : ADDR.gwWan6;
      return [
        ...[8080, 8081].map(async (port) => [`${gw}:${port}`, (await prober.tcp(STRANGERS[family], gw, port, CLOSED_MS)).kind === 'open'] as const),
        (async () => [`${gw}:5300/udp`, await prober.udpEchoes(STRANGERS[family], gw, 5300, CLOSED_MS)] as const)(),
      ];
    });
    expect((await Promise.all(probes)).filter(([, open]) => open)).toEqual([]);
  };
  const start = () => startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug', ...backend.args]);

  beforeAll(async () => {
    sandbox = createSandbox(backend.capture === 'nfqueue' ? `${backend.firewall.slice(0, 2)}q` : backend.firewall.slice(0, 3));
    sandbox.client.ip('addr', 'add', `${STRANGERS[4]}/24`, 'dev', IF.clientWan);
    // Deprecated at once, so the kernel never picks it as the source of the other tests' connections.
    sandbox.client.ip('addr', 'add', `${STRANGERS[6]}/64`, 'dev', IF.clientWan, 'nodad', 'preferred_lft', '0');
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n', 8081: 'hello\n' }, udp: [5300] });
    prober = await Prober.start(sandbox.client);
    daemon = start();
    const ready = await daemon.waitForLog(/knock-port ready/, scaled(15_000));
    if (!ready) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') {
      console.log(
        sandbox.gw.tryExec('ss', ['-ltnup']).out,
        sandbox.gw.tryExec('nft', ['list', 'ruleset']).out,
        sandbox.gw.tryExec('iptables-save').out,
        daemon.output.slice(-15).join('\n'),
      );
    }
  });

  afterAll(async () => {
    prober?.stop();
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('uses the expected capture', () => {
    expect(daemon.output.some((l) => l.includes(`"capture":"${backend.capture}"`))).toBe(true);
  });

  for (const family of ['IPv4', 'IPv6'] as const) {
    const gwAddr = family === 'IPv4' ? ADDR.gwWan4 : ADDR.gwWan6;
    const clientAddr = family === 'IPv4' ? ADDR.client4 : ADDR.client6;

    itOnHost(`${family}: closed before, step 1 silent, step 2 opens the service, expiry closes it`, async () => {
      const { client, gw } = sandbox;
      // Every request from the client's own address: the strangers' addresses share its interface.
      const opens = async (ms: number) => (await prober.tcp(clientAddr, gwAddr, 8080, ms)).kind === 'open';
      const [tcpBefore, udpBefore, https] = await Promise.all([
        opens(CLOSED_MS),
        prober.udpEchoes(clientAddr, gwAddr, 5300, CLOSED_MS),
        curlFrom(client, clientAddr, ['-k', '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, url(gwAddr, 'https', STEP2_PATH)], STEP1_SECONDS),
      ]);
      expect([tcpBefore, udpBefore, https.status]).toEqual([false, false, '000']);
      expect(gw.exec('ss', ['-Hltn', 'sport = :80']).trim()).toBe('');

      expect(await knock(client, daemon, gwAddr, `app=tcpsvc&access_key=${HTTP_KEY}`, clientAddr)).toBe(true);
      const wrong = step2(client, gwAddr, 'app=tcpsvc&access_key=not-the-right-key-123', clientAddr);
      expect(wrong.status).toBe('403');
      expect(await opens(CLOSED_MS)).toBe(false);

      const ok = step2(client, gwAddr, `app=tcpsvc&access_key=${HTTPS_KEY}`, clientAddr);
      expect(ok).toEqual({ status: '200', body: 'OK\n' });
      const [open, sessions] = await Promise.all([
        opens(OPEN_MS),
        execIn(gw, process.execPath, [CLI, 'sessions', '--json', '--socket', join(sandbox.dir, 'control.sock')]),
      ]);
      expect(open).toBe(true);
      const listed = (JSON.parse(sessions.out) as Array<{ ip: string; app: string; step: string; secondsLeft: number }>).filter(
        (s) => s.ip === clientAddr && s.app === 'tcpsvc' && s.step === 'service',
      );
      expect(listed).toHaveLength(1);
      expect(listed[0]!.secondsLeft).toBeGreaterThan(0);

      // After `duration` the kernel refuses new connections.
      expect(await waitFor(async () => !(await opens(scaled(500))), (DURATION + scaled(3)) * 1000, 250)).toBe(true);
    });

    itOnHost(`${family}: UDP service opens only after both steps`, async () => {
      const { client } = sandbox;
      expect(await knock(client, daemon, gwAddr, 'app=udpsvc&access_key=udp-http-key-0123456789', clientAddr)).toBe(true);
      expect(await prober.udpEchoes(clientAddr, gwAddr, 5300, CLOSED_MS)).toBe(false);
      expect(step2(client, gwAddr, 'app=udpsvc&access_key=udp-https-key-0123456789', clientAddr).status).toBe('200');
      expect(await prober.udpEchoes(clientAddr, gwAddr, 5300, OPEN_MS)).toBe(true);
    });
  }

  itOnHost('a wrong step-1 key leaves HTTPS closed', async () => {
    const { client } = sandbox;
    const wrong = knock(client, daemon, ADDR.gwWan4, 'app=tcpsvc&access_key=wrong-key-0123456789', ADDR.client4b, STEP1_SECONDS);
    const refused = new RegExp(`"ip":"${ADDR.client4b}".*"reason":"bad-key".*step-1 knock refused`);
    expect(await waitFor(() => daemon.output.some((l) => refused.test(l)), scaled(5000), 50)).toBe(true);
    expect(step2(client, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTPS_KEY}`, ADDR.client4b, STEP1_SECONDS).status).toBe('000');
    expect(await wrong).toBe(false);
  });

  itOnHost('revoke closes a grant at once', async () => {
    const { client } = sandbox;
    expect(await knock(client, daemon, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTP_KEY}`, ADDR.client4)).toBe(true);
    expect(step2(client, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTPS_KEY}`).status).toBe('200');
    expect(tcpOpen(client, ADDR.gwWan4, 8080, OPEN_MS)).toBe(true);
    sandbox.gw.exec(process.execPath, [CLI, 'revoke', ADDR.client4, '--socket', join(sandbox.dir, 'control.sock')]);
    expect(tcpOpen(client, ADDR.gwWan4, 8080, CLOSED_MS)).toBe(false);
    expect(sessionsJson(sandbox).filter((s) => s.ip === ADDR.client4)).toHaveLength(0);
  });

  it('kill -9 leaves ports closed and grants expiring on time; a restart lists and keeps them', async () => {
    const { client } = sandbox;
    expect(await knock(client, daemon, ADDR.gwWan4, 'app=longsvc&access_key=long-http-key-0123456789', ADDR.client4)).toBe(true);
    expect(step2(client, ADDR.gwWan4, 'app=longsvc&access_key=long-https-key-0123456789').status).toBe('200');
    const grantedAt = Date.now();
    // The sessions file is written shortly after a grant (a burst is written once): the restart
    // below is about what was saved, so the kill waits until the grant is on disk.
    const savedFile = join(sandbox.dir, 'state', 'sessions.json');
    expect(await waitFor(() => existsSync(savedFile) && readFileSync(savedFile, 'utf8').includes(ADDR.client4), scaled(5000), 100)).toBe(true);
    await daemon.stop('SIGKILL');

    // Dead daemon: its rules stay (fail closed); the granted client still gets in, others do not; nothing answers step 1.
    expect(installed()).toBe(true);
    expect(tcpOpen(client, ADDR.gwWan4, 8081, OPEN_MS)).toBe(true);
    const [, https, http] = await Promise.all([
      expectClosedToStrangers(),
      curlFrom(client, ADDR.client4b, ['-k', url(ADDR.gwWan4, 'https', STEP2_PATH)], STEP1_SECONDS),
      curlFrom(client, ADDR.client4b, [url(ADDR.gwWan4, 'http', STEP1_PATH)], STEP1_SECONDS),
    ]);
    expect([https.status, http.status]).toEqual(['000', '000']);

    daemon = start();
    expect(await daemon.waitForLog(/knock-port ready/, scaled(15_000))).toBe(true);
    const listed = sessionsJson(sandbox).filter((s) => s.ip === ADDR.client4 && s.app === 'longsvc' && s.step === 'service');
    expect(listed).toHaveLength(1);
    expect(tcpOpen(client, ADDR.gwWan4, 8081, OPEN_MS)).toBe(true);

    // The kernel closes it on time, counted from the grant, not from the restart.
    expect(await waitFor(() => !tcpOpen(client, ADDR.gwWan4, 8081, scaled(400)), (LONG_DURATION + scaled(3)) * 1000, 250)).toBe(true);
    expect(Date.now() - grantedAt).toBeGreaterThan((LONG_DURATION - scaled(1)) * 1000);
    expect(Date.now() - grantedAt).toBeLessThan((LONG_DURATION + scaled(3)) * 1000);
  });

  itOnHost('knock-port watch prints the live decisions of real knocks', async () => {
    const watch = sandbox.gw.spawn(process.execPath, [CLI, 'watch', '--iface', IF.gwWan, '-c', configPath, '--json']);
    const lines: string[] = [];
    let banner = '';
    watch.stdout?.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    watch.stderr?.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    try {
      // The banner is printed once libpcap is capturing, so no knock is missed.
      expect(await waitFor(() => banner.includes('watching step-1 traffic'), scaled(10_000))).toBe(true);
      expect(await knock(sandbox.client, daemon, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTP_KEY}`, ADDR.client4b)).toBe(true);
      const wrong = curlFrom(
        sandbox.client,
        ADDR.client4b,
        ['-d', 'app=tcpsvc&access_key=wrong-key-0123456789', url(ADDR.gwWan4, 'http', STEP1_PATH)],
        STEP1_SECONDS,
      );
      const decisions = () => lines.map((l) => JSON.parse(l) as { src: string; result: string; reason?: string; app?: string });
      expect(await waitFor(() => decisions().some((d) => d.result === 'rejected' && d.reason === 'bad-key'), scaled(5000))).toBe(true);
      expect(decisions().some((d) => d.src === ADDR.client4b && d.result === 'granted' && d.app === 'tcpsvc')).toBe(true);
      expect(decisions().some((d) => d.result === 'syn')).toBe(true);
      expect((await wrong).status).toBe('000');
    } finally {
      watch.kill('SIGTERM');
    }
  });

  itOnHost('serves Prometheus metrics on loopback with step-1 and grant counters', async () => {
    expect(await knock(sandbox.client, daemon, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTP_KEY}`, ADDR.client4b)).toBe(true);
    expect(step2(sandbox.client, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTPS_KEY}`, ADDR.client4b).status).toBe('200');
    const text = sandbox.gw.exec('curl', ['-sS', '-m', String(STEP2_SECONDS), 'http://127.0.0.1:9464/metrics']);
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
    expect(value(/^knockport_step1_packets_total\{outcome="syn",reason=""\} (\d+)$/m)).toBeGreaterThan(0);
    expect(value(/^knockport_grants_total\{step="service"\} (\d+)$/m)).toBeGreaterThan(0);
    expect(text).toMatch(/^knockport_knock_to_grant_seconds_count\{step="step2"\} [1-9]/m);
    // Not reachable from the client side.
    expect(curl(sandbox.client, [`http://${ADDR.gwWan4}:9464/metrics`], STEP1_SECONDS).status).toBe('000');
  });

  itOnHost('SIGHUP: an invalid config keeps the running one; a valid one takes effect', async () => {
    const original = readFileSync(configPath, 'utf8');
    writeFileSync(configPath, 'global: [not, a, config\n');
    daemon.proc.kill('SIGHUP');
    expect(await daemon.waitForLog(/config reload failed/, scaled(5000))).toBe(true);
    // Still serving, on the previous config, and `health` says so until a reload succeeds.
    const health = () => sandbox.gw.tryExec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')]);
    const refused = health();
    expect(refused.ok).toBe(false);
    expect(refused.out + refused.err).toMatch(/the config reload at \S+ failed: still running on the previous config/);

    const extra = `extra:\n  port: 9090\n  access_key_http: [extra-http-key-0123]\n  access_key_https: [extra-https-key-0123]\n  destination: local\n  protocol: tcp\n  duration: ${DURATION}\n  step2_https_duration: ${WINDOW}\n`;
    writeFileSync(configPath, original + extra);
    daemon.proc.kill('SIGHUP');
    expect(await daemon.waitForLog(/config reloaded/, scaled(5000))).toBe(true);
    expect(await knock(sandbox.client, daemon, ADDR.gwWan4, 'app=extra&access_key=extra-http-key-0123', ADDR.client4b)).toBe(true);
    expect(step2(sandbox.client, ADDR.gwWan4, 'app=extra&access_key=extra-https-key-0123', ADDR.client4b).status).toBe('200');
    expect(sessionsJson(sandbox).some((s) => s.ip === ADDR.client4b && s.app === 'extra' && s.step === 'service')).toBe(true);
    expect(health().ok).toBe(true);
    writeFileSync(configPath, original);
  });

  itOnHost('SIGTERM: exits 0, saves the sessions, keeps its rules and leaves every port closed', async () => {
    const { client } = sandbox;
    expect(await knock(client, daemon, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTP_KEY}`, ADDR.client4)).toBe(true);
    expect(step2(client, ADDR.gwWan4, `app=tcpsvc&access_key=${HTTPS_KEY}`).status).toBe('200');
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(installed()).toBe(true);
    const saved = JSON.parse(readFileSync(join(sandbox.dir, 'state', 'sessions.json'), 'utf8')) as unknown;
    expect(JSON.stringify(saved)).toContain(ADDR.client4);
    expect(tcpOpen(client, ADDR.gwWan4, 8080, OPEN_MS)).toBe(true); // the grant lives on in the kernel
    // Listening, not granted to them: closed, with the daemon gone.
    const [, https, extra] = await Promise.all([
      expectClosedToStrangers(),
      curlFrom(client, ADDR.client4b, ['-k', url(ADDR.gwWan4, 'https', STEP2_PATH)], STEP1_SECONDS),
      prober.tcp(ADDR.client4, ADDR.gwWan4, 9090, CLOSED_MS),
    ]);
    expect([https.status, extra.kind === 'open']).toEqual(['000', false]);
  });
});

describe.skipIf(skip)('capture: auto', () => {
  const expected = skip ? 'nflog' : autoCapture();

  it(`picks ${expected} on this kernel (nfqueue where nft has the \`queue\` expression, else nflog)`, () => {
    const ns = Netns.create('auto');
    const dir = mkdtempSync(join(tmpdir(), 'kp-auto-'));
    try {
      const config = join(dir, 'config.yaml');
      const yaml = `global:\n  http_post_path: ${STEP1_PATH}\n  https_post_path: ${STEP2_PATH}\n  interface_ext: ${IF.gwWan}\n  firewall_type: nftables\n  capture: auto\n`;
      writeFileSync(
        config,
        `${yaml}tcpsvc:\n  port: 8080\n  access_key_http: [${HTTP_KEY}]\n  access_key_https: [${HTTPS_KEY}]\n  duration: 60\n  step2_https_duration: 30\n`,
        { mode: 0o600 },
      );
      const rules = ns.runCommand(process.execPath, [CLI, 'rules', '-c', config]);
      expect(rules.code, rules.stderr).toBe(0);
      expect(rules.stdout).toMatch(expected === 'nfqueue' ? /^\s*add rule .*\bqueue num \d+(-\d+ fanout)?$/m : /^\s*add rule .*\blog group \d+ /m);
      expect(rules.stdout).not.toMatch(expected === 'nfqueue' ? /\blog group \d+/ : /\bqueue num \d+/);
    } finally {
      ns.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
