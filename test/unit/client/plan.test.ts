import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKeyFile, resolveCredentials } from '../../../src/client/credentials.js';
import { KnockUsageError } from '../../../src/client/errors.js';
import { buildStep1Request, encodeForm, MAX_STEP1_REQUEST_BYTES } from '../../../src/client/request.js';
import { resolveTarget } from '../../../src/client/target.js';

describe('knock target', () => {
  it('takes each step from its URL, with default ports', () => {
    expect(resolveTarget({ urls: ['http://gw.example/k1', 'https://gw.example:8443/k2'] })).toEqual({
      step1: { host: 'gw.example', port: 80, path: '/k1' },
      step2: { host: 'gw.example', port: 8443, path: '/k2' },
    });
  });

  it('takes IPv6 hosts in brackets from URLs and from --host', () => {
    expect(resolveTarget({ urls: ['http://[2001:db8::1]:8080/k1'], step2Path: '/k2' })).toEqual({
      step1: { host: '2001:db8::1', port: 8080, path: '/k1' },
      step2: { host: '2001:db8::1', port: 443, path: '/k2' },
    });
    expect(resolveTarget({ host: '[::1]', step1Path: '/a', step2Path: '/b' }).step2.host).toBe('::1');
    expect(resolveTarget({ host: '::1', step1Path: '/a', step2Path: '/b', step1Port: 81 }).step1).toEqual({ host: '::1', port: 81, path: '/a' });
  });

  it.each([
    [{ step1Path: '/a', step2Path: '/b' }, 'no gateway'],
    [{ host: 'gw', step2Path: '/b' }, 'no step-1 path'],
    [{ urls: ['http://gw/'], step2Path: '/b' }, 'no step-1 path'],
    [{ urls: ['http://gw/a', 'http://gw/b'] }, 'two http://'],
    [{ urls: ['ftp://gw/a'] }, 'use http://'],
    [{ urls: ['http://gw/a?x=1'], step2Path: '/b' }, 'only scheme'],
    [{ urls: ['http://gw/a'], step1Port: 81, step2Path: '/b' }, 'not both'],
    [{ host: 'gw:80', step1Path: '/a', step2Path: '/b' }, 'ports go in'],
    [{ host: 'gw', step1Path: '/a b', step2Path: '/b' }, 'must start with /'],
    [{ host: 'gw', step1Path: 'a', step2Path: '/b' }, 'must start with /'],
  ])('refuses %j with a usage error', (options, message) => {
    expect(() => resolveTarget(options)).toThrow(KnockUsageError);
    expect(() => resolveTarget(options)).toThrow(message);
  });
});

describe('key file and credentials', () => {
  const dir = mkdtempSync(join(tmpdir(), 'knock-keys-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('parses name=value lines, comments and values containing =', () => {
    expect(parseKeyFile('# keys\nhttp_key = abc=def==\n\nhttps_key=xyz\notp_secret=JBSWY3DPEHPK3PXP\n', 'k')).toEqual({
      step1Key: 'abc=def==',
      step2Key: 'xyz',
      otpSecret: 'JBSWY3DPEHPK3PXP',
    });
  });

  it('names the file and line of a bad entry', () => {
    expect(() => parseKeyFile('http_key=a\nhttps_kye=b\n', '/etc/k')).toThrow('/etc/k:2: unknown name "https_kye"');
    expect(() => parseKeyFile('http_key\n', 'f')).toThrow('f:1: expected name=value');
    expect(() => parseKeyFile('http_key=a\nhttp_key=b\n', 'f')).toThrow('f:2: "http_key" given twice');
  });

  it('prefers the flag, then the key file, then the environment; warns about a readable key file', () => {
    const file = join(dir, 'keys');
    writeFileSync(file, 'http_key=from-file-1\nhttps_key=from-file-2\n');
    chmodSync(file, 0o644);
    const env = { KNOCK_PORT_HTTP_KEY: 'from-env-1', KNOCK_PORT_HTTPS_KEY: 'from-env-2', KNOCK_PORT_TOKEN: '123456' };
    const resolved = resolveCredentials({ step1Key: 'from-flag-1', keyFile: file }, env);
    expect(resolved.credentials).toEqual({ step1Key: 'from-flag-1', step2Key: 'from-file-2', token: '123456' });
    expect(resolved.warnings.join()).toContain(`chmod 600 ${file}`);
    chmodSync(file, 0o600);
    expect(resolveCredentials({ keyFile: file }, {}).warnings).toEqual([]);
    expect(resolveCredentials({}, env).credentials).toEqual({ step1Key: 'from-env-1', step2Key: 'from-env-2', token: '123456' });
  });

  it('says where a missing key can come from, and refuses a non-base32 otp secret', () => {
    expect(() => resolveCredentials({ step2Key: 'x' }, {})).toThrow('give --http-key, http_key= in --key-file, or KNOCK_PORT_HTTP_KEY');
    expect(() => resolveCredentials({ step1Key: 'x' }, {})).toThrow('KNOCK_PORT_HTTPS_KEY');
    expect(() => resolveCredentials({ step1Key: 'x', step2Key: 'y', otpSecret: 'no!' }, {})).toThrow('not valid base32');
    expect(() => resolveCredentials({ keyFile: join(dir, 'missing') }, {})).toThrow('ENOENT');
  });

  it('knows a user has a step-2 TOTP from --totp or totp=yes in the key file (the gateway never says so)', () => {
    const file = join(dir, 'totp-keys');
    const keys = { step1Key: 'x', step2Key: 'y' };
    expect(resolveCredentials({ ...keys, totp: true }, {}).credentials.totp).toBe(true);
    expect(resolveCredentials(keys, {}).credentials.totp).toBeUndefined();
    writeFileSync(file, 'http_key=a\nhttps_key=b\ntotp=yes\n', { mode: 0o600 });
    expect(resolveCredentials({ keyFile: file }, {}).credentials.totp).toBe(true);
    writeFileSync(file, 'http_key=a\nhttps_key=b\ntotp=no\n', { mode: 0o600 });
    expect(resolveCredentials({ keyFile: file }, {}).credentials.totp).toBeUndefined();
    writeFileSync(file, 'http_key=a\nhttps_key=b\ntotp=1\n', { mode: 0o600 });
    expect(() => resolveCredentials({ keyFile: file }, {})).toThrow(`${file}: totp must be yes or no`);
  });
});

describe('step-1 request', () => {
  it('form-encodes reserved characters and leaves out absent fields', () => {
    expect(
      encodeForm([
        ['app', 'vpn'],
        ['access_key', 'a&b=c d+e%f/é'],
        ['otp', undefined],
      ]),
    ).toBe('app=vpn&access_key=a%26b%3Dc+d%2Be%25f%2F%C3%A9');
  });

  it('is one HTTP/1.1 POST with Host, form type, exact Content-Length and Connection: close', () => {
    const body = encodeForm([
      ['app', 'vpn'],
      ['access_key', 'clé-1234567'],
    ]);
    const text = buildStep1Request({ host: '::1', port: 8080, path: '/k1' }, body).toString('utf8');
    expect(text).toBe(
      'POST /k1 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(buildStep1Request({ host: 'gw', port: 80, path: '/k1' }, 'a=b').toString()).toContain('\r\nHost: gw\r\n');
  });

  it('refuses a request that would not fit one packet', () => {
    expect(() => buildStep1Request({ host: 'gw', port: 80, path: '/k' }, 'x'.repeat(MAX_STEP1_REQUEST_BYTES))).toThrow('more than fits one packet');
  });
});
