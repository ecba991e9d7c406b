/**
 * The demo's steps, against the real daemon: each runs real commands in the namespaces,
 * prints them with their output, and checks that the outcome is the one knock-port promises.
 */
import { DEMO_APPS, DEMO_USER, SERVICE_SECONDS, STEP2_WINDOW_SECONDS, type DemoSecrets } from './config.js';
import { CLI_SCRIPT, type DaemonProcess } from './daemon-process.js';
import { DemoError } from './errors.js';
import { waitFor, type CommandResult, type Netns } from './netns.js';
import type { DemoReport } from './report.js';
import { ADDR, type Topology } from './topology.js';

export const DEMO_STEPS = [
  'The services are closed',
  'Step 1: the knock on the stealth port (plain HTTP)',
  'HTTPS is now open, for this client only',
  'Step 2: the HTTPS request',
  'The service answers',
  'A service on the LAN host, forwarded by the gateway',
  'The grants, as the daemon lists them',
  'Expiry: the grants run out in the kernel',
] as const;

export const GATEWAY_GREETING = 'hello from the web service on the gateway';
export const LAN_GREETING = `hello from the web service on the LAN host ${ADDR.lan4}`;

/** curl's exit code when its time limit (-m) ran out: what a dropped port looks like. */
const CURL_TIMED_OUT = 28;

export interface DemoContext {
  topology: Topology;
  daemon: DaemonProcess;
  secrets: DemoSecrets;
  cert: string;
  controlSocket: string;
  report: DemoReport;
}

type AppName = (typeof DEMO_APPS)[keyof typeof DEMO_APPS]['name'];

export async function runDemoSteps(ctx: DemoContext): Promise<void> {
  const steps: ((ctx: DemoContext) => Promise<void> | void)[] = [
    servicesClosed,
    knockStep1,
    step2PortAnswers,
    knockStep2,
    serviceAnswers,
    forwardedService,
    listGrants,
    expiry,
  ];
  for (const [index, step] of steps.entries()) {
    ctx.report.step(index + 1, DEMO_STEPS[index]!);
    await step(ctx);
  }
}

const gatewayUrl = (scheme: 'http' | 'https', path: string, port?: number, host: string = ADDR.gwWan4): string =>
  `${scheme}://${host.includes(':') ? `[${host}]` : host}${port === undefined ? '' : `:${port}`}${path}`;

function servicesClosed(ctx: DemoContext): void {
  ctx.report.note('Nothing is open yet: the gateway drops these packets, so curl gives up after 1 s.');
  const probes = [
    gatewayUrl('http', '/', DEMO_APPS.local.port),
    gatewayUrl('http', '/', DEMO_APPS.local.port, ADDR.gwWan6),
    gatewayUrl('http', '/', DEMO_APPS.forwarded.port),
  ];
  for (const url of probes) expectClosed(ctx, 1, curl(ctx, ctx.topology.client, ['-m', '1', url]), `${url} answered`);
  expectClosed(ctx, 1, curl(ctx, ctx.topology.client, ['-m', '1', '--cacert', ctx.cert, gatewayUrl('https', '/')]), 'the HTTPS port answered before any knock');
  ctx.report.passed('the services (IPv4 and IPv6) and the HTTPS port are closed: no answer, not even "connection refused"');
}

async function knockStep1(ctx: DemoContext): Promise<void> {
  ctx.report.note(`The client sends the step-1 path, app and key in one plain HTTP request to port 80 (curl -m 1: stop after 1 s).`);
  await sendStep1(ctx, 2, DEMO_APPS.local.name, () =>
    ctx.report.note(
      'Timed out, by design. No process listens on port 80: knock-port answered the TCP handshake itself,',
      'read the request from the single packet that carried it, and dropped it. Nothing ever answers,',
      'valid knock or not, so the port gives nothing away to a scanner or to someone guessing keys.',
      'The daemon logs what it decided:',
    ),
  );
  ctx.report.passed(`knock accepted; the gateway's HTTPS port is open to ${ADDR.client4} for ${STEP2_WINDOW_SECONDS} s`);
}

