import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpAt } from '../../../src/auth/totp.js';
import { registerKnock } from '../../../src/cli/commands/knock.js';
import { KnockExitCode } from '../../../src/client/exit-codes.js';
import { runCli, type CliInput } from './cli-harness.js';
import { freePort, makeCertificate, Step1Recorder, Step2Server, STEP2_TOKEN, type TestCertificate } from './gateway-fakes.js';

// The client against stand-ins on loopback: a silent TCP server for the stealth step-1 port
// (it records what arrives) and an HTTPS server answering as step 2 would. The real daemon
// in network namespaces is exercised by the end-to-end tests.

const HTTP_KEY = 'k1 & =+%/é-http';
const HTTPS_KEY = 'k2-https-0123456789';

let certificate: TestCertificate;
let step1: Step1Recorder;
let step2: Step2Server;

beforeAll(async () => {
  certificate = makeCertificate();
  step1 = await Step1Recorder.listen();
  step2 = await Step2Server.listen(certificate);
});

afterAll(async () => {
  await step1?.close();
  await step2?.close();
  certificate?.remove();
});

function knockArgs(app: string, extra: string[] = []): string[] {
  return [
    'knock',
    '--url',
    `http://127.0.0.1:${step1.port}/knock-one`,
    '--url',
    `https://127.0.0.1:${step2.port}/knock-two`,
    '--app',
    app,
    '--ca',
    certificate.certPath,
    '--step1-wait',
    '0.05',
    '--step2-connect-timeout',
    '0.5',
    ...extra,
  ];
}

const withKeys: CliInput = { env: { KNOCK_PORT_HTTP_KEY: HTTP_KEY, KNOCK_PORT_HTTPS_KEY: HTTPS_KEY } };

