import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashedKeyString } from '../../../src/config/key-digest.js';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { issuesOf, lineOf, VALID } from './helpers.js';

// Config errors end up in terminals, CI logs and the journal (`check` before every start): they
// name the key path, the line and what was expected, never the value when it is a secret
// (access keys, request paths, TOTP secrets, and the 2FA files, which are named by keys).

const STEP1_KEY = '3f9a1c7e5b2d8046';
const STEP1_PATH = '/a8Fq2Lm9Zx';

/**
 * `text` is refused; the issue at `path` is on the line containing `marker`, matches `expected`,
 * and neither it nor the whole error message contains `secret`.
 */
function expectRefusedWithout(text: string, secret: string, path: string, marker: string, expected: RegExp): void {
  let error: unknown;
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(ConfigError);
  const message = (error as ConfigError).message;
  expect(message).not.toContain(secret);
  const issue = (error as ConfigError).issues.find((candidate) => candidate.path === path);
  expect(issue, message).toBeDefined();
  expect(issue!.line).toBe(lineOf(text, marker));
  expect(issue!.message).toMatch(expected);
}

const withUser = (fields: string) => `${VALID}ssh:
  port: 22
  duration: 600
  step2_https_duration: 5
  users:
    - name: carol
      access_key_http: 9c4e2a7b1d8f3065
      access_key_https: 7e1a9d3c5b2f8046
${fields}`;

