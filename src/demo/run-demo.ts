/**
 * `knock-port demo`: builds the sandbox, starts the real daemon in it, runs the steps, and
 * removes everything on the way out: on success, on failure, and on Ctrl-C or SIGTERM.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_APPS, demoConfigYaml, randomDemoSecrets, type DemoSecrets } from './config.js';
import { spawnDaemon, type DaemonProcess } from './daemon-process.js';
import { DemoError } from './errors.js';
import { checkDemoPrerequisites } from './preflight.js';
import { DemoReport, shellLine } from './report.js';
import { DEMO_STEPS, GATEWAY_GREETING, LAN_GREETING, runDemoSteps } from './scenario.js';
import { startWebServer } from './services.js';
import { ADDR, createSelfSignedCert, createTopology, type Topology } from './topology.js';
import { waitFor } from './netns.js';

export interface DemoOptions {
  /** Leave the sandbox running after the steps, until Ctrl-C or SIGTERM. */
  keep: boolean;
  /** One line per step instead of the commands and explanations. */
  quiet: boolean;
}

const DAEMON_START_TIMEOUT_MS = 20_000;
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_NUMBER: Record<(typeof STOP_SIGNALS)[number], number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Everything the demo made, removed by `cleanup` (idempotent, synchronous so it also runs on exit). */
class DemoSandbox {
  topology?: Topology;
  daemon?: DaemonProcess;
  private cleaned = false;

  constructor(readonly dir: string) {}

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    // Deleting the namespaces kills the daemon and the services, and takes their firewall rules with them.
    this.topology?.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function runDemo(options: DemoOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  checkDemoPrerequisites();
  const report = new DemoReport(out, options.quiet, DEMO_STEPS.length);
  const sandbox = new DemoSandbox(mkdtempSync(join(tmpdir(), 'knock-port-demo-')));
  const onExit = () => sandbox.cleanup();
  // While the steps run, a signal ends the demo at once; once it only waits (--keep), it ends normally.
  let keeping: ((signal: NodeJS.Signals) => void) | undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => (keeping = resolve));
  let waiting = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (waiting) return keeping?.(signal);
    report.always(`\n${signal}: stopping the demo; removing its namespaces.`);
    sandbox.cleanup();
    process.exit(128 + SIGNAL_NUMBER[signal as (typeof STOP_SIGNALS)[number]]);
  };
  process.once('exit', onExit);
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  try {
    const secrets = randomDemoSecrets();
    const ctx = await setUp(sandbox, secrets, report);
    await runDemoSteps({ ...ctx, topology: sandbox.topology!, daemon: sandbox.daemon!, secrets, report });
    report.always(options.quiet ? 'demo finished: every step behaved as expected' : `\nDemo finished: all ${DEMO_STEPS.length} steps behaved as expected.`);
    if (options.keep) {
      waiting = true;
      await keepRunning(sandbox, secrets, ctx, report, stopped);
    }
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    process.off('exit', onExit);
    sandbox.cleanup();
    report.say(`Removed the demo's namespaces (${namespaceNames(sandbox).join(', ')}) and files.`);
  }
}

interface SetUpResult {
  cert: string;
  controlSocket: string;
  configPath: string;
}

