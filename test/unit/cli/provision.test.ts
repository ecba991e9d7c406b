import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bundleText, curlLines, keyFile, type BundleInput } from '../../../src/cli/provision/bundle.js';
import { defaultRouteInterface } from '../../../src/cli/provision/init.js';
import { addUser, removeUser, userDropInPath } from '../../../src/cli/provision/user-file.js';
import { digestKey } from '../../../src/config/key-digest.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { VALID } from '../config/helpers.js';

const INPUT: BundleInput = {
  host: '203.0.113.9',
  step1Port: 80,
  step2Port: 8443,
  step1Path: '/p1',
  step2Path: '/p2',
  app: 'ssh',
  user: 'alice',
  step1Key: 'aaaa1111bbbb2222',
  step2Key: 'cccc3333dddd4444',
  step2Window: 5,
};

describe('the client bundle', () => {
  it('curl lines for Linux/macOS and curl.exe lines for Windows send the two requests', () => {
    expect(curlLines(INPUT, false)).toEqual([
      "curl -m 3 -d 'app=ssh&access_key=aaaa1111bbbb2222' http://203.0.113.9/p1",
      "curl -d 'app=ssh&access_key=cccc3333dddd4444' https://203.0.113.9:8443/p2",
    ]);
    expect(curlLines(INPUT, true)).toEqual([
      'curl.exe -m 3 -d "app=ssh&access_key=aaaa1111bbbb2222" http://203.0.113.9/p1',
      'curl.exe -d "app=ssh&access_key=cccc3333dddd4444" https://203.0.113.9:8443/p2',
    ]);
  });

  it('an IPv6 gateway in brackets without URL globbing; a TOTP user sends a token; a self-signed gateway is trusted by its certificate', () => {
    const lines = curlLines({ ...INPUT, host: '2001:db8::1', totpSecret: 'JBSWY3DPEHPK3PXP', selfSignedCertificate: 'PEM' }, false);
    expect(lines[0]).toBe("curl -g -m 3 -d 'app=ssh&access_key=aaaa1111bbbb2222' http://[2001:db8::1]/p1");
    expect(lines[1]).toBe("curl -g --cacert gateway.pem -d 'app=ssh&access_key=cccc3333dddd4444&token=CODE' https://[2001:db8::1]:8443/p2");
  });

  it('the key file is what knock --key-file reads, and the text carries the otpauth URI and the QR code', () => {
    expect(keyFile({ ...INPUT, totpSecret: 'JBSWY3DPEHPK3PXP' })).toBe('http_key=aaaa1111bbbb2222\nhttps_key=cccc3333dddd4444\ntotp=yes\n');
    const text = bundleText({ ...INPUT, totpSecret: 'JBSWY3DPEHPK3PXP' }, 'QR\n');
    expect(text).toContain('otpauth://totp/knock-port%3Aalice?secret=JBSWY3DPEHPK3PXP');
    expect(text).toContain('\nQR\n');
    expect(text).toContain('iOS Shortcuts');
    expect(text).toContain('HTTP Shortcuts');
  });
});

describe('the default route', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'knock-route-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("is the IPv4 default route's interface, else the IPv6 one's", () => {
    writeFileSync(
      join(dir, 'route'),
      'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n' +
        'eth1\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n' +
        'wan0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n',
    );
    expect(defaultRouteInterface(dir)).toBe('wan0');
    writeFileSync(join(dir, 'route'), 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n');
    writeFileSync(
      join(dir, 'ipv6_route'),
      `${'0'.repeat(32)} 00 ${'0'.repeat(32)} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ppp0\n`,
    );
    expect(defaultRouteInterface(dir)).toBe('ppp0');
    rmSync(join(dir, 'ipv6_route'));
    expect(defaultRouteInterface(dir)).toBeUndefined();
  });
});

describe('user add', () => {
  let dir: string;
  let config: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'knock-useradd-'));
    config = join(dir, 'config.yaml');
    writeFileSync(config, `# my comment\n${VALID}`);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes users.d/NAME.yaml with digests only, mode 0640, and the config loads with the user', () => {
    const {
      secrets,
      file,
      config: loaded,
    } = addUser({ configPath: config, name: 'alice', app: 'openvpn', totp: true, inConfig: false }, loadConfigFile(config));
    expect(file).toBe(userDropInPath(config, 'alice'));
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(secrets.step1Key);
    expect(text).toContain(`sha256:${digestKey(secrets.step1Key).toString('hex')}`);
    expect(text).toContain(`totp_secret: ${secrets.totpSecret!}`);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    const user = loaded.apps[0]!.users.find((candidate) => candidate.name === 'alice')!;
    expect(user.step2Key.equals(digestKey(secrets.step2Key))).toBe(true);
  });

  it('--in-config appends to the config file itself, keeping its comments', () => {
    addUser({ configPath: config, name: 'bob', app: 'openvpn', totp: false, inConfig: true }, loadConfigFile(config));
    const text = readFileSync(config, 'utf8');
    expect(text).toContain('# my comment');
    expect(loadConfigFile(config).apps[0]!.users.map((user) => user.name)).toEqual(['key0', 'bob']);
  });

  it('a config the new user would break is left as it was (here: a users.d file for the name that is not valid)', () => {
    mkdirSync(join(dir, 'users.d'));
    writeFileSync(userDropInPath(config, 'carol'), 'openvpn: [not valid\n');
    expect(() =>
      addUser({ configPath: config, name: 'carol', app: 'openvpn', totp: false, inConfig: false }, { source: config, apps: [{ name: 'openvpn', users: [] }] }),
    ).toThrow(/not valid YAML/);
    expect(readFileSync(userDropInPath(config, 'carol'), 'utf8')).toBe('openvpn: [not valid\n');
  });

  it('when the config does not load with the new user, the new drop-in is removed again', () => {
    writeFileSync(config, VALID.replace('  interface_ext: eth0\n', '  interface_ext: eth0\n  ipv7: true\n'));
    expect(() =>
      addUser({ configPath: config, name: 'erin', app: 'openvpn', totp: false, inConfig: false }, { source: config, apps: [{ name: 'openvpn', users: [] }] }),
    ).toThrow(/ipv7/);
    expect(existsSync(userDropInPath(config, 'erin'))).toBe(false);
  });

  it('refuses an unknown app and a name the app already has', () => {
    const loaded = loadConfigFile(config);
    expect(() => addUser({ configPath: config, name: 'dave', app: 'nope', totp: false, inConfig: false }, loaded)).toThrow("no app 'nope' in");
    expect(() => addUser({ configPath: config, name: 'key0', app: 'openvpn', totp: false, inConfig: false }, loaded)).toThrow('already has a user key0');
  });
});

