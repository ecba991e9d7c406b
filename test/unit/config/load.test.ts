import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findUserByKey } from '../../../src/auth/keys.js';
import { digestKey, hashedKeyString } from '../../../src/config/key-digest.js';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load.js';
import { parseDestination, Refusal } from '../../../src/config/values.js';
import { EXAMPLE_SECRET, exampleWithFreshSecrets, issuesOf, lineOf, load, VALID } from './helpers.js';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const repoFile = (name: string) => new URL(`../../../${name}`, import.meta.url).pathname;

/** The step-1 keys of original-real-secrets.yaml, each with its file in the fixture's 2fa_config_folder. */
const REAL_HTTP_KEYS = ['9f2c4e71b0a85d36', 'c81d0e5fa7342b69', '70d3b6e2a9c14f58', '5e8b2d7f10a94c63'];

/** original-real-secrets.yaml with its relative 2fa_config_folder made real: one file per step-1 key. */
function loadRealSecrets(): { config: ReturnType<typeof loadConfigFile>; text: string } {
  const folder = mkdtempSync(join(tmpdir(), 'kp-real-2fa-'));
  try {
    REAL_HTTP_KEYS.forEach((key, i) =>
      writeFileSync(join(folder, `${key}.json`), JSON.stringify({ secret: `JBSWY3DPEHPK3PX${'ABCD'[i]}`, interval: 30, created_at: '2024-05-01' })),
    );
    const text = readFileSync(fixture('original-real-secrets.yaml'), 'utf8').replace('2fa_config_folder: config/2fa', `2fa_config_folder: ${folder}`);
    return { config: parseConfig(text, fixture('original-real-secrets.yaml')), text };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

describe('the original knock-port format', () => {
  it('loads a config with real secrets unchanged, with every key the original accepts', () => {
    const { config } = loadRealSecrets();
    const { global } = config;
    expect(global).toMatchObject({
      step1Path: '/Kp7x-Q2m.9a',
      step2Path: '/zR4_tW8~vN1',
      rateLimitPerMinute: 120,
      interfaceExt: 'eth0',
      interfaceInt: 'eth1',
      // Extensions take their defaults.
      step1Port: 80,
      step2Port: 443,
      firewallType: 'nftables',
      capture: 'auto',
      step1Handshake: 'cookie',
      step1Reply: 'silent',
      ipv6: true,
      stateDir: '/var/lib/knock-port',
      tableName: 'knockport',
      packetMark: 0x4b50,
    });
    expect(global.metricsListen).toBeUndefined();
    expect(config.apps.map((app) => app.name)).toEqual(['openvpn', 'rdp_lan', 'web_lan']);

    const [openvpn, rdp, web] = config.apps;
    expect(openvpn).toMatchObject({ port: 1194, protocol: 'udp', destination: { kind: 'local' }, duration: 86400, step2Duration: 5, masquerade: false });
    // Parallel lists pair by index into users key0, key1.
    expect(openvpn!.users.map((user) => user.name)).toEqual(['key0', 'key1']);
    expect(findUserByKey(openvpn!.users, 'c81d0e5fa7342b69', 'step1')?.name).toBe('key1');
    expect(findUserByKey(openvpn!.users, 'e5a03c98d17f4b26', 'step2')?.name).toBe('key1');
    expect(findUserByKey(openvpn!.users, 'e5a03c98d17f4b26', 'step1')).toBeUndefined();
    // IP:PORT forwards; per-app interface overrides win over the global ones.
    expect(rdp).toMatchObject({
      destination: { kind: 'forward', address: '192.168.1.50', family: 4, port: 3389 },
      masquerade: true,
      interfaceExt: 'ppp0',
      interfaceInt: 'eth2',
    });
    // A bare IP keeps the app's port.
    expect(web!.destination).toEqual({ kind: 'forward', address: '192.168.1.60', family: 4, port: 8443 });
  });

  it('keeps no key in clear in the loaded config', () => {
    const { config } = loadRealSecrets();
    const serialized = JSON.stringify(config);
    for (const key of ['9f2c4e71b0a85d36', 'c81d0e5fa7342b69', '4b7e19d2f06ca385', '2a9f5c07e8b36d14']) expect(serialized).not.toContain(key);
    expect(config.apps[0]!.users[0]!.step1Key).toEqual(digestKey('9f2c4e71b0a85d36'));
  });

  it('notes the keys it accepts but does not use, with their line', () => {
    const { config, text } = loadRealSecrets();
    expect(config.warnings).toEqual([
      expect.stringMatching(new RegExp(`:${lineOf(text, 'healthcheck_app_name')}:\\d+: global\\.healthcheck_app_name: accepted but not used`)),
    ]);
    // Every user of the 2FA folder needs a one-time otp in step 1.
    expect(config.apps.flatMap((app) => app.users).every((user) => user.step1OtpSecret !== undefined)).toBe(true);
  });

  it('refuses it while its 2fa_config_folder does not exist: its users would knock without their second factor', () => {
    const file = fixture('original-real-secrets.yaml');
    const text = readFileSync(file, 'utf8');
    expect(() => loadConfigFile(file)).toThrow(ConfigError);
    const [issue, ...rest] = issuesOf(text);
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({ path: 'global.2fa_config_folder', line: lineOf(text, '2fa_config_folder') });
    expect(issue!.message).toMatch(
      /^no such directory \(a relative path is resolved against the working directory, .*\): with 2fa_config_folder set, every user's step-1 key needs its 2FA file there$/,
    );
    expect(issue!.message).not.toContain('config/2fa');
  });

  it("refuses the original's own README example only for its example paths and keys, each with its line", () => {
    const file = fixture('original-readme-example.yaml');
    const text = readFileSync(file, 'utf8');
    let error: unknown;
    try {
      loadConfigFile(file);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const issues = (error as ConfigError).issues;
    expect(issues.map((issue) => [issue.path, issue.line])).toEqual([
      ['global.http_post_path', lineOf(text, '/step-1-SECRET')],
      ['global.https_post_path', lineOf(text, '/step-2-SECRET')],
      ['openvpn.access_key_http[0]', lineOf(text, '- test_secret_http')],
      ['openvpn.access_key_http[1]', lineOf(text, '- test_secret2_http')],
      ['openvpn.access_key_https[0]', lineOf(text, '- test_secret_https')],
      ['openvpn.access_key_https[1]', lineOf(text, '- test_secret2_https')],
    ]);
    for (const issue of issues) expect(issue.message).toMatch(/published example/);
    // The message lists every issue as FILE:LINE:COL: PATH: message.
    expect((error as ConfigError).message).toContain(`${file}:${lineOf(text, '/step-1-SECRET')}:19: global.http_post_path: this is a published example path`);
    // The same file with its secrets replaced loads.
    const replaced = text
      .replace('/step-1-SECRET', '/Zq8mT3vK1p')
      .replace('/step-2-SECRET', '/Hn5wB9cR2x')
      .replace('test_secret_http', 'e1b7c04a9f3d6258')
      .replace('test_secret2_http', '93d5a8f21c7e0b46')
      .replace('test_secret_https', '5f0c2e8a7b19d364')
      .replace('test_secret2_https', 'a6d4f1093b8e2c57');
    expect(parseConfig(replaced, 'replaced.yaml').apps[0]!.users).toHaveLength(2);
  });
});

describe('config.example.yaml', () => {
  it('is refused as published, for each of its secrets and nothing else: paths, keys (clear and hashed), TOTP secrets', () => {
    const file = repoFile('config.example.yaml');
    const text = readFileSync(file, 'utf8');
    let error: unknown;
    try {
      loadConfigFile(file);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const issues = (error as ConfigError).issues;
    const secrets = text.match(EXAMPLE_SECRET)!;
    expect(secrets).toHaveLength(14);
    // One issue per secret, on its line; every one says it is published and how to make one.
    expect(issues.map((issue) => issue.line)).toEqual(secrets.map((secret) => lineOf(text, secret)));
    for (const issue of issues) expect(issue.message).toMatch(/^this is a published example (path|key|TOTP secret) that anyone can try; /);
    expect(issues.filter((issue) => /_post_path$/.test(issue.path)).map((issue) => issue.message)).toEqual([
      expect.stringContaining('openssl rand -hex 16'),
      expect.stringContaining('openssl rand -hex 16'),
    ]);
    for (const issue of issues.filter((issue) => /access_key/.test(issue.path))) expect(issue.message).toContain('knock-port hash-key');
    for (const issue of issues.filter((issue) => /otp_secret$/.test(issue.path))) expect(issue.message).toContain('knock-port totp new');
    expect(issues.filter((issue) => /otp_secret$/.test(issue.path)).map((issue) => issue.path)).toEqual([
      'ssh.users[0].totp_secret',
      'ssh.users[1].step1_otp_secret',
    ]);
    // The messages never quote a secret.
    for (const secret of secrets) expect((error as ConfigError).message).not.toContain(secret.replace(/^sha256:/, ''));
  });

  it('with fresh secrets, loads: a local TCP app, a forwarded app, a UDP app, named users with TOTP and a hashed key', () => {
    const config = parseConfig(exampleWithFreshSecrets(), repoFile('config.example.yaml'));
    expect(config.warnings).toBeUndefined();
    const byName = new Map(config.apps.map((app) => [app.name, app]));
    expect(byName.get('openvpn')).toMatchObject({ protocol: 'udp', destination: { kind: 'local' } });
    expect(byName.get('ssh')).toMatchObject({ protocol: 'tcp', destination: { kind: 'local' } });
    expect(byName.get('rdp')).toMatchObject({ destination: { kind: 'forward', address: '192.168.10.20', port: 3389 }, masquerade: true });
    const ssh = byName.get('ssh')!;
    expect(ssh.users.map((user) => user.name)).toEqual(['alice', 'bob']);
    expect(ssh.users[0]!.totpSecret).toMatch(/^[A-Z2-7]{32}$/);
    expect(ssh.users[1]!.step1OtpSecret).toMatch(/^[A-Z2-7]{32}$/);
    expect(config.global.metricsListen).toBe('127.0.0.1:9464');
  });
});

describe('extensions', () => {
  it('accepts users with hashed keys and TOTP secrets, after the list-form users', () => {
    const config = load(`${VALID}  users:
    - name: carol
      access_key_http: ${hashedKeyString('c4r0l-step1-k3y')}
      access_key_https: ${hashedKeyString('c4r0l-step2-k3y')}
      totp_secret: jbsw y3dp ehpk 3pxp
`);
    const users = config.apps[0]!.users;
    expect(users.map((user) => [user.name, user.index])).toEqual([
      ['key0', 0],
      ['carol', 1],
    ]);
    expect(findUserByKey(users, 'c4r0l-step1-k3y', 'step1')?.name).toBe('carol');
    expect(findUserByKey(users, 'c4r0l-step2-k3y', 'step2')?.name).toBe('carol');
    expect(users[1]!.totpSecret).toBe('JBSWY3DPEHPK3PXP');
  });

  it('reads every global extension', () => {
    const config = load(
      VALID.replace(
        '  interface_int: eth1\n',
        `  interface_int: eth1
  http_port: 8080
  https_port: 8443
  firewall_type: iptables
  capture: nflog
  queue_num: 3
  nflog_group: 7
  step1_handshake: none
  step1_reply: reset
  state_dir: /srv/kp
  table_name: kp_test
  ipv6: false
  metrics_listen: "[::1]:9100"
  control_socket: /run/kp.sock
  packet_mark: "0x10"
  step1_rate_per_second: 5000
`,
      ),
    );
    expect(config.global).toMatchObject({
      step1Port: 8080,
      step2Port: 8443,
      firewallType: 'iptables',
      capture: 'nflog',
      queueNum: 3,
      nflogGroup: 7,
      step1Handshake: 'none',
      step1Reply: 'reset',
      stateDir: '/srv/kp',
      tableName: 'kp_test',
      ipv6: false,
      metricsListen: '[::1]:9100',
      controlSocket: '/run/kp.sock',
      packetMark: 0x10,
      step1RatePerSecond: 5000,
    });
  });

  it('lets command-line flags override the file', () => {
    const config = parseConfig(VALID, 'test.yaml', { firewallType: 'vyos', step1Port: 8081, step2Port: 8444, capture: 'nfqueue', stateDir: '/tmp/kp-state' });
    expect(config.global).toMatchObject({ firewallType: 'vyos', step1Port: 8081, step2Port: 8444, capture: 'nfqueue', stateDir: '/tmp/kp-state' });
  });

  it('has no limit on the length of the request paths', () => {
    const long = `/${'x'.repeat(300)}`;
    expect(load(VALID.replace('/a8Fq2Lm9Zx', long)).global.step1Path).toBe(long);
  });
});

describe('2fa_config_folder (the original per-key TOTP files)', () => {
  const folder = mkdtempSync(join(tmpdir(), 'kp-2fa-'));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));
  const withFolder = (dir: string) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  2fa_config_folder: ${dir}\n`);

  it('sets the step-1 OTP secret of the user whose step-1 key names a file', () => {
    writeFileSync(join(folder, '3f9a1c7e5b2d8046.json'), JSON.stringify({ secret: 'JBSWY3DPEHPK3PXP', interval: 30, created_at: '2025-01-01' }));
    const config = load(withFolder(folder));
    expect(config.apps[0]!.users[0]!.step1OtpSecret).toBe('JBSWY3DPEHPK3PXP');
    expect(config.warnings).toBeUndefined();
  });

  it('refuses an interval the daemon cannot honour, without printing the key', () => {
    const other = join(folder, 'interval');
    mkdirSync(other);
    writeFileSync(join(other, '3f9a1c7e5b2d8046.json'), JSON.stringify({ secret: 'JBSWY3DPEHPK3PXP', interval: 60 }));
    const text = withFolder(other);
    const [issue, ...rest] = issuesOf(text);
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({ path: 'openvpn.access_key_http[0]', line: lineOf(text, '- 3f9a1c7e5b2d8046') });
    expect(issue!.message).toMatch(/interval 60 is not supported/);
    expect(issue!.message).not.toContain('3f9a1c7e5b2d8046');
  });
});

describe('destination', () => {
  it.each([
    ['local', { kind: 'local' }],
    ['10.1.2.3', { kind: 'forward', address: '10.1.2.3', family: 4, port: undefined }],
    ['10.1.2.3:8080', { kind: 'forward', address: '10.1.2.3', family: 4, port: 8080 }],
    ['[2001:DB8::5]:443', { kind: 'forward', address: '2001:db8::5', family: 6, port: 443 }],
    ['[2001:db8::5]', { kind: 'forward', address: '2001:db8::5', family: 6, port: undefined }],
    ['2001:db8::5', { kind: 'forward', address: '2001:db8::5', family: 6, port: undefined }],
  ])('parses %s', (text, expected) => {
    expect(parseDestination(text)).toEqual(expected);
  });

  it.each([
    ['lan-host.example', /not a destination/],
    ['10.1.2.3:0', /not a number from 1 to 65535/],
    ['10.1.2.3:70000', /not a number from 1 to 65535/],
    ['[10.1.2.3]:80', /not a destination/],
    ['127.0.0.1:22', /loopback.*destination: local/],
    ['[::1]:22', /loopback/],
    ['0.0.0.0', /unspecified/],
    ['239.1.1.1', /multicast/],
    ['Local', /not a destination/],
  ])('refuses %s', (text, message) => {
    const result = parseDestination(text);
    expect(result).toBeInstanceOf(Refusal);
    expect((result as Refusal).message).toMatch(message);
  });

  it('refuses an IPv6 destination when IPv6 is off', () => {
    const text = VALID.replace('destination: local', 'destination: "[2001:db8::7]:1194"').replace(
      '  interface_int: eth1\n',
      '  interface_int: eth1\n  ipv6: false\n',
    );
    const [issue] = issuesOf(text);
    expect(issue).toMatchObject({ path: 'openvpn.destination', line: lineOf(text, 'destination:') });
  });
});
