/**
 * Config errors an operator can act on, and the original knock-port's files loading as written:
 * an unreadable file names the user the process runs as and the fix, a directory says so (and
 * which file to give), a single key where a list belongs is a list of one, every sample key and
 * path the original published is refused, and the TLS files may be named in `global`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../../../src/config/load.js';
import { explainReadError } from '../../../src/shared/read-error.js';
import { expectRefusedOnce, load, VALID } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-operator-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readFailure(path: string): string {
  try {
    loadConfigFile(path);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected the config to be refused');
}

describe('a config file that cannot be read', () => {
  it('a directory: the path, that it is a directory, and the file inside to give', () => {
    const folder = join(dir, 'etc-knock-port');
    mkdirSync(folder);
    expect(readFailure(folder)).toContain(`${folder}: cannot read the config file: ${folder} is a directory, not a file; give the YAML file with -c FILE`);
    writeFileSync(join(folder, 'config.yaml'), VALID);
    expect(readFailure(folder)).toContain(`is a directory, not a file; give the file: -c ${join(folder, 'config.yaml')}`);
  });

  it('a missing file', () => {
    expect(readFailure(join(dir, 'nope.yaml'))).toContain('cannot read the config file: no such file');
  });

  it('permission denied: the user and group this process runs as, and the fix', () => {
    // Root reads every file, so the error is made here as the kernel reports it.
    const denied = Object.assign(new Error("EACCES: permission denied, open '/etc/knock-port/config.yaml'"), { code: 'EACCES' });
    const reason = explainReadError(denied, '/etc/knock-port/config.yaml');
    expect(reason).toMatch(/^permission denied: knock-port runs as user \S+ \(uid \d+\), group \S+, which cannot read it; /);
    expect(reason).toMatch(/chgrp \S+ \/etc\/knock-port\/config\.yaml && chmod 640 \/etc\/knock-port\/config\.yaml/);
  });
});

describe("the original's single-key form", () => {
  const single = VALID.replace('  access_key_http:\n    - 3f9a1c7e5b2d8046', '  access_key_http: 3f9a1c7e5b2d8046').replace(
    '  access_key_https:\n    - b6e2d4f8a1c39057',
    '  access_key_https: b6e2d4f8a1c39057',
  );

  it('loads as a list of one, with no warning', () => {
    expect(single).toContain('access_key_http: 3f9a1c7e5b2d8046\n');
    const config = load(single);
    expect(config.apps).toEqual(load(VALID).apps);
    expect(config.warnings).toBeUndefined();
  });

  it('is checked like a list entry (a short key is refused)', () => {
    expectRefusedOnce(
      single.replace('access_key_http: 3f9a1c7e5b2d8046', 'access_key_http: short'),
      'openvpn.access_key_http[0]',
      'access_key_http: short',
      /at least 10 characters/,
    );
  });
});

describe('every sample the original published is refused', () => {
  // Its README, README.extended, config.yaml.dist (with the commented mysql app) and test suite.
  const KEYS = [
    'test_secret_http',
    'test_secret2_http',
    'test_secret_https',
    'test_secret2_https',
    'secret123_http',
    'secret456_http',
    'secret123_https',
    'secret456_https',
    'secret789_http',
    'secret012_https',
    'invalidkey',
    'invalid_key',
    '1234567890',
  ];

  it.each(KEYS)('key %s', (key) => {
    // Quoted: 1234567890 would be a number.
    expectRefusedOnce(
      VALID.replace('- 3f9a1c7e5b2d8046', `- '${key}'`),
      'openvpn.access_key_http[0]',
      `- '${key}'`,
      /published example key that anyone can try/,
    );
  });

  it.each(['/step-1-SECRET', '/SECRET-1', '/1-SECRET', '/step-1', '/12345'])('path %s', (path) => {
    expectRefusedOnce(
      VALID.replace('http_post_path: /a8Fq2Lm9Zx', `http_post_path: ${path}`),
      'global.http_post_path',
      `http_post_path: ${path}`,
      /published example path/,
    );
  });
});

describe('global.tls_cert and global.tls_key', () => {
  it('are absolute paths, kept in the config', () => {
    const config = load(VALID.replace('global:\n', 'global:\n  tls_cert: /etc/knock-port/tls/cert.pem\n  tls_key: /etc/knock-port/tls/key.pem\n'));
    expect(config.global.tlsCert).toBe('/etc/knock-port/tls/cert.pem');
    expect(config.global.tlsKey).toBe('/etc/knock-port/tls/key.pem');
    expect(load(VALID).global.tlsCert).toBeUndefined();
  });

  it('a relative path is refused', () => {
    expectRefusedOnce(VALID.replace('global:\n', 'global:\n  tls_cert: tls/cert.pem\n'), 'global.tls_cert', 'tls_cert:', /absolute/);
  });
});