describe('user remove', () => {
  let dir: string;
  let config: string;
  /** A second app, `web`, with its own list-form user (key0), beside the fixture's openvpn. */
  const WEB =
    'web:\n  port: 8443\n  access_key_http:\n    - 7c1e9a3f5b2d8064\n  access_key_https:\n    - d2b6e4f8a1c30957\n  duration: 600\n  step2_https_duration: 5\n';
  const users = (app: string) =>
    loadConfigFile(config)
      .apps.find((candidate) => candidate.name === app)!
      .users.map((user) => user.name);
  const add = (name: string, app: string, inConfig = false) => addUser({ configPath: config, name, app, totp: true, inConfig }, loadConfigFile(config));
  const remove = (name: string, app?: string) => removeUser({ configPath: config, name, ...(app ? { app } : {}) }, loadConfigFile(config));
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'knock-userremove-'));
    config = join(dir, 'config.yaml');
    writeFileSync(config, `# my comment\n${VALID}${WEB}`);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("deletes the user's drop-in that user add wrote, and the config loads without the user", () => {
    add('alice', 'openvpn');
    const removed = remove('alice');
    expect(removed).toMatchObject({ apps: ['openvpn'], edited: [], deleted: [userDropInPath(config, 'alice')] });
    expect(existsSync(userDropInPath(config, 'alice'))).toBe(false);
    expect(removed.config.apps[0]!.users.map((user) => user.name)).toEqual(['key0']);
  });

  it('a user in the config file itself: its entry goes, the comments and the other users stay', () => {
    add('bob', 'openvpn', true);
    add('carol', 'openvpn', true);
    expect(remove('bob')).toMatchObject({ apps: ['openvpn'], edited: [config], deleted: [] });
    const text = readFileSync(config, 'utf8');
    expect(text).toContain('# my comment');
    expect(text).not.toContain('name: bob');
    expect(users('openvpn')).toEqual(['key0', 'carol']);
  });

  it("--app removes one app's entry and keeps the drop-in for the others; without it, every app's", () => {
    add('alice', 'openvpn');
    add('alice', 'web');
    expect(remove('alice', 'web')).toMatchObject({ apps: ['web'], edited: [userDropInPath(config, 'alice')], deleted: [] });
    expect([users('openvpn'), users('web')]).toEqual([['key0', 'alice'], ['key0']]);
    add('alice', 'web');
    expect(remove('alice').apps).toEqual(['openvpn', 'web']);
    expect(existsSync(userDropInPath(config, 'alice'))).toBe(false);
  });

  it('refuses, changing nothing: an unknown user, an unknown app, a user of the key lists', () => {
    add('alice', 'openvpn');
    const before = [readFileSync(config, 'utf8'), readFileSync(userDropInPath(config, 'alice'), 'utf8')];
    expect(() => remove('zed')).toThrow(/^no user 'zed' in .*config\.yaml \(users: key0, alice\)$/);
    expect(() => remove('alice', 'web')).toThrow(/^no user 'alice' in .*config\.yaml app web \(users: key0\)$/);
    expect(() => remove('alice', 'nope')).toThrow("no app 'nope' in");
    expect(() => remove('key0', 'web')).toThrow('user key0 of app web is a pair of its access_key_http/access_key_https lists');
    expect([readFileSync(config, 'utf8'), readFileSync(userDropInPath(config, 'alice'), 'utf8')]).toEqual(before);
  });

  it('the last user of an app defined by its users alone stays, its drop-in put back as it was (mode 0640): the config would not load', () => {
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'conf.d', 'ssh.yaml'), 'ssh:\n  port: 22\n  duration: 600\n  step2_https_duration: 5\n');
    // The app has no user yet, so the config does not load before alice is in it.
    addUser({ configPath: config, name: 'alice', app: 'ssh', totp: true, inConfig: false }, { source: config, apps: [{ name: 'ssh', users: [] }] });
    const file = userDropInPath(config, 'alice');
    const before = readFileSync(file, 'utf8');
    expect(() => remove('alice')).toThrow(/^without alice the config would not load, so nothing was changed: invalid config/);
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(users('ssh')).toEqual(['alice']);
  });
});