describe('access keys are never quoted', () => {
  it.each([
    ['too short', 'shrt-Key9', /at least 10 characters/],
    ['with a control character', '"k3y-\\u0007-0123456"', /control characters/],
    ['hashed but malformed', 'sha256:0123456789abcdefXYZ', /sha256: followed by 64 hex digits/],
  ])('%s', (_, key, expected) => {
    const text = VALID.replace(STEP1_KEY, key);
    expectRefusedWithout(text, key.replace(/^"|"$/g, '').replace('\\u0007', '\u0007'), 'openvpn.access_key_http[0]', key, expected);
    expect(issuesOf(text)[0]!.message).not.toContain('k3y');
  });

  it('a published one, in clear and hashed', () => {
    expectRefusedWithout(
      VALID.replace(STEP1_KEY, 'test_secret_http'),
      'test_secret_http',
      'openvpn.access_key_http[0]',
      'test_secret_http',
      /published example key/,
    );
    const hashed = hashedKeyString('test_secret_http');
    expectRefusedWithout(VALID.replace(STEP1_KEY, hashed), hashed.slice(7, 30), 'openvpn.access_key_http[0]', hashed, /published example key/);
  });

  it('a key list written as a mapping (the wrong type)', () => {
    const text = VALID.replace(`  access_key_http:\n    - ${STEP1_KEY}`, `  access_key_http: { key: ${STEP1_KEY} }`);
    expectRefusedWithout(text, STEP1_KEY, 'openvpn.access_key_http', 'access_key_http', /^expected a list, got a mapping$/);
  });

  it("a published key written alone (the original's single-key form)", () => {
    const text = VALID.replace(`  access_key_http:\n    - ${STEP1_KEY}`, '  access_key_http: secret789_http');
    expectRefusedWithout(text, 'secret789_http', 'openvpn.access_key_http[0]', 'secret789_http', /published example key/);
  });

  it('a key that YAML reads as a number', () => {
    const text = withUser('').replace('access_key_http: 9c4e2a7b1d8f3065', 'access_key_http: 948261730519');
    expectRefusedWithout(text, '948261730519', 'ssh.users[0].access_key_http', '948261730519', /^expected a string, got a number \(put it in quotes/);
  });

  it('a step-1 key used for step 2, or a key shared by two users of an app', () => {
    const bothSteps = withUser('').replace('7e1a9d3c5b2f8046', STEP1_KEY);
    expectRefusedWithout(bothSteps, STEP1_KEY, 'ssh.users[0].access_key_https', `access_key_https: ${STEP1_KEY}`, /also a step-1 key/);
    const shared = withUser(`    - name: dave\n      access_key_http: '9c4e2a7b1d8f3065'\n      access_key_https: 2b8d6f0a4c1e9357\n`);
    expectRefusedWithout(shared, '9c4e2a7b1d8f3065', 'ssh.users[1].access_key_http', "'9c4e2a7b1d8f3065'", /same key as ssh\.users\[0\]\.access_key_http/);
  });
});

describe('request paths are never quoted', () => {
  it.each([
    ['without the leading slash', 'a8Fq2Lm9Zx', /starting with '\/'/],
    ['a published one', '/step-1-SECRET', /published example path/],
    ['with a query', '/a8Fq2?x=1', /'\?' or '#'/],
    ['that YAML reads as a number', '80417735', /^expected a string, got a number/],
    ['written as a list', '[/a8Fq2Lm9Zx]', /^expected a string, got a list$/],
  ])('%s', (_, path, expected) => {
    const text = VALID.replace(STEP1_PATH, path);
    expectRefusedWithout(text, path.replace(/^\[|\]$/g, ''), 'global.http_post_path', 'http_post_path', expected);
  });
});

describe('TOTP secrets are never quoted', () => {
  it.each([
    ['totp_secret', 'not-base32-secret-0189', /not a base32 TOTP secret/],
    ['step1_otp_secret', 'JBSWY3DPEHPK', /at least 80 bits/],
    ['totp_secret', '31415926535897932384', /^expected a string, got a number/],
  ])('%s: %s', (key, secret, expected) => {
    const text = withUser(`      ${key}: ${secret}\n`);
    expectRefusedWithout(text, secret, `ssh.users[0].${key}`, `${key}:`, expected);
  });
});

describe('YAML errors never quote the text', () => {
  it.each([
    ['a value read as a tag', '!Sx9wQ2mZ7kL4', /unknown tag .* put it in quotes/],
    ['a value read as an alias', '*Sx9wQ2mZ7kL4', /unknown alias .* put it in quotes/],
    ['a bad escape in double quotes', '"/a8Fq\\xZZSx9wQ2mZ7kL4"', /invalid escape sequence in double quotes/],
  ])('%s', (_, value, expected) => {
    const text = VALID.replace(STEP1_PATH, value);
    let error: unknown;
    try {
      parseConfig(text, 'test.yaml');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(expected);
    expect((error as ConfigError).message).not.toContain('Sx9wQ2mZ7kL4');
    expect((error as ConfigError).message).not.toContain('xZZ');
  });
});

describe('2fa_config_folder: a user without a readable 2FA file is a config error, not a warning', () => {
  const root = mkdtempSync(join(tmpdir(), 'kp-2fa-refusals-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let count = 0;
  /** A fresh folder holding `files` (name → content; null makes a directory of that name). */
  const folderWith = (files: Record<string, string | null>): string => {
    const dir = join(root, `f${count++}`);
    mkdirSync(dir);
    for (const [name, content] of Object.entries(files)) {
      if (content === null) mkdirSync(join(dir, name));
      else writeFileSync(join(dir, name), content);
    }
    return dir;
  };
  const withFolder = (dir: string, text = VALID) => text.replace('  interface_int: eth1\n', `  interface_int: eth1\n  2fa_config_folder: ${dir}\n`);
  const keyLine = `- ${STEP1_KEY}`;
  const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

  it('a folder that does not exist, or is a file', () => {
    const missing = join(root, 'no-such-folder');
    expectRefusedWithout(withFolder(missing), missing, 'global.2fa_config_folder', '2fa_config_folder', /^no such directory: with 2fa_config_folder set/);
    const file = join(folderWith({ 'plain.txt': 'x' }), 'plain.txt');
    expectRefusedWithout(withFolder(file), file, 'global.2fa_config_folder', '2fa_config_folder', /^is not a directory/);
  });

  it('a user whose file is missing', () => {
    const dir = folderWith({ 'someone-else-0123.json': JSON.stringify({ secret: SECRET }) });
    expectRefusedWithout(
      withFolder(dir),
      STEP1_KEY,
      'openvpn.access_key_http[0]',
      keyLine,
      /^no 2FA file for this key in 2fa_config_folder .*step1_otp_secret/,
    );
  });

  it('a user whose file cannot be read', () => {
    const dir = folderWith({ [`${STEP1_KEY}.json`]: null });
    expectRefusedWithout(withFolder(dir), STEP1_KEY, 'openvpn.access_key_http[0]', keyLine, /cannot be read \(EISDIR\)/);
    if (process.getuid?.() !== 0) {
      const locked = folderWith({ [`${STEP1_KEY}.json`]: JSON.stringify({ secret: SECRET }) });
      chmodSync(join(locked, `${STEP1_KEY}.json`), 0o000);
      expectRefusedWithout(withFolder(locked), STEP1_KEY, 'openvpn.access_key_http[0]', keyLine, /cannot be read \(EACCES\)/);
    }
  });

  it('a file that is not JSON does not have its content (the secret) quoted', () => {
    const dir = folderWith({ [`${STEP1_KEY}.json`]: `secret: ${SECRET}` });
    expectRefusedWithout(withFolder(dir), SECRET, 'openvpn.access_key_http[0]', keyLine, /is not JSON/);
    expect(issuesOf(withFolder(dir))[0]!.message).not.toContain(STEP1_KEY);
  });

  it('a file whose secret is invalid, or missing', () => {
    const bad = folderWith({ [`${STEP1_KEY}.json`]: JSON.stringify({ secret: 'not-base32-!!-0189' }) });
    expectRefusedWithout(withFolder(bad), 'not-base32-!!-0189', 'openvpn.access_key_http[0]', keyLine, /not a base32 TOTP secret/);
    const none = folderWith({ [`${STEP1_KEY}.json`]: JSON.stringify({ interval: 30 }) });
    expectRefusedWithout(withFolder(none), STEP1_KEY, 'openvpn.access_key_http[0]', keyLine, /expected a "secret" string field/);
  });

  it('a user with a hashed key, which names no file', () => {
    const dir = folderWith({});
    const hashed = hashedKeyString(STEP1_KEY);
    expectRefusedWithout(
      withFolder(dir, VALID.replace(STEP1_KEY, hashed)),
      STEP1_KEY,
      'openvpn.access_key_http[0]',
      hashed,
      /a hashed key names no file .*step1_otp_secret/,
    );
  });

  it('a user with step1_otp_secret needs no file; the others still do', () => {
    const dir = folderWith({ [`${STEP1_KEY}.json`]: JSON.stringify({ secret: SECRET, interval: 30 }) });
    const config = parseConfig(withFolder(dir, withUser(`      step1_otp_secret: ${SECRET}\n`)), 'test.yaml');
    expect(config.apps.flatMap((app) => app.users).map((user) => user.step1OtpSecret)).toEqual([SECRET, SECRET]);
    const noFileForCarol = withFolder(dir, withUser(''));
    expectRefusedWithout(noFileForCarol, '9c4e2a7b1d8f3065', 'ssh.users[0].access_key_http', 'access_key_http: 9c4e2a7b1d8f3065', /^no 2FA file for this key/);
  });
});