function step2PortAnswers(ctx: DemoContext): void {
  const fromClient = curl(ctx, ctx.topology.client, ['-m', '2', '--cacert', ctx.cert, gatewayUrl('https', '/')]);
  if (fromClient.code !== 0) fail(ctx, 3, `the HTTPS port did not answer ${ADDR.client4} after a valid knock (curl exit ${fromClient.code})`);
  ctx.report.note('It answers (404: only the secret step-2 path does anything). From another address, it stays closed:');
  const fromOther = curl(ctx, ctx.topology.client, ['-m', '1', '--interface', ADDR.client4b, '--cacert', ctx.cert, gatewayUrl('https', '/')]);
  expectClosed(ctx, 3, fromOther, `the HTTPS port answered ${ADDR.client4b}, which did not knock`);
  ctx.report.passed(`HTTPS answers ${ADDR.client4} and still drops everyone else`);
}

async function knockStep2(ctx: DemoContext): Promise<void> {
  ctx.report.note('Within those seconds, the client sends the step-2 path, app and second key over HTTPS:');
  await sendStep2(ctx, 4, DEMO_APPS.local.name);
  ctx.report.passed(`step 2 accepted (200 OK); port ${DEMO_APPS.local.port} is open to ${ADDR.client4} for ${SERVICE_SECONDS} s (user ${DEMO_USER})`);
}

function serviceAnswers(ctx: DemoContext): void {
  const result = curl(ctx, ctx.topology.client, ['-m', '2', gatewayUrl('http', '/', DEMO_APPS.local.port)]);
  if (!result.stdout.includes(GATEWAY_GREETING)) fail(ctx, 5, `the service did not answer after step 2 (curl exit ${result.code})`);
  ctx.report.passed(`the web service on the gateway answers ${ADDR.client4}`);
}

async function forwardedService(ctx: DemoContext): Promise<void> {
  const { forwarded } = DEMO_APPS;
  ctx.report.note(
    `App ${forwarded.name}: the gateway forwards its port ${forwarded.port} to ${ADDR.lan4}:${forwarded.destinationPort} (DNAT), only for granted clients.`,
    'The same two requests, with app=' + forwarded.name + ':',
  );
  await sendStep1(ctx, 6, forwarded.name);
  await sendStep2(ctx, 6, forwarded.name);
  const result = curl(ctx, ctx.topology.client, ['-m', '2', gatewayUrl('http', '/', forwarded.port)]);
  if (!result.stdout.includes(LAN_GREETING)) fail(ctx, 6, `the LAN host did not answer through the gateway (curl exit ${result.code})`);
  ctx.report.passed(`the LAN host answers through the gateway's port ${forwarded.port}`);
}

function listGrants(ctx: DemoContext): void {
  ctx.report.note('On the gateway, the daemon lists its grants over its control socket:');
  const listed = sessions(ctx, 7);
  const missing = Object.values(DEMO_APPS).filter(({ name }) => !grantRows(listed).some((row) => row.includes(name)));
  if (missing.length > 0) fail(ctx, 7, `knock-port sessions does not list the service grant of ${missing.map((a) => a.name).join(', ')}`);
  ctx.report.passed(`both service grants are listed, with the user and the seconds left`);
}

async function expiry(ctx: DemoContext): Promise<void> {
  ctx.report.note(`Waiting for the ${SERVICE_SECONDS}-second grants to run out...`);
  const urls = [gatewayUrl('http', '/', DEMO_APPS.local.port), gatewayUrl('http', '/', DEMO_APPS.forwarded.port)];
  const closed = () => urls.every((url) => ctx.topology.client.runCommand('curl', ['-sS', '-m', '1', url]).code === CURL_TIMED_OUT);
  if (!(await waitFor(closed, (SERVICE_SECONDS + 6) * 1000, 500)))
    fail(ctx, 8, `the services were still open more than ${SERVICE_SECONDS + 6} s after the grants`);
  for (const url of urls) expectClosed(ctx, 8, curl(ctx, ctx.topology.client, ['-m', '1', url]), `${url} is still open`);
  ctx.report.note('The kernel closed them on time (the grants are nftables set elements with a timeout):');
  const listed = sessions(ctx, 8);
  if (grantRows(listed).length > 0) fail(ctx, 8, 'knock-port sessions still lists service grants after they expired');
  ctx.report.passed('closed again for new connections, with no action from the daemon');
}

