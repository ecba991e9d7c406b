/**
 * A reload that cannot be applied leaves the daemon running on the previous config: SIGHUP to
 * an HTTPS port another process holds, and to a queue number (NFQUEUE) or log group (NFLOG)
 * another process holds, is logged as an error, and knocks keep working on the old port and
 * queue. A later reload that can be applied still is. The real daemon in namespaces this test
 * creates; the processes holding the port and the queue run in the gateway's namespace.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { announceSkip, kernelSkipReason, waitFor, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, IF, REPO_ROOT, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/reload-failures', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl']));

const STEP1_PATH = '/rl-knock-61c0ae';
const STEP2_PATH = '/rl-open-93d4f2';
const HTTP_KEY = 'reload-http-key-4e1b7c';
const HTTPS_KEY = 'reload-https-key-a25f90';
const HELD_PORT = 8443;
const HELD_NUMBER = 7;
const STEP1_SECONDS = scaled(1);
const STEP2_SECONDS = scaled(2);
/** A fourth client address, on the client's side of the wire, for the last knock. */
const CLIENT4C = '192.0.2.4';

const BACKENDS = [
  { name: 'nftables + NFLOG', firewall: 'nftables', capture: 'nflog', numberKey: 'nflog_group', args: [] as string[] },
  { name: 'iptables-nft + NFQUEUE', firewall: 'iptables', capture: 'nfqueue', numberKey: 'queue_num', args: ['--iptables-variant', 'nft'] },
] as const;

/** A process in `ns` that holds something (a port, a queue), until killed; resolves once it does. */
async function holder(ns: Netns, script: string): Promise<ChildProcess> {
  const child = ns.spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const held = await waitFor(() => output.includes('holding') || child.exitCode !== null, scaled(10_000));
  if (!held || !output.includes('holding')) {
    child.kill('SIGKILL');
    throw new Error(`holder did not start: ${output}`);
  }
  return child;
}

const holdPort = (ns: Netns) =>
  holder(
    ns,
    `import { createServer } from 'node:net'; createServer().listen({ port: ${HELD_PORT}, host: '::', ipv6Only: false }, () => console.log('holding'));`,
  );

function holdCapture(ns: Netns, capture: 'nflog' | 'nfqueue'): Promise<ChildProcess> {
  const open =
    capture === 'nflog'
      ? `const { NflogSocket } = await import(${JSON.stringify(join(REPO_ROOT, 'dist/capture/nflog.js'))}); NflogSocket.open({ group: ${HELD_NUMBER} }, () => {});`
      : `const { NfqueueSocket } = await import(${JSON.stringify(join(REPO_ROOT, 'dist/capture/nfqueue.js'))}); NfqueueSocket.open({ queue: ${HELD_NUMBER} }, (batch, q) => q.dropBatch(batch));`;
  return holder(ns, `${open} console.log('holding'); setInterval(() => {}, 60_000);`);
}

describe.each(BACKENDS)('reload failures: $name', (backend) => {
  if (skip) {
    it.skip('not run here (reason printed above)', () => {});
    return;
  }
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;
  const holders: ChildProcess[] = [];

  const config = (settings: Record<string, number> = {}) =>
    `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: backend.firewall, capture: backend.capture, https_port: 443, ...settings })}svc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  duration: 30
  step2_https_duration: 30
`;

  /** Both steps from `from`, step 2 on `port`; the step-2 status. */
  const knock = (from: string, port = 443): string => {
    const host = from.includes(':') ? `[${ADDR.gwWan6}]` : ADDR.gwWan4;
    curl(sandbox.client, ['-d', `app=svc&access_key=${HTTP_KEY}`, '--interface', from, `http://${host}${STEP1_PATH}`], STEP1_SECONDS);
    return curl(sandbox.client, ['-k', '-d', `app=svc&access_key=${HTTPS_KEY}`, '--interface', from, `https://${host}:${port}${STEP2_PATH}`], STEP2_SECONDS)
      .status;
  };

  const reloadTo = async (settings: Record<string, number>, expected: RegExp): Promise<void> => {
    writeFileSync(configPath, config(settings));
    const seen = daemon.output.length;
    daemon.proc.kill('SIGHUP');
    expect(
      await waitFor(() => daemon.output.slice(seen).some((line) => expected.test(line)), scaled(8000)),
      `log matching ${expected}:\n${daemon.output.slice(seen).join('\n')}`,
    ).toBe(true);
  };

  const health = () => sandbox.gw.tryExec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')]);
  const healthy = () => health().ok;
  /** `health` fails, naming the failed reload, until a reload succeeds. */
  const expectReloadProblem = () => {
    const report = health();
    expect(report.ok, report.out).toBe(false);
    expect(report.out + report.err).toMatch(/the config reload at \S+ failed: still running on the previous config/);
  };

  beforeAll(async () => {
    sandbox = createSandbox(backend.capture === 'nfqueue' ? 'rlq' : 'rll');
    sandbox.client.ip('addr', 'add', `${CLIENT4C}/24`, 'dev', IF.clientWan);
    configPath = writeFile(sandbox, 'config.yaml', config());
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterEach((ctx) => {
    for (const child of holders.splice(0)) child.kill('SIGKILL');
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') console.log(daemon.output.slice(-30).join('\n'));
  });

  afterAll(async () => {
    for (const child of holders.splice(0)) child.kill('SIGKILL');
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('works before any reload', () => {
    expect(knock(ADDR.client4)).toBe('200');
    expect(healthy()).toBe(true);
  });

  it('an HTTPS port another process holds: error logged, still serving on the old port', async () => {
    holders.push(await holdPort(sandbox.gw));
    await reloadTo({ https_port: HELD_PORT }, /config reload failed while opening the HTTPS listener; still running on the previous config/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(daemon.proc.exitCode).toBeNull();
    expect(daemon.output.join('\n')).toMatch(/EADDRINUSE/);
    expect(knock(ADDR.client4b)).toBe('200');
    expectReloadProblem();
  });

  it(`a ${backend.capture === 'nflog' ? 'log group' : 'queue number'} another process holds: error logged, knocks still captured on the old one`, async () => {
    holders.push(await holdCapture(sandbox.gw, backend.capture));
    await reloadTo({ [backend.numberKey]: HELD_NUMBER }, /config reload failed while opening the step-1 capture; still running on the previous config/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(daemon.proc.exitCode).toBeNull();
    expect(knock(ADDR.client6)).toBe('200');
    expectReloadProblem();
  });

  it('a reload that can be applied still is: the HTTPS port moves once it is free', async () => {
    await reloadTo({ https_port: HELD_PORT }, /config reloaded/);
    expect(knock(CLIENT4C, HELD_PORT)).toBe('200');
    expect(healthy()).toBe(true);
  });
});
