/**
 * The kernel's step-1 budget is spent before the prefilter reads a path: a flood of data segments
 * carrying the right path and one carrying a wrong path leave the same budget for the SYNs sent
 * meanwhile, so what the gateway answers never tells an outsider the secret path. It is one
 * budget for all sources: a flood from one address leaves another as few. The segments and the
 * SYNs come from hping3, the SYNs each from its own source port (the daemon answers each once),
 * and what is counted is what a client sees: the SYN-ACKs it gets back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { execIn } from '../../helpers/scenario.js';
import { ADDR, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('firewall/step1-budget-oracle', kernelSkipReason(['ip', 'nft', 'iptables-nft', 'hping3', 'openssl']));

const STEP1_PATH = '/knock-oracle-71c4d2';
const STEP1_PORT = 80;
/** The smallest budget the config allows. */
const BUDGET = 100;
/** Ten times the budget: the flood keeps the bucket empty while it lasts. */
const FLOOD_RATE = 10 * BUDGET;
const FLOOD_SECONDS = 2;
const SYNS = 40;

function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: '/step2-oracle-5e0b97',
    http_port: STEP1_PORT,
    firewall_type: firewall,
    capture,
    step1_rate_per_second: BUDGET,
  })}svc:
  port: 8080
  access_key_http: [oracle-http-key-0123456]
  access_key_https: [oracle-https-key-0123456]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 20
`;
}

const BACKENDS = [
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] as string[], prefix: 'sbn' },
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', args: ['--iptables-variant', 'nft'], prefix: 'sbi' },
];

describe.skipIf(skip).each(BACKENDS)('the step-1 budget: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  /** SYN-ACKs for SYNS quick SYNs from ADDR.client4, each from its own source port. */
  const synAcks = async (): Promise<number> => {
    const hping = await execIn(sandbox.client, 'hping3', ['-n', '-S', '-p', String(STEP1_PORT), '-c', String(SYNS), '-i', 'u2000', ADDR.gwWan4], 30_000);
    const received = /(\d+) packets received/.exec(`${hping.out}${hping.err}`);
    if (!received) throw new Error(`hping3 printed no statistics: ${hping.out} ${hping.err}`);
    return Number(received[1]);
  };

  /** Handshake-less data segments from `from` starting `POST <path> HTTP/1.1`, FLOOD_RATE a second for FLOOD_SECONDS. */
  const dataFlood = async (path: string, from: string): Promise<void> => {
    const payload = writeFile(sandbox, `payload-${path.length}`, `POST ${path} HTTP/1.1\r\nHost: ${ADDR.gwWan4}\r\n\r\n`);
    const count = String(FLOOD_RATE * FLOOD_SECONDS);
    const segments = ['-A', '-E', payload, '-d', String(readFileSync(payload).length)];
    const pace = ['-c', count, '-i', `u${1_000_000 / FLOOD_RATE}`];
    const flood = await execIn(sandbox.client, 'hping3', ['-n', '-a', from, '-p', String(STEP1_PORT), ...segments, ...pace, ADDR.gwWan4], 30_000);
    expect(`${flood.out}${flood.err}`).toContain(`${count} packets transmitted`);
  };

  /** SYN-ACKs for the SYNs sent in the middle of a flood of data segments with `path` from `from` (no flood without a path). */
  const answeredDuring = async (path?: string, from: string = ADDR.client4): Promise<number> => {
    await sleep(scaled(3_000)); // the bucket full again
    if (path === undefined) return synAcks();
    const flood = dataFlood(path, from);
    await sleep(FLOOD_SECONDS * 400);
    const answered = await synAcks();
    await flood;
    return answered;
  };

  beforeAll(async () => {
    sandbox = createSandbox(backend.prefix);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('a flood with the right path and one with a wrong path leave the same few SYN-ACKs', async () => {
    const rested = await answeredDuring();
    const right = await answeredDuring(STEP1_PATH);
    const wrong = await answeredDuring('/not-the-knock-path');
    console.log(
      `[budget oracle] ${backend.name}: SYN-ACKs for ${SYNS} SYNs: rested ${rested}; during a flood with the right path ${right}, a wrong path ${wrong}`,
    );
    // Rested, the budget answers nearly every SYN; either flood keeps it empty, whatever path it carries.
    expect(rested).toBeGreaterThanOrEqual(SYNS * 0.75);
    for (const answered of [right, wrong]) expect(answered).toBeLessThanOrEqual(SYNS / 2);
    expect(Math.abs(right - wrong)).toBeLessThanOrEqual(SYNS / 4);
  });

  it('a flood from another address leaves as few: one budget for all sources', async () => {
    const answered = await answeredDuring('/not-the-knock-path', ADDR.client4b);
    console.log(`[budget oracle] ${backend.name}: SYN-ACKs for ${SYNS} SYNs during a flood from another address: ${answered}`);
    expect(answered).toBeLessThanOrEqual(SYNS / 2);
  });
});
