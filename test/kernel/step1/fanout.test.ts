/**
 * Step 1 on several worker threads (`step1_workers: 2`): the kernel spreads step-1 packets over
 * two queues (NFQUEUE `--queue-balance ... --queue-cpu-fanout` / nft `queue num A-B fanout`) or
 * two log groups (NFLOG, one rule per CPU), each read by its own worker thread. Many valid knocks
 * from distinct source addresses, sent from processes pinned to each CPU, must each be granted
 * exactly once (none lost, none doubled), both workers must have inspected packets, and one
 * `otp` knock sent twice at the same moment from two addresses (a replay racing the original,
 * landing on two workers) must be granted once. The real daemon in namespaces this test creates.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { totpAt } from '../../../src/auth/totp.js';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, leftToTheVm, requiredInCi, waitFor } from '../../helpers/netns.js';
import { ADDR, CLI, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { itOnHost, nftQueueMissing, rowsForThisRun, scaled } from '../../helpers/vm.js';

const FILE = 'test/kernel/step1/fanout.test.ts';
const skip = announceSkip(
  FILE,
  kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'taskset', 'bash']) ??
    requiredInCi(availableParallelism() < 2 ? 'needs at least 2 CPUs to spread step-1 packets over two workers' : undefined),
);

const STEP1_PATH = '/fanout-knock-5e21c7';
const STEP2_PATH = '/fanout-open-a93d40';
const BOB_KEY = 'bob-fanout-http-71c2d9';
const ALICE = { http: 'alice-fanout-http-0b6e13', otp: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' };
/** Knocks in the flood, from as many addresses: bounded, and done within a few seconds. */
const V4_KNOCKS = 48;
const V6_KNOCKS = 16;

const v4Sources = Array.from({ length: V4_KNOCKS }, (_, i) => `192.0.2.${100 + i}`);
const v6Sources = Array.from({ length: V6_KNOCKS }, (_, i) => `2001:db8:1::${(0x100 + i).toString(16)}`);
/** The two addresses the raced `otp` knock comes from. */
const RACERS = ['192.0.2.200', '192.0.2.201'];

function configYaml(sandbox: Sandbox, firewall: string, capture: string): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    firewall_type: firewall,
    capture,
    step1_workers: 2,
    metrics_listen: '127.0.0.1:9464',
  })}svc:
  port: 8080
  destination: local
  duration: 60
  step2_https_duration: 60
  users:
    - name: bob
      access_key_http: ${BOB_KEY}
      access_key_https: bob-fanout-https-4d8a02
    - name: alice
      access_key_http: ${ALICE.http}
      access_key_https: alice-fanout-https-c51f77
      step1_otp_secret: ${ALICE.otp}
`;
}

function step1Url(src: string): string {
  return `http://${src.includes(':') ? `[${ADDR.gwWan6}]` : ADDR.gwWan4}${STEP1_PATH}`;
}

/**
 * One curl per source, all at once, each pinned to CPU (i mod 2); returns when every curl ended.
 * Each runs its whole -m on purpose: 3 s leave a knock whose SYN or request was dropped in the
 * burst (a full queue drops, by design) time for the client's retransmissions, which must not
 * grant twice.
 */
function knockAll(sandbox: Sandbox, sources: readonly string[], body: string): void {
  const lines = sources.map((src, i) => `taskset -c ${i % 2} curl -s -o /dev/null -m ${scaled(3)} --interface ${src} -d '${body}' ${step1Url(src)} &`);
  sandbox.client.exec('bash', ['-c', `${lines.join('\n')}\nwait\n`]);
}

interface Grant {
  ip: string;
  app: string;
  user: string;
  step: string;
}

function grants(daemon: Daemon): Grant[] {
  return daemon.output
    .filter((line) => line.includes('"msg":"granted"'))
    .map((line) => JSON.parse(line) as Grant)
    .filter((grant) => grant.step === 'step2');
}

function metric(sandbox: Sandbox, pattern: RegExp): number {
  const text = sandbox.gw.exec('curl', ['-sS', '-m', String(scaled(2)), 'http://127.0.0.1:9464/metrics']);
  return Number(pattern.exec(text)?.[1] ?? NaN);
}

/** Step-1 packets each of the two workers (queue or log group `first`, `first + 1`) has inspected. */
function workerPackets(sandbox: Sandbox, first: number): [number, number] {
  const of = (worker: number) => metric(sandbox, new RegExp(`^knockport_step1_worker_packets_total\\{worker="${worker}"\\} (\\d+)$`, 'm'));
  return [of(first), of(first + 1)];
}

/** `vm`: also run in the stock-kernel VM (`npm run test:vm`); the host kernel covers the others. */
const BACKENDS = rowsForThisRun([
  {
    name: 'iptables-nft + NFQUEUE',
    firewall: 'iptables',
    capture: 'nfqueue',
    args: ['--iptables-variant', 'nft'],
    first: 0,
    vm: false,
    unavailable: () => undefined,
  },
  // The host runs NFLOG fanout; the VM only what it cannot (NFQUEUE below).
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', args: [] as string[], first: 1, vm: false, unavailable: () => undefined },
  {
    name: 'nftables + NFQUEUE',
    firewall: 'nftables',
    capture: 'nfqueue',
    args: [],
    first: 0,
    vm: true,
    unavailable: () => (skip ? undefined : nftQueueMissing()),
  },
]).filter((backend) => !leftToTheVm(FILE, backend.name, skip ? undefined : backend.unavailable()));

