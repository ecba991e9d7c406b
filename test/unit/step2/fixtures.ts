import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { digestKey } from '../../../src/config/key-digest.js';
import type { AppConfig, Config, User } from '../../../src/config/types.js';
import { fixtureConfig } from '../step1/fixture-config.js';

const run = promisify(execFile);

export const STEP2_PATH = '/step-2-s3cret';

/** A throwaway self-signed P-256 certificate for 127.0.0.1 and ::1. */
export async function throwawayCertificate(): Promise<{ cert: Buffer; key: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'knock-port-cert-'));
  try {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=knock-port-test',
      '-addext',
      'subjectAltName=IP:127.0.0.1,IP:::1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    return { cert: await readFile(join(dir, 'cert.pem')), key: await readFile(join(dir, 'key.pem')) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function user(name: string, index: number, step2Key: string, totpSecret?: string): User {
  const result: User = { name, index, step1Key: digestKey(`${name}-http-key`), step2Key: digestKey(step2Key) };
  if (totpSecret !== undefined) result.totpSecret = totpSecret;
  return result;
}

/** Two apps: vpn (alice, bob; bob has TOTP) and ssh (alice), on the step-1 tests' global settings. */
export function testConfig(totpSecret: string): Config {
  const base = fixtureConfig({ step2Path: STEP2_PATH, rateLimitPerMinute: 100 });
  const template = base.apps[0]!;
  const app = (name: string, port: number, users: User[]): AppConfig => ({ ...template, name, port, duration: 60, step2Duration: 10, users });
  return {
    ...base,
    source: 'test.yaml',
    apps: [
      app('vpn', 1194, [user('alice', 0, 'alice-vpn-https-key'), user('bob', 1, 'bob-vpn-https-key', totpSecret)]),
      app('ssh', 22, [user('alice', 0, 'alice-ssh-https-key')]),
    ],
  };
}

export async function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

export interface CurlResult {
  status: number;
  body: string;
  headers: string;
  seconds: number;
}

/** What a user sees: real curl, `-sk`, optional extra args; never throws on HTTP errors. */
export async function curl(url: string, args: string[] = [], timeoutSeconds = 5): Promise<CurlResult> {
  const marker = '\n--knock-port-status--';
  const started = performance.now();
  const { stdout } = await run('curl', ['-sk', '-D', '-', '-m', String(timeoutSeconds), '-w', `${marker}%{http_code}`, ...args, url]);
  const seconds = (performance.now() - started) / 1000;
  const [rest = '', status = '0'] = stdout.split(marker);
  const split = rest.indexOf('\r\n\r\n');
  return { status: Number(status), headers: rest.slice(0, split), body: rest.slice(split + 4), seconds };
}

/**
 * The whole answer, byte for byte (status line, every header, body), to `request` sent as is
 * over TLS: for requests curl would not send, and to compare answers whole.
 */
export function rawExchange(port: number, request: string | Buffer, tlsOptions: ConnectionOptions = {}, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...tlsOptions }, () => socket.write(request));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no whole answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // The server may reset a connection whose body it did not read: what arrived before counts.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/** A raw HTTP/1.1 request with a body and a Content-Length that matches it. */
export function rawRequest(method: string, path: string, body: string | Buffer = '', headers: Record<string, string> = {}): Buffer {
  const payload = Buffer.from(body);
  const lines = [
    `${method} ${path} HTTP/1.1`,
    'Host: gateway',
    ...Object.entries({ 'Content-Length': String(payload.length), ...headers }).map(([k, v]) => `${k}: ${v}`),
  ];
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), payload]);
}
