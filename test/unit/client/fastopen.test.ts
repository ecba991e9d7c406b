import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNativeAddon, NativeAddonMissingError, type NativeAddon } from '../../../src/native/addon.js';
import { registerKnock } from '../../../src/cli/commands/knock.js';
import { KnockExitCode } from '../../../src/client/exit-codes.js';
import { FastOpenUnavailableError, MAX_SYN_REQUEST_BYTES, openFastOpenSocket } from '../../../src/client/fastopen.js';
import { buildStep1Request, MAX_STEP1_REQUEST_BYTES } from '../../../src/client/request.js';
import { FAST_OPEN_MAX_WAIT_MS, sendStep1 } from '../../../src/client/step1.js';
import { runCli, type CliInput } from './cli-harness.js';
import { makeCertificate, Step1Recorder, Step2Server, type TestCertificate } from './gateway-fakes.js';

// `knock --tcp-fastopen` on loopback. The recorder is an ordinary listener: it takes no data
// from a SYN, so the kernel resends the request right after the handshake and the bytes can
// be checked here. That they really travel inside the SYN, and what the daemon makes of it,
// is shown in network namespaces (test/kernel/step1/invisible.test.ts).

const HTTP_KEY = 'fast-open-http-key-0123';
const HTTPS_KEY = 'fast-open-https-key-4567';
const withKeys: CliInput = { env: { KNOCK_PORT_HTTP_KEY: HTTP_KEY, KNOCK_PORT_HTTPS_KEY: HTTPS_KEY } };

/** Why this host cannot open a client Fast Open socket, or undefined when it can. */
function fastOpenSkipReason(): string | undefined {
  try {
    loadNativeAddon();
  } catch {
    return 'the native addon is not built';
  }
  try {
    const value = Number(readFileSync('/proc/sys/net/ipv4/tcp_fastopen', 'utf8'));
    return (value & 1) === 1 ? undefined : 'net.ipv4.tcp_fastopen has client Fast Open disabled here';
  } catch {
    return 'no /proc/sys/net/ipv4/tcp_fastopen';
  }
}

function fakeAddon(fastOpenSocket?: NativeAddon['fastOpenSocket']): () => NativeAddon {
  return () => ({ abiVersion: 5, ...(fastOpenSocket ? { fastOpenSocket } : {}) }) as NativeAddon;
}

function errnoError(code: string, errno: number, syscall: string): Error {
  return Object.assign(new Error('cannot enable TCP Fast Open on the socket'), { code, errno, syscall });
}

describe('the Fast Open socket: what the user is told when it cannot be had', () => {
  it('an addon built before Fast Open support: rebuild it', () => {
    expect(() => openFastOpenSocket(4, fakeAddon())).toThrow(NativeAddonMissingError);
    expect(() => openFastOpenSocket(4, fakeAddon())).toThrow(/node-gyp rebuild/);
  });

  it('client Fast Open disabled by the sysctl: the command that enables it', () => {
    const open = fakeAddon(() => {
      throw errnoError('EOPNOTSUPP', 95, 'setsockopt TCP_FASTOPEN_CONNECT');
    });
    expect(() => openFastOpenSocket(6, open)).toThrow(FastOpenUnavailableError);
    expect(() => openFastOpenSocket(6, open)).toThrow('sudo sysctl -w net.ipv4.tcp_fastopen=1');
  });

  it('a kernel without cookie-less Fast Open: the version it needs', () => {
    const open = fakeAddon(() => {
      throw errnoError('ENOPROTOOPT', 92, 'setsockopt TCP_FASTOPEN_NO_COOKIE');
    });
    expect(() => openFastOpenSocket(4, open)).toThrow(/Linux 4\.15 or newer/);
  });

  it('sendStep1 lets the error through (the CLI prints it and exits 1), sending nothing', async () => {
    const plan = {
      address: '127.0.0.1',
      port: 9,
      request: Buffer.from('x'),
      connectTimeoutMs: 100,
      waitMs: 100,
      fastOpen: true,
      openFastOpen: () =>
        openFastOpenSocket(
          4,
          fakeAddon(() => {
            throw errnoError('EOPNOTSUPP', 95, 'setsockopt TCP_FASTOPEN_CONNECT');
          }),
        ),
    };
    await expect(sendStep1(plan)).rejects.toThrow(FastOpenUnavailableError);
  });

  it('a request that fits a segment but not a SYN is refused with the SYN limit', () => {
    const endpoint = { host: 'gw.example', port: 80, path: `/${'p'.repeat(1050)}` };
    const body = 'app=vpn&access_key=0123456789abcdef';
    const request = buildStep1Request(endpoint, body);
    expect(request.length).toBeGreaterThan(MAX_SYN_REQUEST_BYTES);
    expect(request.length).toBeLessThanOrEqual(MAX_STEP1_REQUEST_BYTES);
    expect(() => buildStep1Request(endpoint, body, MAX_SYN_REQUEST_BYTES)).toThrow(`more than fits one packet (${MAX_SYN_REQUEST_BYTES})`);
  });
});