/** Step 1 as a user types it: curl -m 1 times out, then the daemon's log shows the step-2 window it opened. */
async function sendStep1(ctx: DemoContext, step: number, app: AppName, explain?: () => void): Promise<void> {
  const before = ctx.daemon.output.length;
  const body = `app=${app}&access_key=${ctx.secrets.step1Key}`;
  const result = curl(ctx, ctx.topology.client, ['-m', '1', '-d', body, gatewayUrl('http', ctx.secrets.step1Path)]);
  expectClosed(ctx, step, result, 'the step-1 port answered, which knock-port never does');
  explain?.();
  await showGrantLog(ctx, step, before, app, 'step2');
}

async function sendStep2(ctx: DemoContext, step: number, app: AppName): Promise<void> {
  const before = ctx.daemon.output.length;
  const body = `app=${app}&access_key=${ctx.secrets.step2Key}`;
  const result = curl(ctx, ctx.topology.client, ['-m', '2', '--cacert', ctx.cert, '-d', body, gatewayUrl('https', ctx.secrets.step2Path)]);
  if (result.stdout.trim() !== 'OK')
    fail(ctx, step, `step 2 for ${app} was not accepted (curl exit ${result.code}: ${(result.stdout + result.stderr).trim()})`);
  await showGrantLog(ctx, step, before, app, 'service');
}

/** Waits for the daemon's "granted" log line for this client, app and step, and shows it. */
async function showGrantLog(ctx: DemoContext, step: number, from: number, app: AppName, grant: 'step2' | 'service'): Promise<void> {
  const matches = (line: string) =>
    line.includes('"msg":"granted"') && line.includes(`"ip":"${ADDR.client4}"`) && line.includes(`"app":"${app}"`) && line.includes(`"step":"${grant}"`);
  const find = () => ctx.daemon.output.slice(from).find(matches);
  if (!(await waitFor(() => find() !== undefined, 3000))) fail(ctx, step, `the daemon logged no ${grant} grant for ${app}`);
  ctx.report.note(`gateway log: ${find()!}`);
}

function curl(ctx: DemoContext, host: Netns, args: string[]): CommandResult {
  const argv = ['curl', '-sS', ...args];
  const result = host.runCommand('curl', argv.slice(1), { timeoutMs: 15_000 });
  ctx.report.command(host === ctx.topology.gw ? 'gateway' : 'client', argv, result.stdout + result.stderr);
  return result;
}

function sessions(ctx: DemoContext, step: number): string {
  const result = ctx.topology.gw.runCommand(process.execPath, [CLI_SCRIPT, 'sessions', '--socket', ctx.controlSocket], { timeoutMs: 10_000 });
  ctx.report.command('gateway', ['knock-port', 'sessions', '--socket', ctx.controlSocket], result.stdout + result.stderr);
  if (result.code !== 0) fail(ctx, step, `knock-port sessions failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** Table rows of service grants (step-2 windows left aside). */
function grantRows(table: string): string[] {
  return table.split('\n').filter((row) => /\sservice\s/.test(row));
}

function expectClosed(ctx: DemoContext, step: number, result: CommandResult, whatWentWrong: string): void {
  if (result.code !== CURL_TIMED_OUT) fail(ctx, step, `${whatWentWrong} (curl exit ${result.code}, expected ${CURL_TIMED_OUT}: timed out)`);
}

function fail(ctx: DemoContext, step: number, what: string): never {
  const log = ctx.daemon.output
    .slice(-8)
    .map((line) => `  ${line}`)
    .join('\n');
  throw new DemoError(`step ${step}/${DEMO_STEPS.length} (${DEMO_STEPS[step - 1]}) failed: ${what}.\nLast daemon log lines:\n${log}`);
}
