/**
 * `knock-port knock` (the real CLI, in the client namespace) against the real daemon in the
 * gateway namespace: exit codes scripts rely on, --wait, keys from a file and from the
 * environment, the TOTP token (refused like a wrong key when missing, --totp without a
 * terminal, asked on a real pseudo-terminal, given with --token), and IPv6.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hotp, newTotpSecret } from '../../../src/auth/totp.js';
import { base32Decode, TOTP_PERIOD_SECONDS } from '../../../src/shared/otp-format.js';
import { shellLine } from '../../../src/demo/report.js';
import { announceSkip, kernelSkipReason, tcpOpen, waitFor, type Netns } from '../../helpers/netns.js';
import { ADDR, CLI, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';

const skip = announceSkip('client/knock', kernelSkipReason(['ip', 'nft', 'openssl', 'script']));

const STEP1_PATH = '/knock-client-5b1e07';
const STEP2_PATH = '/step2-client-93d0aa';
const SERVICE_PORT = 8080;
const ALICE = { http: 'alice-http-key-0123456789', https: 'alice-https-key-0123456789' };
const BOB = { http: 'bob-http-key-0123456789', https: 'bob-https-key-0123456789', totp: newTotpSecret() };

function configYaml(sandbox: Sandbox): string {
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH })}svc:
  port: ${SERVICE_PORT}
  duration: 60
  step2_https_duration: 5
  users:
    - name: alice
      access_key_http: ${ALICE.http}
      access_key_https: ${ALICE.https}
    - name: bob
      access_key_http: ${BOB.http}
      access_key_https: ${BOB.https}
      totp_secret: ${BOB.totp}
`;
}

/** A dual-stack TCP service on the gateway that survives client resets. */
function startService(gw: Netns): void {
  const script = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end('hello\\n'); })
    .listen({ port: ${SERVICE_PORT}, host: '::', ipv6Only: false });`;
  gw.spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

/** TOTP codes already sent for bob: each works once, so every knock takes a fresh one. */
const usedCounters = new Set<number>();

/** A code valid for the next few seconds that was not used yet (the daemon accepts one period either side). */
function freshBobCode(): string {
  const now = Math.floor(Date.now() / 1000 / TOTP_PERIOD_SECONDS);
  const counter = [now, now + 1].find((c) => !usedCounters.has(c))!;
  usedCounters.add(counter);
  return hotp(base32Decode(BOB.totp)!, counter);
}

describe.skipIf(skip)('knock-port knock against the real daemon', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let aliceKeys: string;
  const step1Url = `http://${ADDR.gwWan4}${STEP1_PATH}`;
  const step2Url = `https://${ADDR.gwWan4}${STEP2_PATH}`;
  /** The environment of the test, without any knock-port secret it may carry. */
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KNOCK_PORT_')));
  const bobEnv = { ...cleanEnv, KNOCK_PORT_HTTP_KEY: BOB.http, KNOCK_PORT_HTTPS_KEY: BOB.https };

  /** Runs `knock-port knock ARGS` in the client namespace, stdin not a terminal. */
  function knock(args: string[], env: NodeJS.ProcessEnv = cleanEnv) {
    return sandbox.client.runCommand(process.execPath, [CLI, 'knock', ...args], { env, timeoutMs: 30_000 });
  }

  beforeAll(async () => {
    sandbox = createSandbox('kcl');
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox));
    aliceKeys = writeFile(sandbox, 'alice.keys', `http_key=${ALICE.http}\nhttps_key=${ALICE.https}\n`);
    startService(sandbox.gw);
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('a wrong step-1 key: exit 4, the HTTPS port never opens', () => {
    const r = knock([
      '--url',
      step1Url,
      '--url',
      step2Url,
      '--app',
      'svc',
      '--http-key',
      'not-the-step1-key-123',
      '--https-key',
      ALICE.https,
      '--ca',
      sandbox.cert,
      '--step2-connect-timeout',
      '1',
    ]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('never opened');
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
  });

  it('with --wait, exit 0 once the service port accepts connections (keys from a key file)', () => {
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT, 500)).toBe(false);
    const r = knock([
      '--url',
      step1Url,
      '--url',
      step2Url,
      '--app',
      'svc',
      '--key-file',
      aliceKeys,
      '--ca',
      sandbox.cert,
      '--service-port',
      String(SERVICE_PORT),
      '--wait',
      '10',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`service port ${SERVICE_PORT} is open`);
    expect(r.stdout).toBe('');
    expect(tcpOpen(sandbox.client, ADDR.gwWan4, SERVICE_PORT)).toBe(true);
  });

  it('a wrong step-2 key: exit 5 (403)', () => {
    const r = knock([
      '--url',
      step1Url,
      '--url',
      step2Url,
      '--app',
      'svc',
      '--key-file',
      aliceKeys,
      '--https-key',
      'not-the-step2-key-123',
      '--ca',
      sandbox.cert,
    ]);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('403');
  });

  it('a certificate it cannot verify: exit 9, naming --ca and --insecure', () => {
    const r = knock(['--url', step1Url, '--url', step2Url, '--app', 'svc', '--key-file', aliceKeys]);
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(/--ca FILE.*--insecure/);
  });

  it('a TOTP user without --token: exit 5 (403, as a wrong key) naming --totp; with --totp and no terminal: exit 6, saying how to give it', () => {
    const base = ['--url', step1Url, '--url', step2Url, '--app', 'svc', '--ca', sandbox.cert];
    const refused = knock(base, bobEnv);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('--totp');
    const r = knock([...base, '--totp'], bobEnv);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('--token');
  });

  it('a TOTP user with --totp on a terminal: asked for the token before knocking, then exit 0', async () => {
    // `script` gives the client a real pseudo-terminal; the test types the code at the prompt.
    const command = shellLine([
      'ip',
      'netns',
      'exec',
      sandbox.client.name,
      process.execPath,
      CLI,
      'knock',
      '--url',
      step1Url,
      '--url',
      step2Url,
      '--app',
      'svc',
      '--ca',
      sandbox.cert,
      '--totp',
    ]);
    const session = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { env: bobEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    session.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => session.once('close', resolve));
    try {
      expect(await waitFor(() => screen.includes('TOTP token: '), 15_000)).toBe(true);
      session.stdin.write(`${freshBobCode()}\n`);
      expect(await Promise.race([exit, new Promise((r) => setTimeout(() => r('timeout'), 15_000))])).toBe(0);
      expect(screen).toContain('accepted the knock');
    } finally {
      session.kill('SIGKILL');
    }
  });

  it('a TOTP user with --token: exit 0; the same code a second time: exit 5', () => {
    const token = freshBobCode();
    const args = ['--url', step1Url, '--url', step2Url, '--app', 'svc', '--ca', sandbox.cert, '--token', token];
    expect(knock(args, bobEnv).code).toBe(0);
    const replayed = knock(args, bobEnv);
    expect(replayed.code).toBe(5);
    expect(replayed.stderr).toMatch(/refused the (token|knock)/);
  });

  it('over IPv6 (-6 with --host and the path flags): the service opens for the IPv6 address', () => {
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT, 500)).toBe(false);
    const r = knock([
      '--host',
      ADDR.gwWan6,
      '-6',
      '--http-path',
      STEP1_PATH,
      '--https-path',
      STEP2_PATH,
      '--app',
      'svc',
      '--key-file',
      aliceKeys,
      '--ca',
      sandbox.cert,
      '--service-port',
      String(SERVICE_PORT),
      '--wait',
      '10',
    ]);
    expect(r.code).toBe(0);
    expect(tcpOpen(sandbox.client, ADDR.gwWan6, SERVICE_PORT)).toBe(true);
  });
});