const skipReason = fastOpenSkipReason();
if (skipReason) process.stderr.write(`\n*** SKIPPED knock --tcp-fastopen on loopback: ${skipReason}\n\n`);

describe.skipIf(skipReason !== undefined)('knock-port knock --tcp-fastopen on loopback', () => {
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

  it('sends the same single request as without it, then does step 2', async () => {
    const before = step1.connections.length;
    const run = await runCli(
      registerKnock,
      [
        'knock',
        '--tcp-fastopen',
        '--url',
        `http://127.0.0.1:${step1.port}/knock-one`,
        '--url',
        `https://127.0.0.1:${step2.port}/knock-two`,
        '--app',
        'vpn',
        '--ca',
        certificate.certPath,
        '--step1-wait',
        '0.2',
      ],
      withKeys,
    );
    expect(run.exitCode, run.stderr).toBe(KnockExitCode.ok);
    expect(run.stderr).toContain(`step 1: knock sent inside the SYN (TCP Fast Open) to http://127.0.0.1:${step1.port}/knock-one`);
    expect(step1.connections.length).toBe(before + 1);
    const chunks = step1.connections.at(-1)!;
    expect(chunks).toHaveLength(1);
    const body = `app=vpn&access_key=${HTTP_KEY}`;
    expect(chunks[0]!.toString('utf8')).toBe(
      `POST /knock-one HTTP/1.1\r\nHost: 127.0.0.1:${step1.port}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(step2.requests.at(-1)!.form.get('access_key')).toBe(HTTPS_KEY);
  });

  it('over IPv6', async () => {
    const step1v6 = await Step1Recorder.listen('::1');
    try {
      const run = await runCli(
        registerKnock,
        [
          'knock',
          '--tcp-fastopen',
          '--url',
          `http://[::1]:${step1v6.port}/a`,
          '--url',
          `https://127.0.0.1:${step2.port}/b`,
          '--app',
          'vpn',
          '--ca',
          certificate.certPath,
          '--step1-wait',
          '0.2',
        ],
        withKeys,
      );
      expect(run.exitCode, run.stderr).toBe(KnockExitCode.ok);
      expect(step1v6.connections[0]!.join('')).toContain(`\r\nHost: [::1]:${step1v6.port}\r\n`);
    } finally {
      await step1v6.close();
    }
  });

  it('keeps the socket no longer than FAST_OPEN_MAX_WAIT_MS, whatever --step1-wait says', async () => {
    const started = Date.now();
    const sent = await sendStep1({
      address: '127.0.0.1',
      port: step1.port,
      request: Buffer.from('POST / HTTP/1.1\r\n\r\n'),
      connectTimeoutMs: 1000,
      waitMs: 60_000,
      fastOpen: true,
    });
    expect(sent).toEqual({ sent: true, answered: false });
    expect(Date.now() - started).toBeGreaterThanOrEqual(FAST_OPEN_MAX_WAIT_MS - 50);
    expect(Date.now() - started).toBeLessThan(FAST_OPEN_MAX_WAIT_MS + 1000);
  });

  it('a request too large for a SYN: exit 2, naming the limit', async () => {
    const run = await runCli(
      registerKnock,
      [
        'knock',
        '--tcp-fastopen',
        '--host',
        '127.0.0.1',
        '--http-port',
        String(step1.port),
        '--http-path',
        `/${'p'.repeat(1100)}`,
        '--https-path',
        '/b',
        '--app',
        'vpn',
      ],
      withKeys,
    );
    expect(run.exitCode).toBe(KnockExitCode.usage);
    expect(run.stderr).toContain(`fits one packet (${MAX_SYN_REQUEST_BYTES})`);
  });
});