describe.skipIf(skip).each(BACKENDS)('step 1 on two worker threads: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;

  beforeAll(async () => {
    sandbox = createSandbox(`fo${backend.firewall.slice(0, 2)}${backend.capture.slice(3, 4)}`);
    for (const src of [...v4Sources, ...RACERS]) sandbox.client.ip('addr', 'add', `${src}/24`, 'dev', IF.clientWan);
    for (const src of v6Sources) sandbox.client.ip('addr', 'add', `${src}/64`, 'dev', IF.clientWan, 'nodad');
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.firewall, backend.capture));
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug', ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') console.log(daemon.output.slice(-40).join('\n'));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('reads two queues (log groups), one worker thread each', () => {
    const ready = JSON.parse(daemon.output.find((line) => line.includes('knock-port ready'))!) as { step1Workers: number; queue: number };
    expect(ready).toMatchObject({ step1Workers: 2, queue: backend.first });
    expect(sandbox.gw.exec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')])).toBe('healthy\n');
  });

  it('grants every knock of a burst from many addresses exactly once, with both workers at work', async () => {
    const sources = [...v4Sources, ...v6Sources];
    knockAll(sandbox, sources, `app=svc&access_key=${BOB_KEY}`);
    await waitFor(() => grants(daemon).filter((g) => g.user === 'bob').length >= sources.length, scaled(10_000), 100);
    // Late retransmissions had their time: none may add a grant.
    await new Promise((resolve) => setTimeout(resolve, scaled(1500)));
    const byIp = new Map<string, number>();
    for (const grant of grants(daemon).filter((g) => g.user === 'bob')) byIp.set(grant.ip, (byIp.get(grant.ip) ?? 0) + 1);
    expect([...byIp.keys()].sort()).toEqual([...sources].sort());
    expect([...byIp.values()].every((count) => count === 1)).toBe(true);

    expect(metric(sandbox, /^knockport_step1_packets_total\{outcome="granted",reason=""\} (\d+)$/m)).toBe(sources.length);
    const [first, second] = workerPackets(sandbox, backend.first);
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(0);
    expect(metric(sandbox, /^knockport_step1_workers (\d+)$/m)).toBe(2);
  });

  // The daemon counts packets per worker, not outcomes: each sender's SYN and knock leave from its
  // pinned CPU and reach that CPU's worker, and both workers' counters must rise with the race.
  // The shared code store does not depend on how packets reach the workers: the host runs it.
  itOnHost('grants one otp knock sent twice at once, from two addresses pinned to the two workers, once; both workers inspect the race', async () => {
    // The daemon accepts the code of the previous, current and next time step: this one stays valid
    // for the whole next step too, far longer than the race takes.
    const before = grants(daemon).filter((g) => g.user === 'alice').length;
    const packetsBefore = workerPackets(sandbox, backend.first);
    knockAll(sandbox, RACERS, `app=svc&access_key=${ALICE.http}&otp=${totpAt(ALICE.otp, Date.now() / 1000)}`);
    await waitFor(() => daemon.output.some((line) => line.includes('"reason":"bad-otp"')), scaled(3000), 100);
    await new Promise((resolve) => setTimeout(resolve, scaled(1000)));
    const alice = grants(daemon)
      .filter((g) => g.user === 'alice')
      .slice(before);
    expect(alice).toHaveLength(1);
    expect(RACERS).toContain(alice[0]!.ip);
    expect(daemon.output.some((line) => line.includes('"reason":"bad-otp"'))).toBe(true);
    const packetsAfter = workerPackets(sandbox, backend.first);
    const inspected = packetsAfter.map((after, worker) => after - packetsBefore[worker]!);
    expect(
      inspected.every((count) => count > 0),
      `step-1 packets each worker inspected during the race: ${inspected.join(', ')}`,
    ).toBe(true);
  });

  it('SIGHUP to one worker and back to two: knocks are granted throughout, the worker gauge follows', async () => {
    const original = configYaml(sandbox, backend.firewall, backend.capture);
    const reload = async (yaml: string, workers: number, sources: string[]) => {
      const reloads = daemon.output.filter((line) => line.includes('config reloaded')).length;
      writeFile(sandbox, 'config.yaml', yaml);
      daemon.proc.kill('SIGHUP');
      expect(await waitFor(() => daemon.output.filter((line) => line.includes('config reloaded')).length > reloads, scaled(10_000), 100)).toBe(true);
      expect(metric(sandbox, /^knockport_step1_workers (\d+)$/m)).toBe(workers);
      const body = `app=svc&access_key=${BOB_KEY}`;
      const knocks = sources.map((from) => knockStep1({ client: sandbox.client, daemon, url: step1Url(from), body, from, timeoutSeconds: scaled(3) }));
      expect(await Promise.all(knocks)).toEqual(sources.map(() => true));
      for (const src of sources) expect(grants(daemon).filter((g) => g.ip === src && g.user === 'bob')).toHaveLength(1);
    };
    // The budget carries over a reload: these sources have not knocked yet, so they are within theirs.
    await reload(original.replace('step1_workers: 2', 'step1_workers: 1'), 1, [ADDR.client4, ADDR.client4b]);
    await reload(original, 2, [ADDR.client6, RACERS[0]!]);
    expect(daemon.output.some((line) => line.includes('config reload failed'))).toBe(false);
    expect(sandbox.gw.exec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')])).toBe('healthy\n');
  });
});