describe('knock-port knock, step 1', () => {
  it('sends the whole request in one segment, exactly as the daemon expects it', async () => {
    const before = step1.connections.length;
    const run = await runCli(registerKnock, knockArgs('vpn', ['--http-key', HTTP_KEY, '--https-key', HTTPS_KEY]));
    expect(run.exitCode).toBe(KnockExitCode.ok);
    expect(step1.connections.length).toBe(before + 1);
    const chunks = step1.connections.at(-1)!;
    expect(chunks).toHaveLength(1);
    const body = 'app=vpn&access_key=k1+%26+%3D%2B%25%2F%C3%A9-http';
    expect(chunks[0]!.toString('utf8')).toBe(
      `POST /knock-one HTTP/1.1\r\nHost: 127.0.0.1:${step1.port}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(new URLSearchParams(body).get('access_key')).toBe(HTTP_KEY);
  });

  it('closes with a FIN, never a RST, even when something on the port answers', async () => {
    const quiet = await runCli(registerKnock, knockArgs('vpn'), withKeys);
    expect(quiet.exitCode).toBe(KnockExitCode.ok);
    expect(quiet.stderr).toContain('no answer, by design');
    step1.answer = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nOK\n';
    try {
      const answered = await runCli(registerKnock, knockArgs('vpn'), withKeys);
      expect(answered.exitCode).toBe(KnockExitCode.ok);
      expect(answered.stderr).toContain('is this the right port?');
    } finally {
      step1.answer = undefined;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(step1.endings.slice(-2)).toEqual(['fin', 'fin']);
  });

  it('adds the one-time otp computed from --otp-secret', async () => {
    const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    const codesAround = [totpAt(secret, Date.now() / 1000)];
    const run = await runCli(registerKnock, knockArgs('vpn', ['--otp-secret', secret]), withKeys);
    codesAround.push(totpAt(secret, Date.now() / 1000));
    expect(run.exitCode).toBe(KnockExitCode.ok);
    const request = step1.connections.at(-1)!.join('');
    const form = new URLSearchParams(request.slice(request.indexOf('\r\n\r\n') + 4));
    expect(codesAround).toContain(form.get('otp'));
  });

  it('exits 3 when the step-1 port cannot be reached', async () => {
    const closed = await freePort();
    const run = await runCli(
      registerKnock,
      ['knock', '--host', '127.0.0.1', '--http-port', String(closed), '--http-path', '/a', '--https-path', '/b', '--app', 'vpn'],
      withKeys,
    );
    expect(run.exitCode).toBe(KnockExitCode.step1Unreachable);
    expect(run.stderr).toContain(`cannot connect to 127.0.0.1 port ${closed}`);
  });
});

describe('knock-port knock, step 2', () => {
  it('posts app and step-2 key to the step-2 path and says so; keys never appear in the output', async () => {
    const before = step2.requests.length;
    const run = await runCli(registerKnock, knockArgs('vpn'), withKeys);
    expect(run.exitCode).toBe(KnockExitCode.ok);
    const request = step2.requests[before]!;
    expect(request.path).toBe('/knock-two');
    expect(request.host).toBe(`127.0.0.1:${step2.port}`);
    expect([...request.form]).toEqual([
      ['app', 'vpn'],
      ['access_key', HTTPS_KEY],
    ]);
    expect(run.stderr).toContain('accepted');
    expect(run.stdout + run.stderr).not.toContain(HTTPS_KEY);
    expect(run.stdout + run.stderr).not.toContain('k1');
  });

  it.each([
    ['forbidden', KnockExitCode.forbidden, '403'],
    ['busy', KnockExitCode.rateLimited, '429'],
    ['oldpath', KnockExitCode.failed, '404: the step-2 path is wrong'],
    ['odd', KnockExitCode.failed, 'HTTP 500'],
  ])('maps app %s to exit code %i', async (app, exitCode, message) => {
    const run = await runCli(registerKnock, knockArgs(app), withKeys);
    expect(run.exitCode).toBe(exitCode);
    expect(run.stderr).toContain(message);
  });

  it('a 403 names every cause the one answer may have, never one of them alone', async () => {
    const run = await runCli(registerKnock, knockArgs('forbidden'), withKeys);
    expect(run.exitCode).toBe(KnockExitCode.forbidden);
    for (const cause of ['wrong step-2 path, app or key', 'no step-2 window for this app and user from this address']) expect(run.stderr).toContain(cause);
  });

  it('a TOTP user knocking without a token is refused (403) like a wrong key, with a hint about --totp', async () => {
    const run = await runCli(registerKnock, knockArgs('totp'), { ...withKeys, stdinIsTTY: true });
    expect(run.exitCode).toBe(KnockExitCode.forbidden);
    expect(run.stderr).toContain('--totp');
    expect(run.asked).toEqual([]);
  });

  it('with --totp at a terminal asks for the token before knocking and sends step 2 once, with it', async () => {
    const steps1 = step1.connections.length;
    const before = step2.requests.length;
    const run = await runCli(registerKnock, knockArgs('totp', ['--totp']), { ...withKeys, stdinIsTTY: true, answers: [` ${STEP2_TOKEN} `] });
    expect(run.exitCode).toBe(KnockExitCode.ok);
    expect(run.asked).toEqual(['TOTP token: ']);
    expect(step1.connections.length).toBe(steps1 + 1);
    expect(step2.requests.slice(before).map((r) => r.form.get('token'))).toEqual([STEP2_TOKEN]);
  });

  it('with --totp (or totp=yes in the key file) and no terminal exits 6 before knocking, saying how to give the token', async () => {
    const steps1 = step1.connections.length;
    const flagged = await runCli(registerKnock, knockArgs('totp', ['--totp']), withKeys);
    expect(flagged.exitCode).toBe(KnockExitCode.tokenRequired);
    expect(flagged.stderr).toContain('--token');
    const keyFile = join(certificate.dir, 'totp.keys');
    writeFileSync(keyFile, `http_key=${HTTP_KEY}\nhttps_key=${HTTPS_KEY}\ntotp=yes\n`, { mode: 0o600 });
    const fromFile = await runCli(registerKnock, knockArgs('totp', ['--key-file', keyFile]));
    expect(fromFile.exitCode).toBe(KnockExitCode.tokenRequired);
    expect(step1.connections.length).toBe(steps1);
  });

  it('still asks on a 401 from a gateway of an earlier version, and sends step 2 again with the token', async () => {
    const before = step2.requests.length;
    const run = await runCli(registerKnock, knockArgs('oldtotp'), { ...withKeys, stdinIsTTY: true, answers: [` ${STEP2_TOKEN} `] });
    expect(run.exitCode).toBe(KnockExitCode.ok);
    expect(run.asked).toHaveLength(1);
    expect(step2.requests.slice(before).map((r) => r.form.get('token'))).toEqual([null, STEP2_TOKEN]);
  });

  it('sends a token given up front (environment) without asking', async () => {
    const run = await runCli(registerKnock, knockArgs('totp'), { env: { ...withKeys.env, KNOCK_PORT_TOKEN: STEP2_TOKEN }, stdinIsTTY: true });
    expect(run.exitCode).toBe(KnockExitCode.ok);
    expect(run.asked).toEqual([]);
  });

  it('exits 9 when the certificate is not trusted, and passes with --insecure', async () => {
    const args = knockArgs('vpn').filter((arg, i, all) => arg !== '--ca' && all[i - 1] !== '--ca');
    const untrusted = await runCli(registerKnock, args, withKeys);
    expect(untrusted.exitCode).toBe(KnockExitCode.tlsFailed);
    expect(untrusted.stderr).toContain('--ca');
    const insecure = await runCli(registerKnock, [...args, '--insecure'], withKeys);
    expect(insecure.exitCode).toBe(KnockExitCode.ok);
  });

  it('exits 4 when the HTTPS port never opens, within the connect window', async () => {
    const closed = await freePort();
    const started = Date.now();
    const run = await runCli(
      registerKnock,
      [...knockArgs('vpn').slice(0, 3), '--url', `https://127.0.0.1:${closed}/knock-two`, ...knockArgs('vpn').slice(5)],
      withKeys,
    );
    expect(run.exitCode).toBe(KnockExitCode.step2Unreachable);
    expect(run.stderr).toContain('never opened');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('keeps trying step 2 while the HTTPS port opens after the knock', async () => {
    const lateStep1 = await Step1Recorder.listen();
    const step2Port = await freePort();
    let late: Promise<Step2Server> | undefined;
    lateStep1.whenKnocked(() => {
      late ??= new Promise((resolve) => setTimeout(() => resolve(Step2Server.listen(certificate, step2Port)), 300));
    });
    try {
      const run = await runCli(
        registerKnock,
        [
          'knock',
          '--host',
          'localhost',
          '-4',
          '--http-port',
          String(lateStep1.port),
          '--https-port',
          String(step2Port),
          '--http-path',
          '/a',
          '--https-path',
          '/b',
          '--app',
          'vpn',
          '--ca',
          certificate.certPath,
          '--step1-wait',
          '0',
          '--step2-connect-timeout',
          '2',
        ],
        withKeys,
      );
      expect(run.exitCode).toBe(KnockExitCode.ok);
      expect((await late!).requests).toHaveLength(1);
    } finally {
      await lateStep1.close();
      await (await late)?.close();
    }
  });

  it('knocks over IPv6 ([::1] URLs)', async () => {
    const step1v6 = await Step1Recorder.listen('::1');
    const step2v6 = await Step2Server.listen(certificate, 0, '::1');
    try {
      const run = await runCli(
        registerKnock,
        [
          'knock',
          '--url',
          `http://[::1]:${step1v6.port}/a`,
          '--url',
          `https://[::1]:${step2v6.port}/b`,
          '--app',
          'vpn',
          '--ca',
          certificate.certPath,
          '--step1-wait',
          '0',
        ],
        withKeys,
      );
      expect(run.exitCode).toBe(KnockExitCode.ok);
      expect(step1v6.connections[0]!.join('')).toContain(`\r\nHost: [::1]:${step1v6.port}\r\n`);
      expect(step2v6.requests[0]!.host).toBe(`[::1]:${step2v6.port}`);
    } finally {
      await step1v6.close();
      await step2v6.close();
    }
  });

  it('reads keys from --key-file', async () => {
    const file = join(certificate.dir, 'keys');
    writeFileSync(file, `http_key=${HTTP_KEY}\nhttps_key=${HTTPS_KEY}\n`, { mode: 0o600 });
    const before = step2.requests.length;
    const run = await runCli(registerKnock, knockArgs('vpn', ['--key-file', file]));
    expect(run.exitCode).toBe(KnockExitCode.ok);
    expect(step2.requests[before]!.form.get('access_key')).toBe(HTTPS_KEY);
    expect(run.stderr).not.toContain('warning');
  });
});

describe('knock-port knock --wait', () => {
  it('waits until the service port opens', async () => {
    const servicePort = await freePort();
    let service: Server | undefined;
    const opener = setTimeout(() => {
      service = createServer((socket) => socket.destroy()).listen(servicePort, '127.0.0.1');
    }, 400);
    try {
      const run = await runCli(registerKnock, knockArgs('vpn', ['--service-port', String(servicePort), '--wait', '5']), withKeys);
      expect(run.exitCode).toBe(KnockExitCode.ok);
      expect(run.stderr).toContain(`service port ${servicePort} is open`);
    } finally {
      clearTimeout(opener);
      await new Promise((resolve) => (service ? service.close(resolve) : resolve(undefined)));
    }
  });

  it('exits 8 when the service port stays closed, after about --wait seconds', async () => {
    const servicePort = await freePort();
    const started = Date.now();
    const run = await runCli(registerKnock, knockArgs('vpn', ['--service-port', String(servicePort), '--wait', '0.6']), withKeys);
    expect(run.exitCode).toBe(KnockExitCode.serviceNotOpen);
    expect(run.stderr).toContain(`service port ${servicePort} did not open within 0.6 s`);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('knock-port knock usage errors', () => {
  it.each([
    [['knock', '--host', 'gw', '--http-path', '/a', '--https-path', '/b'], '--app is required'],
    [['knock', '--bogus'], "unknown option '--bogus'"],
    [['knock', '--host', 'gw', '--http-path', '/a', '--https-path', '/b', '--app', 'x', '--wait'], '--wait needs --service-port'],
    [['knock', '--insecure', '--ca', 'x.pem'], 'cannot be used with'],
    [['knock', '--http-port', '70000'], 'port number'],
    [['knock', '--host', 'gw', '--https-path', '/b', '--app', 'x'], 'no step-1 path'],
    [['knock', '--host', 'gw', '--http-path', '/a', '--https-path', '/b', '--app', 'x', '--https-key', 'y'], 'KNOCK_PORT_HTTP_KEY'],
  ])('%j exits 2', async (args, message) => {
    const run = await runCli(registerKnock, args, args.includes('--https-key') ? {} : withKeys);
    expect(run.exitCode).toBe(KnockExitCode.usage);
    expect(run.stderr).toContain(message);
  });

  it('lists the exit codes in --help', async () => {
    const run = await runCli(registerKnock, ['knock', '--help']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/Exit codes:[\s\S]* 6 {2}a step-2 TOTP token is needed/);
  });
});
