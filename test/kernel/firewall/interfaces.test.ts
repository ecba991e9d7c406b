/**
 * Interface names on a real kernel: `interface_ext: ppp+` (the original's and iptables'
 * wildcard) and `ppp*` (nft's) gate the ports on an interface named ppp0, on nftables and on
 * iptables. A mistyped exact name is refused: `check` fails suggesting the close name, `run`
 * installs nothing. A name written to be absent for a while (`name?`, a wildcard) is never
 * silent: `check` warns, the start log warns, `health` reports it until such an interface appears.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason, tcpOpen, waitFor, type Netns } from '../../helpers/netns.js';
import { startServices, tcpProbe } from '../../helpers/scenario.js';
import { ADDR, CLI, IF, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('firewall/interfaces', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl']));

const STEP1_PATH = '/knock-if-2c7e90';
const STEP2_PATH = '/step2-if-81ad4f';
const HTTP_KEY = 'if-http-key-0123456789';
const HTTPS_KEY = 'if-https-key-0123456789';
/** A second IPv6 address on the client, so each run knocks from fresh addresses. */
const CLIENT6B = '2001:db8:1::3';

function configYaml(sandbox: Sandbox, interfaceExt: string, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    interface_ext: `"${interfaceExt}"`,
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
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

const url = (addr: string, scheme: 'http' | 'https', path: string) => `${scheme}://${addr.includes(':') ? `[${addr}]` : addr}${path}`;

/** Renames the gateway's external veth, keeping its addresses (IPv6 ones too). */
function renameWan(gw: Netns, name: string): void {
  gw.sysctl(`net.ipv6.conf.${IF.gwWan}.keep_addr_on_down`, '1');
  gw.ip('link', 'set', IF.gwWan, 'down');
  gw.ip('link', 'set', IF.gwWan, 'name', name);
  gw.ip('link', 'set', name, 'up');
}

function cli(sandbox: Sandbox, args: string[]): { code: number | null; stdout: string; stderr: string } {
  return sandbox.gw.runCommand(process.execPath, [CLI, ...args], { timeoutMs: 30_000 });
}

const health = (sandbox: Sandbox) => cli(sandbox, ['health', '--socket', join(sandbox.dir, 'control.sock')]);

async function start(sandbox: Sandbox, configPath: string, args: string[]): Promise<Daemon> {
  const daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, ...args]);
  if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  return daemon;
}

const BACKENDS = [
  { name: 'nftables', firewall: 'nftables', capture: 'auto', args: [] as string[], tag: 'wcn', rules: ['nft', 'list', 'ruleset'], expect: 'iifname "ppp*"' },
  {
    name: 'iptables-nft + NFQUEUE',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    tag: 'wci',
    rules: ['iptables-nft-save'],
    expect: '-i ppp+ ',
  },
];

