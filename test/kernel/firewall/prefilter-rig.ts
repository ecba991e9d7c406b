/**
 * What the prefilter tests share (prefilter.test.ts counts packets and runs beside other files;
 * prefilter-cost.test.ts measures the daemon's CPU and runs alone): the backends, the daemon's
 * config, the junk payloads, and a gateway with the daemon started and its counters at hand.
 */
import { readFileSync } from 'node:fs';
import { prefilterDrops, type PrefilterTool } from '../../helpers/prefilter.js';
import { createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { nftQueueMissing, scaled } from '../../helpers/vm.js';
import { vyosCommit } from '../../helpers/vyos-layout.js';
import { execIn } from '../attacks/probes.js';

export const PREFILTER_TOOLS = ['ip', 'nft', 'iptables', 'iptables-legacy', 'ip6tables-legacy', 'curl', 'openssl', 'hping3', 'python3'];
export const STEP1_PATH = '/knock-pre-6b21d4';
const STEP2_PATH = '/step2-pre-0e93ac';
export const KEYS = { http: 'prefilter-http-key-4c1e', https: 'prefilter-https-key-93ab' };
const METRICS_PORT = 9464;

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /s, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface PrefilterBackend {
  name: string;
  label: string;
  firewall: string;
  capture: string;
  args: string[];
  tool: PrefilterTool;
  /** Runs in the stock-kernel VM (nft `queue`); the host runs the others. */
  vm: boolean;
  /** Why this machine cannot run the row, or undefined. */
  unavailable: (skip: boolean) => string | undefined;
}

const runsHere = () => undefined;

export const BACKENDS: PrefilterBackend[] = [
  { name: 'nftables + NFLOG', label: 'pfn', firewall: 'nftables', capture: 'nflog', args: [], tool: 'nft', vm: false, unavailable: runsHere },
  {
    name: 'nftables + NFQUEUE',
    label: 'pfq',
    firewall: 'nftables',
    capture: 'nfqueue',
    args: [],
    tool: 'nft',
    vm: true,
    unavailable: (skip) => (skip ? undefined : nftQueueMissing()),
  },
  {
    name: 'iptables-nft + NFQUEUE',
    label: 'pfi',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    tool: 'iptables',
    vm: false,
    unavailable: runsHere,
  },
  {
    name: 'iptables-nft + NFLOG',
    label: 'pfl',
    firewall: 'iptables',
    capture: 'nflog',
    args: ['--iptables-variant', 'nft'],
    tool: 'iptables',
    vm: false,
    unavailable: runsHere,
  },
  {
    name: 'iptables-legacy + NFQUEUE',
    label: 'pfg',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'legacy'],
    tool: 'iptables-legacy',
    vm: false,
    unavailable: runsHere,
  },
  { name: 'VyOS layout + NFLOG', label: 'pfv', firewall: 'vyos', capture: 'nflog', args: [], tool: 'nft', vm: false, unavailable: runsHere },
];

export function configYaml(sandbox: Sandbox, firewall: string, capture: string, handshake = 'cookie'): string {
  return `${globalSection(sandbox, {
    step1_handshake: handshake,
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    firewall_type: firewall,
    capture,
    // One queue or group: these tests are about which packets reach it, not about fanout.
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
export const JUNK: Buffer[] = [
  `POST /knock-pre-6b21d5 HTTP/1.1\r\nContent-Length: 3\r\n\r\na=b`,
  `POST ${STEP1_PATH}x HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH.slice(0, -1)} HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH}?a=1 HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH.toUpperCase()} HTTP/1.1\r\n\r\n`,
  `GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`,
  `POST ${STEP1_PATH}`,
  `\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03`,
].map((text) => Buffer.from(text, 'latin1'));

/** A gateway namespace with the daemon running on `backend`, and what the tests read from it. */
export interface PrefilterGateway {
  sandbox: Sandbox;
  daemon: Daemon;
  /** The daemon's /metrics text. */
  scrape(): Promise<string>;
  /** Step-1 packets the daemon judged, by outcome (syn, ignored, spoofed, rejected, ...). */
  outcomes(): Promise<Record<string, number>>;
  /** Packets the firewall's prefilter rules dropped, both families, from the rule counters. */
  kernelDrops(): number;
  stop(): Promise<void>;
}

export async function startPrefilterGateway(backend: PrefilterBackend, label = backend.label, handshake = 'cookie'): Promise<PrefilterGateway> {
  const sandbox = createSandbox(label);
  if (backend.firewall === 'vyos') vyosCommit(sandbox.gw, 'drop');
  const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture, handshake));
  const daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
  const stop = async () => {
    await daemon.stop('SIGKILL');
    sandbox.destroy();
  };
  if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) {
    const output = daemon.output.join('\n');
    await stop();
    throw new Error(`daemon did not start:\n${output}`);
  }
  const scrape = async () => (await execIn(sandbox.gw, 'curl', ['-sS', '-m', String(scaled(2)), `http://127.0.0.1:${METRICS_PORT}/metrics`])).out;
  const outcomes = async () => {
    const counts: Record<string, number> = {};
    for (const m of (await scrape()).matchAll(/^knockport_step1_packets_total\{outcome="([a-z]+)",reason=""\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
    return counts;
  };
  return { sandbox, daemon, scrape, outcomes, kernelDrops: () => prefilterDrops(sandbox.gw, backend.tool), stop };
}