async function setUp(sandbox: DemoSandbox, secrets: DemoSecrets, report: DemoReport): Promise<SetUpResult> {
  report.say(
    'knock-port demo',
    '',
    'A throwaway network on this machine, each host in its own network namespace: a gateway running',
    'the real knock-port daemon, a client on its WAN side and a LAN host behind it. Nothing outside',
    'these namespaces is touched, and everything is removed when the demo ends.',
    '',
    'Setting up',
  );
  try {
    sandbox.topology = createTopology({ gateway: 'demo-gw', client: 'demo-client', lan: 'demo-lan' });
  } catch (err) {
    throw new DemoError(`cannot create the demo's network namespaces: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
  }
  const { gw, client, lan } = sandbox.topology;
  report.setting('namespaces', `${gw.name} (gateway), ${client.name} (client), ${lan.name} (LAN host)`, { always: true });
  report.setting('addresses', `gateway ${ADDR.gwWan4} and ${ADDR.gwWan6}, client ${ADDR.client4} (also ${ADDR.client4b}) and ${ADDR.client6},`);
  report.say(`                LAN host ${ADDR.lan4} behind the gateway (documentation addresses, inside the namespaces only)`);

  const { cert, key } = createSelfSignedCert(sandbox.dir, 'knock-port demo gateway', [ADDR.gwWan4, ADDR.gwWan6]);
  const configPath = join(sandbox.dir, 'config.yaml');
  writeFileSync(configPath, demoConfigYaml(secrets, sandbox.dir), { mode: 0o600 });
  report.setting('config', `${configPath} (random paths and keys, made for this run)`);
  report.setting('certificate', `${cert} (self-signed, made now)`);

  startWebServer(gw, DEMO_APPS.local.port, GATEWAY_GREETING);
  startWebServer(lan, DEMO_APPS.forwarded.destinationPort, LAN_GREETING);
  await expectServiceUp(gw, DEMO_APPS.local.port);
  await expectServiceUp(lan, DEMO_APPS.forwarded.destinationPort);
  report.setting('services', `${DEMO_APPS.local.name}: a web server on the gateway, port ${DEMO_APPS.local.port}`);
  report.say(
    `                ${DEMO_APPS.forwarded.name}: a web server on the LAN host, ${ADDR.lan4}:${DEMO_APPS.forwarded.destinationPort}, reached through the gateway's port ${DEMO_APPS.forwarded.port}`,
  );

  const runArgs = ['-c', configPath, '--cert', cert, '--key', key];
  sandbox.daemon = spawnDaemon(gw, runArgs);
  const ready = await sandbox.daemon.waitForLog(/"msg":"knock-port ready"/, DAEMON_START_TIMEOUT_MS);
  if (!ready) {
    const log = sandbox.daemon.output
      .slice(-10)
      .map((line) => `  ${line}`)
      .join('\n');
    throw new DemoError(`the knock-port daemon did not start in the gateway namespace:\n${log || '  (no output)'}`);
  }
  report.setting('daemon', shellLine(['knock-port', 'run', ...runArgs]));
  report.say(
    `                running in the gateway namespace; ${describeCapture(sandbox.daemon.output)}`,
    '',
    `The commands below run in the client namespace (ip netns exec ${client.name} ...) or on the gateway.`,
  );
  return { cert, controlSocket: join(sandbox.dir, 'control.sock'), configPath };
}

async function expectServiceUp(ns: Topology['gw'], port: number): Promise<void> {
  const up = await waitFor(() => ns.runCommand('curl', ['-sS', '-m', '1', `http://127.0.0.1:${port}/`]).code === 0, 5000, 100);
  if (!up) throw new DemoError(`the demo's web server on port ${port} in ${ns.name} did not start`);
}

/** "firewall nftables, step-1 capture nflog", from the daemon's own start-up line. */
function describeCapture(log: readonly string[]): string {
  for (const line of log) {
    const fields = /"firewall":"(\w+)".*"capture":"(\w+)"/.exec(line);
    if (fields) return `firewall ${fields[1]}, step-1 capture ${fields[2]}`;
  }
  return 'ready';
}

async function keepRunning(sandbox: DemoSandbox, secrets: DemoSecrets, ctx: SetUpResult, report: DemoReport, stopped: Promise<NodeJS.Signals>): Promise<void> {
  const { client, gw } = sandbox.topology!;
  const inClient = (argv: string[]) => `  ${shellLine(['ip', 'netns', 'exec', client.name, ...argv])}`;
  const app = DEMO_APPS.local;
  report.always(
    [
      '',
      'The demo network stays up until Ctrl-C. Try it yourself, as root:',
      inClient(['curl', '-m', '1', '-d', `app=${app.name}&access_key=${secrets.step1Key}`, `http://${ADDR.gwWan4}${secrets.step1Path}`]),
      inClient(['curl', '--cacert', ctx.cert, '-d', `app=${app.name}&access_key=${secrets.step2Key}`, `https://${ADDR.gwWan4}${secrets.step2Path}`]),
      inClient(['curl', `http://${ADDR.gwWan4}:${app.port}/`]),
      `  ${shellLine(['knock-port', 'sessions', '--socket', ctx.controlSocket])}`,
      `  ${shellLine(['ip', 'netns', 'exec', gw.name, 'nft', 'list', 'table', 'inet', 'knockport'])}`,
      `  config: ${ctx.configPath}`,
    ].join('\n'),
  );
  const daemonExit = new Promise<'daemon-exited'>((resolve) => sandbox.daemon!.proc.once('exit', () => resolve('daemon-exited')));
  const why = await Promise.race([stopped, daemonExit]);
  if (why === 'daemon-exited') throw new DemoError(`the daemon stopped:\n${sandbox.daemon!.output.slice(-5).join('\n')}`);
  report.always(`\n${why}: stopping the demo.`);
}

function namespaceNames(sandbox: DemoSandbox): string[] {
  const t = sandbox.topology;
  return t ? [t.gw.name, t.client.name, t.lan.name] : [];
}
