/**
 * nginx in front of step 2, as docs/manual/nginx-waf.md documents it (the nginx snippet is read
 * from that page): nginx serves the public port 443 in the gateway namespace and forwards the step-2
 * path to knock-port on 127.0.0.1:8443, naming the client in X-Real-IP. Real curl from the
 * client namespace, the real daemon, on the nftables and the iptables backend.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, tcpOpen, waitFor, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, REPO_ROOT, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('waf/nginx', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'nginx']));

const STEP1_PATH = '/knock-waf-5e81c2';
const STEP2_PATH = '/step2-waf-93d0af';
const HTTP_KEY = 'waf-http-key-0123456789';
const HTTPS_KEY = 'waf-https-key-0123456789';
const SERVICE_PORT = 8080;
const INTERNAL_PORT = 8443;

/** The nginx snippet of the operator's manual (docs/manual/nginx-waf.md), with this sandbox's path and certificate. */
function readmeNginxSnippet(sandbox: Sandbox): string {
  const page = readFileSync(join(REPO_ROOT, 'docs', 'manual', 'nginx-waf.md'), 'utf8');
  const section = page.slice(page.indexOf('# nginx or a WAF in front of the HTTPS port'));
  const snippet = /```nginx\n([\s\S]*?)```/.exec(section)?.[1];
  if (!snippet) throw new Error('docs/manual/nginx-waf.md: no nginx snippet under "nginx or a WAF in front of the HTTPS port"');
  const replacements: Array<[string, string]> = [
    ['/YOUR-STEP-2-PATH', STEP2_PATH],
    ['/etc/knock-port/tls/cert.pem', sandbox.cert],
    ['/etc/knock-port/tls/key.pem', sandbox.key],
  ];
  return replacements.reduce((text, [from, to]) => {
    if (!text.includes(from)) throw new Error(`docs/manual/nginx-waf.md nginx snippet: '${from}' not found`);
    return text.replaceAll(from, to);
  }, snippet);
}

/** A whole nginx.conf around the snippet, with every file nginx writes inside the sandbox. */
function nginxConf(sandbox: Sandbox): string {
  const dir = join(sandbox.dir, 'nginx');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(dir, 'tmp', kind)};`);
  return `daemon off;
master_process off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 128; }
http {
  access_log off;
${temp.join('\n')}
${readmeNginxSnippet(sandbox)}
}
`;
}

/** `listenAddress` undefined: knock-port listens on every address, and only the firewall keeps its port closed. */
function configYaml(sandbox: Sandbox, firewall: string, capture: string, listenAddress: string | undefined): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_public_port: 443,
    https_port: INTERNAL_PORT,
    https_listen_address: listenAddress,
    trusted_proxies: '[127.0.0.1]',
    firewall_type: firewall,
    capture,
  })}svc:
  port: ${SERVICE_PORT}
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  duration: 30
  step2_https_duration: 20
`;
}

/** A dual-stack TCP service answering "hello" in the gateway. */
function startService(gw: Netns): void {
  const script = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); }).listen({ port: ${SERVICE_PORT}, host: '::', ipv6Only: false });`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

const host = (addr: string): string => (addr.includes(':') ? `[${addr}]` : addr);

/** Step 1 with curl: always times out by design. `from`: a source address of the client. */
function step1(client: Netns, addr: string, from?: string): void {
  curl(client, ['-d', `app=svc&access_key=${HTTP_KEY}`, ...(from ? ['--interface', from] : []), `http://${host(addr)}${STEP1_PATH}`], 1);
}

function serviceGrants(sandbox: Sandbox): string[] {
  const out = sandbox.gw.exec(process.execPath, [CLI, 'sessions', '--json', '--socket', join(sandbox.dir, 'control.sock')]);
  const sessions = JSON.parse(out) as Array<{ ip: string; step: string }>;
  return sessions.filter((s) => s.step === 'service').map((s) => s.ip);
}

const BACKENDS = [
  { name: 'nftables, knock-port on 127.0.0.1', firewall: 'nftables', capture: 'auto', listen: '127.0.0.1', args: [] as string[] },
  { name: 'iptables-nft, knock-port on every address', firewall: 'iptables', capture: 'nfqueue', listen: undefined, args: ['--iptables-variant', 'nft'] },
];

