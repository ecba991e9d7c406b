/**
 * knock-port touches only the external side: with `http_port: 80` and `https_port: 443`, a web
 * server on the gateway's LAN address (a router's web UI) still answers LAN clients and the
 * gateway itself, on nftables and on iptables, while a knock from outside still works and
 * port 80 still looks stealthy from outside, on the external and on the LAN address.
 * Then `uninstall` refuses while the daemon runs; SIGTERM leaves the rules in place (fail closed:
 * the granted client keeps its grant, the service stays closed to everyone else) until
 * `uninstall` removes them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, tcpOpen, type Netns } from '../../helpers/netns.js';
import { runUntilReady, startServices, tcpProbe } from '../../helpers/scenario.js';
import { ADDR, CLI, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('firewall/lan-side', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl']));

const STEP1_PATH = '/knock-lan-5b81d2';
const STEP2_PATH = '/step2-lan-e93c07';
const HTTP_KEY = 'lan-http-key-0123456789';
const HTTPS_KEY = 'lan-https-key-0123456789';

function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    // knock-port's step-2 listener on the external address only: the LAN web UI keeps 443 on the LAN address.
    https_listen_address: ADDR.gwWan4,
    firewall_type: firewall,
    capture,
  })}tcpsvc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  duration: 30
  step2_https_duration: 5
`;
}

/** A plain HTTP server answering `lan-web` on each address and port, like a router's web UI. */
async function startLanWeb(ns: Netns, endpoints: Array<[string, number]>): Promise<void> {
  const script = `
    const http = require('node:http');
    const endpoints = ${JSON.stringify(endpoints)};
    let pending = endpoints.length;
    for (const [host, port] of endpoints) {
      const server = http.createServer((req, res) => res.end('lan-web\\n'));
      server.on('error', (e) => { console.error(e.message); process.exit(1); });
      server.listen({ host, port }, () => { if (--pending === 0) console.log('ready'); });
    }`;
  await runUntilReady(ns, script, 'LAN web server');
}

const host = (addr: string) => (addr.includes(':') ? `[${addr}]` : addr);

const BACKENDS = [
  { name: 'nftables', firewall: 'nftables', capture: 'auto', args: [] as string[], tag: 'lsn' },
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'], tag: 'lsi' },
];

describe.skipIf(skip).each(BACKENDS)('LAN side untouched: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;

  /** Whether knock-port's base ruleset is in the gateway's kernel. */
  const installed = (): boolean =>
    backend.firewall === 'nftables'
      ? sandbox.gw.tryExec('nft', ['list', 'table', 'inet', 'knockport']).ok
      : sandbox.gw.tryExec('iptables-nft', ['-S', 'KNOCKPORT-INPUT']).ok;

  beforeAll(async () => {
    sandbox = createSandbox(backend.tag);
    // The client can route to the gateway's LAN address too, so the test can try it from outside.
    sandbox.client.ip('route', 'add', '198.51.100.0/24', 'via', ADDR.gwWan4);
    await startLanWeb(sandbox.gw, [
      [ADDR.gwLan4, 80],
      [ADDR.gwLan4, 443],
      [ADDR.gwLan6, 80],
      [ADDR.gwLan6, 443],
    ]);
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') {
      console.log(sandbox.gw.tryExec('nft', ['list', 'ruleset']).out, sandbox.gw.tryExec('iptables-save').out, daemon.output.slice(-15).join('\n'));
    }
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  for (const addr of [ADDR.gwLan4, ADDR.gwLan6]) {
    it(`a LAN client reaches the web server on ${addr} ports 80 and 443`, () => {
      for (let i = 0; i < 3; i++) {
        expect(curl(sandbox.lan, [`http://${host(addr)}/`], 3)).toEqual({ status: '200', body: 'lan-web\n' });
        expect(curl(sandbox.lan, [`http://${host(addr)}:443/`], 3)).toEqual({ status: '200', body: 'lan-web\n' });
      }
    });
  }

  it('the gateway itself reaches its LAN web server on port 80', () => {
    expect(curl(sandbox.gw, [`http://${ADDR.gwLan4}/`], 3)).toEqual({ status: '200', body: 'lan-web\n' });
  });

  it('from outside, port 80 stays stealthy, on the external and on the LAN address, and 443 stays closed', () => {
    const { client } = sandbox;
    expect(curl(client, [`http://${ADDR.gwWan4}/`], 1).status).toBe('000');
    expect(curl(client, [`http://${ADDR.gwLan4}/`], 1).status).toBe('000');
    expect(curl(client, [`http://${ADDR.gwLan4}:443/`], 1).status).toBe('000');
    expect(curl(client, ['-k', `https://${ADDR.gwWan4}${STEP2_PATH}`], 1).status).toBe('000');
    expect(tcpOpen(client, ADDR.gwWan4, 8080, 800)).toBe(false);
    expect(tcpOpen(client, ADDR.gwWan6, 8080, 800)).toBe(false);
  });

  it('a knock from the external client still opens the service', async () => {
    const { client } = sandbox;
    expect(curl(client, ['-d', `app=tcpsvc&access_key=${HTTP_KEY}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 1).status).toBe('000');
    expect(curl(client, ['-k', '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 3)).toEqual({ status: '200', body: 'OK\n' });
    expect(tcpOpen(client, ADDR.gwWan4, 8080, 1000)).toBe(true);
    // The listening service stays closed to an address that did not knock.
    expect((await tcpProbe(client, ADDR.client4b, ADDR.gwWan4, 8080, 800)).kind).not.toBe('open');
    // And the LAN web UI still answers afterwards.
    expect(curl(sandbox.lan, [`http://${ADDR.gwLan4}/`], 3).status).toBe('200');
  });

  it('uninstall refuses while the daemon runs, and removes the rules once it is stopped', async () => {
    const uninstall = () => sandbox.gw.runCommand(process.execPath, [CLI, 'uninstall', '-c', configPath, ...backend.args], { timeoutMs: 30_000 });
    const refused = uninstall();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/knock-port is running .*Stop it first/);
    expect(installed()).toBe(true);

    expect(await daemon.stop('SIGTERM')).toBe(0);
    // Stopped, the rules stay: the granted client still gets in, a client that never knocked does not.
    expect(installed()).toBe(true);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, 8080, 1000)).toBe(true);
    expect((await tcpProbe(sandbox.client, ADDR.client4b, ADDR.gwWan4, 8080, 800)).kind).not.toBe('open');
    expect(curl(sandbox.client, ['--interface', ADDR.client4b, `http://${ADDR.gwWan4}${STEP1_PATH}`], 1).status).toBe('000');
    const done = uninstall();
    expect(done.stderr).toBe('');
    expect(done.code).toBe(0);
    expect(installed()).toBe(false);
  });
});
