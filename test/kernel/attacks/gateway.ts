/**
 * The gateway the attack tests aim at: the real daemon on the nftables (NFLOG) or iptables-nft
 * (NFQUEUE) backend, a TCP service and a UDP echo behind the gate, and a client namespace with
 * a pool of attacker addresses, so each attack comes from a source no other attack used.
 * Shared by attacks.test.ts (probes, run with the parallel kernel group) and floods.test.ts
 * (floods, run alone: they measure what the daemon and the kernel do under load).
 */
import { newTotpSecret } from '../../../src/auth/totp.js';
import { buildStep1Request } from '../../../src/client/request.js';
import type { PrefilterTool } from '../../helpers/prefilter.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { execIn } from './probes.js';

export const STEP1_PATH = '/knock-atk-5b1e07';
export const STEP2_PATH = '/step2-atk-a93c4d';
export const ALICE = { http: 'alice-http-key-4f1c9a', https: 'alice-https-key-8d2e7b' };
export const OLGA = { http: 'olga-http-key-2b7e51', https: 'olga-https-key-6c0f3d' };
export const OLGA_OTP_SECRET = newTotpSecret();
export const PORTS = { step1: 80, https: 443, tcp: 8080, udp: 5300 };
export const METRICS_PORT = 9464;
/** Attacker addresses added to the client: one fresh source per attack, so no attack sees another's grants. */
export const POOL_SIZE = 40;

export function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    interface_int: undefined,
    firewall_type: firewall,
    capture,
    metrics_listen: `127.0.0.1:${METRICS_PORT}`,
  })}tcpsvc:
  port: ${PORTS.tcp}
  destination: local
  protocol: tcp
  duration: 60
  step2_https_duration: 30
  users:
    - name: alice
      access_key_http: ${ALICE.http}
      access_key_https: ${ALICE.https}
    - name: olga
      access_key_http: ${OLGA.http}
      access_key_https: ${OLGA.https}
      step1_otp_secret: ${OLGA_OTP_SECRET}
udpsvc:
  port: ${PORTS.udp}
  destination: local
  protocol: udp
  duration: 60
  step2_https_duration: 30
  access_key_http: [udp-http-key-0123456789]
  access_key_https: [udp-https-key-0123456789]
`;
}

/** A TCP service answering "hello" and a UDP echo, both dual-stack, in the gateway. */
export function startServices(sandbox: Sandbox): void {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    net.createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); }).listen({ port: ${PORTS.tcp}, host: '::', ipv6Only: false });
    const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    u.on('error', () => {});
    u.on('message', (m, r) => u.send(m, r.port, r.address));
    u.bind(${PORTS.udp}, '::');`;
  sandbox.gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

export const aliceBody = `app=tcpsvc&access_key=${ALICE.http}`;
export const knockRequest = (gw: string, body: string): Buffer => buildStep1Request({ host: gw, port: PORTS.step1, path: STEP1_PATH }, body);

export const BACKENDS = [
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'auto', args: [] as string[], prefix: 'anf', tool: 'nft' as PrefilterTool },
  {
    name: 'iptables-nft + NFQUEUE',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    prefix: 'aip',
    tool: 'iptables' as PrefilterTool,
  },
];

export const FAMILIES = [
  { family: 'IPv4', gw: ADDR.gwWan4, pool: (i: number) => `192.0.2.${10 + i}`, prefixLength: 24 },
  { family: 'IPv6', gw: ADDR.gwWan6, pool: (i: number) => `2001:db8:1::${(0x10 + i).toString(16)}`, prefixLength: 64 },
] as const;

export type Backend = (typeof BACKENDS)[number];
export type FamilyName = (typeof FAMILIES)[number]['family'];

/** Attacker addresses handed out one by one, never twice. */
export function attackerPool(): (family: FamilyName) => string {
  const used = { IPv4: 0, IPv6: 0 };
  return (family) => {
    const f = FAMILIES.find((x) => x.family === family)!;
    if (used[family] >= POOL_SIZE) throw new Error('attacker address pool exhausted: raise POOL_SIZE');
    return f.pool(used[family]++);
  };
}

/** The namespaces, the attacker addresses, the services and the daemon on `backend`, ready. */
export async function startGateway(backend: Backend): Promise<{ sandbox: Sandbox; daemon: Daemon }> {
  const sandbox = createSandbox(backend.prefix);
  try {
    for (const f of FAMILIES) {
      for (let i = 0; i < POOL_SIZE; i++) {
        const extra = f.family === 'IPv6' ? ['nodad'] : [];
        sandbox.client.ip('addr', 'add', `${f.pool(i)}/${f.prefixLength}`, 'dev', IF.clientWan, ...extra);
      }
    }
    // A gateway has a default route: SYN-ACKs to any (spoofed) source leave by the WAN link.
    sandbox.gw.ip('route', 'add', 'default', 'via', ADDR.client4);
    sandbox.gw.ip('-6', 'route', 'add', 'default', 'via', ADDR.client6);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    startServices(sandbox);
    const daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    return { sandbox, daemon };
  } catch (err) {
    sandbox.destroy();
    throw err;
  }
}

/** The daemon's Prometheus text. */
export async function scrapeMetrics(sandbox: Sandbox): Promise<string> {
  return (await execIn(sandbox.gw, 'curl', ['-sS', '-m', '2', `http://127.0.0.1:${METRICS_PORT}/metrics`])).out;
}

export function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
