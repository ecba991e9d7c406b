/**
 * `knock-port demo` as a newcomer runs it: the real CLI as a child process, as root, then
 * as an unprivileged user. It must pass every step, leave no namespace behind, and clean up
 * on SIGTERM (--keep) and on Ctrl-C in the middle of the steps.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEMO_STEPS } from '../../../src/demo/scenario.js';
import { listNamespaces } from '../../../src/demo/netns.js';
import { announceSkip, kernelSkipReason, run, tryRun, waitFor } from '../../helpers/netns.js';
import { CLI } from '../../helpers/sandbox.js';

const skip = announceSkip('demo/demo', kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'setpriv']));

interface DemoChild {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<boolean>;
}

function startDemo(args: string[], command: string[] = [process.execPath]): DemoChild {
  const proc = spawn(command[0]!, [...command.slice(1), CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForOutput: (pattern, timeoutMs) => waitFor(() => pattern.test(out) || proc.exitCode !== null, timeoutMs).then(() => pattern.test(out)),
  };
}

/** The namespace names the demo announces on its "namespaces:" line. */
function announcedNamespaces(stdout: string): string[] {
  const line = /^\s*namespaces:?\s+(.*)$/m.exec(stdout);
  return [...(line?.[1] ?? '').matchAll(/(kpdemo-[\w-]+)/g)].map((m) => m[1]!);
}

/** When an assertion failed mid-run: stop the demo as a user would, then remove whatever is left. */
async function stopAndSweep(demo: DemoChild): Promise<void> {
  if (demo.proc.exitCode === null && demo.proc.signalCode === null) {
    demo.proc.kill('SIGTERM');
    const stopped = await Promise.race([demo.exit.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 10_000))]);
    if (!stopped) demo.proc.kill('SIGKILL');
  }
  for (const name of announcedNamespaces(demo.stdout()).filter((n) => listNamespaces().includes(n))) {
    tryRun('ip', ['netns', 'pids', name])
      .out.split('\n')
      .filter(Boolean)
      .forEach((pid) => tryRun('kill', ['-9', pid]));
    tryRun('ip', ['netns', 'del', name]);
  }
}

const rootTables = () => run('nft', ['list', 'tables']);

describe.skipIf(skip)('knock-port demo', () => {
  it('walks through every step against the real daemon, stays up with --keep, and removes everything on SIGTERM', async () => {
    const tablesBefore = rootTables();
    const demo = startDemo(['--keep']);
    try {
      expect(await demo.waitForOutput(/stays up until Ctrl-C/, 60_000)).toBe(true);
      const out = demo.stdout();
      DEMO_STEPS.forEach((title, i) => expect(out).toContain(`[${i + 1}/${DEMO_STEPS.length}] ${title}`));
      expect(out.match(/^ {3}ok: /gm)).toHaveLength(DEMO_STEPS.length);
      expect(out).toContain(`Demo finished: all ${DEMO_STEPS.length} steps behaved as expected.`);
      // The exact curl commands, with the answers a user would see.
      expect(out).toMatch(/client\$ curl -sS -m 1 -d 'app=gateway-web&access_key=[0-9a-f]{32}' http:\/\/192\.0\.2\.1\/knock-[0-9a-f]+\n\s+curl: \(28\)/);
      expect(out).toMatch(/client\$ curl -sS -m 2 --cacert \S+ -d 'app=gateway-web&access_key=[0-9a-f]{32}' https:\/\/192\.0\.2\.1\/open-[0-9a-f]+\n\s+OK\n/);

      const made = announcedNamespaces(out);
      expect(made).toHaveLength(3);
      expect(listNamespaces()).toEqual(expect.arrayContaining(made));

      demo.proc.kill('SIGTERM');
      expect(await demo.exit).toBe(0);
      expect(listNamespaces().filter((name) => made.includes(name))).toEqual([]);
      expect(rootTables()).toBe(tablesBefore);
    } finally {
      await stopAndSweep(demo);
    }
  }, 90_000);

  it('Ctrl-C in the middle of the steps stops it with exit 130 and removes its namespaces', async () => {
    const demo = startDemo(['--quiet']);
    try {
      expect(await demo.waitForOutput(/^ok {2}\[1\/\d\]/m, 30_000)).toBe(true);
      const made = announcedNamespaces(demo.stdout());
      expect(made).toHaveLength(3);
      demo.proc.kill('SIGINT');
      expect(await demo.exit).toBe(130);
      expect(demo.stdout()).toContain('SIGINT: stopping the demo');
      expect(listNamespaces().filter((name) => made.includes(name))).toEqual([]);
    } finally {
      await stopAndSweep(demo);
    }
  }, 60_000);

  it('refuses to run without root, saying why, and creates nothing', async () => {
    // Only the demo's own names: other test files create and delete namespaces meanwhile.
    const demoNamespaces = () => listNamespaces().filter((name) => name.startsWith('kpdemo-'));
    const before = demoNamespaces();
    const nobody = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, 'demo'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(nobody.status).toBe(1);
    expect(nobody.stderr).toContain('the demo needs root');
    expect(nobody.stderr).toContain('sudo knock-port demo');
    expect(nobody.stdout).toBe('');
    expect(demoNamespaces()).toEqual(before);
  });
});