describe.skipIf(skip).each(BACKENDS)('interface wildcard on $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    sandbox = createSandbox(backend.tag);
    renameWan(sandbox.gw, 'ppp0');
    sandbox.client.ip('addr', 'add', `${CLIENT6B}/64`, 'dev', IF.clientWan, 'nodad');
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    // Nothing filters yet: the service answers everyone, over the renamed interface.
    const reachable = () => tcpOpen(sandbox.client, ADDR.gwWan4, 8080, 500) && tcpOpen(sandbox.client, ADDR.gwWan6, 8080, 500);
    if (!(await waitFor(reachable, 10_000, 200))) throw new Error('the renamed interface does not carry traffic');
  });

  afterEach(async (ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail')
      console.log(sandbox.gw.tryExec(backend.rules[0]!, backend.rules.slice(1)).out, daemon?.output.slice(-15).join('\n'));
    await daemon?.stop('SIGTERM');
    daemon = undefined;
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  const runs = [
    { written: 'ppp+', from4: ADDR.client4, from6: ADDR.client6 },
    { written: 'ppp*', from4: ADDR.client4b, from6: CLIENT6B },
  ];

  for (const { written, from4, from6 } of runs) {
    it(`interface_ext: ${written} gates ppp0 (IPv4 and IPv6) and leaves the LAN side alone`, async () => {
      const { client, gw, lan } = sandbox;
      const configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, written, backend.firewall, backend.capture));
      const checked = cli(sandbox, ['check', '-c', configPath]);
      expect(checked.code).toBe(0);
      expect(checked.stdout).not.toContain('matches no interface');
      daemon = await start(sandbox, configPath, backend.args);
      expect(daemon.output.filter((line) => line.includes('matches no interface'))).toEqual([]);
      expect(gw.exec(backend.rules[0]!, backend.rules.slice(1))).toContain(backend.expect);
      expect(health(sandbox).stdout).toBe('healthy\n');

      for (const [gwAddr, from] of [
        [ADDR.gwWan4, from4],
        [ADDR.gwWan6, from6],
      ] as const) {
        // A service that listens, but no grant: silent, and so is the HTTPS port.
        expect(curl(client, ['--interface', from, url(gwAddr, 'http', '/')], 1).status).toBe('000');
        expect(curl(client, ['-k', '--interface', from, '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, url(gwAddr, 'https', STEP2_PATH)], 1).status).toBe('000');
        expect(await tcpProbe(client, from, gwAddr, 8080)).toEqual({ kind: 'timeout' });

        // The knock opens it for this address (knocked again once, as a user would, when a busy
        // machine let step 1's only second pass before the SYN-ACK came back).
        const knock = () => {
          expect(curl(client, ['--interface', from, '-d', `app=tcpsvc&access_key=${HTTP_KEY}`, url(gwAddr, 'http', STEP1_PATH)], 1).status).toBe('000');
          return curl(client, ['-k', '--interface', from, '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, url(gwAddr, 'https', STEP2_PATH)], 3);
        };
        const first = knock();
        expect(first.status === '000' ? knock() : first).toEqual({ status: '200', body: 'OK\n' });
        expect(await tcpProbe(client, from, gwAddr, 8080, 1500)).toEqual({ kind: 'open', banner: 'hello' });
      }
      // Only ppp* is gated: the same service answers on the LAN interface.
      expect(tcpOpen(lan, ADDR.gwLan4, 8080)).toBe(true);
    });
  }
});

/** The gateway's external interface (kpwan0) with two letters swapped. */
const TYPO = 'kpwna0';

describe.skipIf(skip)('a mistyped exact interface is refused', () => {
  let sandbox: Sandbox;
  let configPath: string;

  beforeAll(async () => {
    sandbox = createSandbox('xif');
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, TYPO, 'nftables', 'auto'));
  });

  afterAll(() => sandbox?.destroy());

  it('check fails, naming the key and the name and suggesting the close one', () => {
    const checked = cli(sandbox, ['check', '-c', configPath]);
    expect(checked.code, checked.stderr).toBe(1);
    expect(checked.stdout).toBe('');
    expect(checked.stderr).toContain(`global.interface_ext: no interface '${TYPO}' on this host (did you mean '${IF.gwWan}'?)`);
    expect(checked.stderr).toContain(`write '${TYPO}?' or a wildcard such as ppp+`);
  });

  it('run refuses to start and installs no rule: the service stays as it was, no install is recorded', () => {
    const run = cli(sandbox, ['run', '-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toContain(`no interface '${TYPO}' on this host (did you mean '${IF.gwWan}'?)`);
    expect(sandbox.gw.exec('nft', ['list', 'ruleset'])).not.toContain('knockport');
    expect(existsSync(join(sandbox.dir, 'state', 'firewall-installs.json'))).toBe(false);
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, 8080)).toBe(true);
  });

  it('check passes on a wildcard that matches an interface, and on one that matches none with the warning', () => {
    const matching = writeFile(sandbox, 'wildcard.yaml', configYaml(sandbox, 'kpw+', 'nftables', 'auto'));
    const ok = cli(sandbox, ['check', '-c', matching]);
    expect([ok.code, ok.stderr]).toEqual([0, '']);
    expect(ok.stdout).not.toContain('matches no interface');
    const later = writeFile(sandbox, 'later.yaml', configYaml(sandbox, 'ppp+', 'nftables', 'auto'));
    const warned = cli(sandbox, ['check', '-c', later]);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stdout).toContain("gate matches no interface: interface_ext 'ppp*' on this host");
  });
});

describe.skipIf(skip)('an optional interface that is missing is reported, never silent', () => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;
  let configPath: string;
  const OPTIONAL = `${TYPO}?`;

  beforeAll(async () => {
    sandbox = createSandbox('mif');
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, OPTIONAL, 'nftables', 'auto'));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('check warns and still exits 0', () => {
    const checked = cli(sandbox, ['check', '-c', configPath]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(`gate matches no interface: interface_ext '${OPTIONAL}' on this host`);
    expect(checked.stdout).toMatch(/as open as the host's other rules leave them/);
  });

  it('the daemon warns at start, health reports it, and the gate really matches nothing', async () => {
    daemon = await start(sandbox, configPath, []);
    const warning = daemon.output
      .map((line) => JSON.parse(line) as { level: number; msg: string; interface?: string })
      .find((line) => line.msg.includes('matches no interface'));
    expect(warning).toMatchObject({ level: 40, interface: OPTIONAL });
    const report = health(sandbox);
    expect(report.code).toBe(1);
    expect(report.stderr).toContain(`unhealthy: gate matches no interface: interface_ext '${OPTIONAL}'`);
    // Why it must be loud: the external client reaches the service without any knock.
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, 8080)).toBe(true);
  });

  it('health recovers on a maintenance tick once an interface of that name exists', async () => {
    sandbox.gw.ip('link', 'add', TYPO, 'type', 'veth', 'peer', 'name', `${TYPO}p`);
    expect(await waitFor(() => health(sandbox).code === 0, 15_000, 500)).toBe(true);
    expect(await daemon!.waitForLog(new RegExp(`resolved: gate matches no interface: interface_ext '${TYPO}\\?'`), 1000)).toBe(true);
  });
});