describe.skipIf(skip).each(BACKENDS)('nginx in front of step 2: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  beforeAll(async () => {
    sandbox = createSandbox(`w${backend.firewall.slice(0, 2)}`);
    const configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture, backend.listen));
    const nginxConfPath = writeFile(sandbox, 'nginx.conf', nginxConf(sandbox));
    const nginxArgs = ['-e', join(sandbox.dir, 'nginx', 'error.log'), '-c', nginxConfPath];
    sandbox.gw.exec('nginx', ['-t', '-q', ...nginxArgs]);
    sandbox.gw.spawn('nginx', nginxArgs, { stdio: 'ignore' }).unref();
    startService(sandbox.gw);
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug', ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    // nginx is up once it accepts on 443 inside the gateway (the firewall gates only interface_ext).
    if (!(await waitFor(() => tcpOpen(sandbox.gw, '127.0.0.1', 443), 10_000))) throw new Error('nginx did not start');
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') console.log(daemon.output.slice(-20).join('\n'));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy(); // kills nginx and the service with the namespaces
  });

  it("before step 1 neither the public HTTPS port nor knock-port's own port is reachable", () => {
    for (const addr of [ADDR.gwWan4, ADDR.gwWan6]) {
      expect(tcpOpen(sandbox.client, addr, 443)).toBe(false);
      expect(tcpOpen(sandbox.client, addr, INTERNAL_PORT)).toBe(false);
      expect(tcpOpen(sandbox.client, addr, SERVICE_PORT)).toBe(false);
    }
  });

  it('knock-port listens only where https_listen_address says', () => {
    expect(tcpOpen(sandbox.gw, '127.0.0.1', INTERNAL_PORT)).toBe(true);
    expect(tcpOpen(sandbox.gw, ADDR.gwWan4, INTERNAL_PORT)).toBe(backend.listen === undefined);
  });

  for (const [family, addr, clientAddr] of [
    ['IPv4', ADDR.gwWan4, ADDR.client4],
    ['IPv6', ADDR.gwWan6, ADDR.client6],
  ] as const) {
    it(`${family}: after step 1, step 2 through nginx opens the service for the client's own address`, async () => {
      step1(sandbox.client, addr);
      expect(await waitFor(() => tcpOpen(sandbox.client, addr, 443), 5_000)).toBe(true);
      const answer = curl(sandbox.client, ['-k', '-d', `app=svc&access_key=${HTTPS_KEY}`, `https://${host(addr)}${STEP2_PATH}`], 5);
      expect(answer).toEqual({ status: '200', body: 'OK\n' });
      expect(tcpOpen(sandbox.client, addr, SERVICE_PORT)).toBe(true);
      expect(serviceGrants(sandbox)).toContain(clientAddr);
      expect(serviceGrants(sandbox)).not.toContain('127.0.0.1');
      // The step-2 window and the service grant do not open knock-port's own port.
      expect(tcpOpen(sandbox.client, addr, INTERNAL_PORT)).toBe(false);
    });
  }

  it("the client cannot name another address: nginx replaces X-Real-IP, and an untrusted peer's header is ignored", async () => {
    const forged = ADDR.client4b;
    // The forged address has a step-2 window of its own, so only the address resolution stands in the way.
    step1(sandbox.client, ADDR.gwWan4, forged);
    expect(await waitFor(() => curl(sandbox.client, ['-k', '--interface', forged, `https://${ADDR.gwWan4}/`], 1).status === '403', 5_000)).toBe(true);
    // nginx's own answer to another path is knock-port's refusal, headers and body (all but the date).
    const whole = (path: string, extra: string[] = []) =>
      curl(
        sandbox.client,
        ['-k', '-D', '-', '--interface', forged, '-d', 'app=svc&access_key=not-the-key-0123', ...extra, `https://${ADDR.gwWan4}${path}`],
        5,
      ).body.replace(/^date: .*\r\n/im, '');
    const refusal = whole(STEP2_PATH);
    expect(refusal).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*\r\n\r\nForbidden\n$/);
    expect([whole('/'), whole(`${STEP2_PATH}x`), whole(STEP2_PATH, ['-H', 'Transfer-Encoding: chunked'])]).toEqual([refusal, refusal, refusal]);

    // Through nginx from the client's main address: the grant goes to that address, never to the forged one.
    const viaNginx = curl(
      sandbox.client,
      ['-k', '-H', `X-Real-IP: ${forged}`, '-H', `X-Forwarded-For: ${forged}`, '-d', `app=svc&access_key=${HTTPS_KEY}`, `https://${ADDR.gwWan4}${STEP2_PATH}`],
      5,
    );
    expect(viaNginx.status).toBe('200');

    // Straight to knock-port from the gateway's own non-loopback address (untrusted): its header is ignored.
    const direct = curl(
      sandbox.gw,
      [
        '-k',
        '--interface',
        ADDR.gwWan4,
        '-H',
        `X-Real-IP: ${forged}`,
        '-d',
        `app=svc&access_key=${HTTPS_KEY}`,
        `https://127.0.0.1:${INTERNAL_PORT}${STEP2_PATH}`,
      ],
      5,
    );
    expect(direct.status).toBe('403');
    expect(serviceGrants(sandbox)).not.toContain(forged);
  });

  it('a trusted proxy that names no client gets the same 403 as any refusal', () => {
    const answer = curl(sandbox.gw, ['-k', '-d', `app=svc&access_key=${HTTPS_KEY}`, `https://127.0.0.1:${INTERNAL_PORT}${STEP2_PATH}`], 5);
    expect(answer).toEqual({ status: '403', body: 'Forbidden\n' });
  });
});
