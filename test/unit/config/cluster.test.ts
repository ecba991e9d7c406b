import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { storeOptionsFromConfig } from '../../../src/cluster/from-config.js';
import { parseConfig, type ConfigError } from '../../../src/config/load.js';
import { PUBLISHED_CLUSTER_KEYS } from '../../../src/config/refused-values.js';
import { configSummary, summarizeConfig } from '../../../src/config/summary.js';
import { expectRefusedOnce, issuesOf, lineOf, load, VALID } from './helpers.js';

const KEY = '7d2a9c4e1b6f8a3d5c0e2b4f6a8d1c3e';
const PASSWORD = 'Xq9-store-password-Lm4';
const SENTINEL_PASSWORD = 'Rt5-sentinel-password-Wz8';
const dir = mkdtempSync(join(tmpdir(), 'kp-cluster-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file in the test directory holding `text`, readable by its owner only unless `mode` says otherwise. */
function secretFile(name: string, text: string, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode });
  return path;
}

/** VALID with `lines` (the cluster section's content, indented by 4) as global.cluster. */
const withCluster = (lines: string) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  cluster:\n${lines}`);

const SERVER = `    gateway: gw-a
    key: ${KEY}
    redis:
      url: redis://10.0.0.5:6379
`;

const SENTINELS = `    gateway: gw-a
    key: ${KEY}
    redis:
      sentinels: [10.0.0.5:26379, 10.0.0.6:26379]
      sentinel_name: knockport
`;

describe('global.cluster', () => {
  it('is optional: without it the gateway works alone', () => {
    expect(load(VALID).global.cluster).toBeUndefined();
  });

  it('accepts one server, with the key in the config, the default prefix and the cluster name derived from it', () => {
    const cluster = load(withCluster(SERVER)).global.cluster!;
    expect(cluster).toEqual({
      gateway: 'gw-a',
      key: Buffer.from(KEY),
      redis: { address: { kind: 'server', endpoint: { host: '10.0.0.5', port: 6379 }, db: 0 } },
      prefix: 'knock-port:',
      name: 'knock-port:',
    });
  });

  it('takes a cluster name, signed into every message', () => {
    expect(load(withCluster(`${SERVER}    name: site-a\n`)).global.cluster!.name).toBe('site-a');
  });

  it('accepts rediss:// with TLS files, a user, a password file and a key file', () => {
    const keyFile = secretFile('cluster.key', `${KEY}\n`);
    const passwordFile = secretFile('redis.password', `${PASSWORD}\n`);
    const config = load(
      withCluster(`    gateway: edge-2
    key_file: ${keyFile}
    prefix: "site-a:kp:"
    redis:
      url: rediss://Redis.Example.net:6380/3
      username: knock-port
      password_file: ${passwordFile}
      tls:
        ca: /etc/knock-port/redis-ca.pem
        cert: /etc/knock-port/redis-client.pem
        key: /etc/knock-port/redis-client.key
`),
    );
    expect(config.global.cluster).toEqual({
      gateway: 'edge-2',
      key: Buffer.from(KEY),
      redis: {
        address: { kind: 'server', endpoint: { host: 'redis.example.net', port: 6380 }, db: 3 },
        username: 'knock-port',
        password: PASSWORD,
        tls: { ca: '/etc/knock-port/redis-ca.pem', cert: '/etc/knock-port/redis-client.pem', key: '/etc/knock-port/redis-client.key' },
      },
      prefix: 'site-a:kp:',
      name: 'site-a:kp:',
    });
    expect(config.warnings).toBeUndefined();
  });

  it('accepts rediss:// without TLS files (the system CAs) and an IPv6 server', () => {
    const redis = load(withCluster(SERVER.replace('redis://10.0.0.5:6379', 'rediss://[2001:DB8::5]'))).global.cluster!.redis;
    expect(redis).toEqual({ address: { kind: 'server', endpoint: { host: '2001:db8::5', port: 6379 }, db: 0 }, tls: {} });
  });

  it('accepts Sentinels, with TLS and a password in the config', () => {
    const redis = load(
      withCluster(`    gateway: gw-b
    key: ${KEY}
    redis:
      sentinels: [10.0.0.5:26379, "[2001:db8::6]:26380", sentinel-3.example.net, 10.0.0.5:26379]
      sentinel_name: knockport
      password: ${PASSWORD}
      tls: {}
`),
    ).global.cluster!.redis;
    expect(redis).toEqual({
      address: {
        kind: 'sentinel',
        sentinels: [
          { host: '10.0.0.5', port: 26379 },
          { host: '2001:db8::6', port: 26380 },
          { host: 'sentinel-3.example.net', port: 26379 },
        ],
        name: 'knockport',
      },
      password: PASSWORD,
      tls: {},
    });
  });

  it("accepts the Sentinels' own user and password, from a file without its line break", () => {
    const passwordFile = secretFile('sentinel.password', `${SENTINEL_PASSWORD}\n`);
    const config = load(
      withCluster(`${SENTINELS}      password: ${PASSWORD}
      sentinel_username: sentinel-kp
      sentinel_password_file: ${passwordFile}
`),
    );
    expect(config.global.cluster!.redis).toEqual({
      address: {
        kind: 'sentinel',
        sentinels: [
          { host: '10.0.0.5', port: 26379 },
          { host: '10.0.0.6', port: 26379 },
        ],
        name: 'knockport',
      },
      password: PASSWORD,
      sentinelUsername: 'sentinel-kp',
      sentinelPassword: SENTINEL_PASSWORD,
    });
    expect(config.warnings).toBeUndefined();
    // Written in the config, with no password for the data nodes.
    expect(load(withCluster(`${SENTINELS}      sentinel_password: ${SENTINEL_PASSWORD}\n`)).global.cluster!.redis).toMatchObject({
      sentinelPassword: SENTINEL_PASSWORD,
    });
    expect(load(withCluster(`${SENTINELS}      sentinel_password: ${SENTINEL_PASSWORD}\n`)).global.cluster!.redis.password).toBeUndefined();
  });

  it("gives the store the Sentinels' credentials and the TLS files' content, for the Sentinels and the master alike", () => {
    const ca = secretFile('ca.pem', '-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n', 0o644);
    const cert = secretFile('client.pem', 'client-cert', 0o644);
    const clientKey = secretFile('client.key', 'client-key');
    const cluster = load(
      withCluster(`${SENTINELS}      username: knock-port
      password: ${PASSWORD}
      sentinel_username: sentinel-kp
      sentinel_password: ${SENTINEL_PASSWORD}
      tls:
        ca: ${ca}
        cert: ${cert}
        key: ${clientKey}
`),
    ).global.cluster!;
    expect(storeOptionsFromConfig(cluster)).toEqual({
      sentinels: [
        { host: '10.0.0.5', port: 26379 },
        { host: '10.0.0.6', port: 26379 },
      ],
      sentinelName: 'knockport',
      username: 'knock-port',
      password: PASSWORD,
      sentinelUsername: 'sentinel-kp',
      sentinelPassword: SENTINEL_PASSWORD,
      tls: {
        ca: Buffer.from('-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n'),
        cert: Buffer.from('client-cert'),
        key: Buffer.from('client-key'),
      },
      prefix: 'knock-port:',
      gateway: 'gw-a',
    });
    // Without Sentinel credentials, none are passed (the store then sends none to the Sentinels).
    const plain = storeOptionsFromConfig(load(withCluster(SERVER.replace('redis://10.0.0.5:6379', 'rediss://10.0.0.5:6380/2'))).global.cluster!);
    expect(plain).toEqual({ url: 'rediss://10.0.0.5:6380/2', tls: {}, prefix: 'knock-port:', gateway: 'gw-a' });
  });

  it("shows the gateway and the store's address in check's summary, never a secret", () => {
    const passwordFile = secretFile('summary.password', PASSWORD);
    const config = load(
      withCluster(`    gateway: gw-a
    key: ${KEY}
    redis:
      url: rediss://redis.example.net:6380
      username: knock-port
      password_file: ${passwordFile}
`),
    );
    const text = summarizeConfig(config);
    expect(text).toContain('cluster: gateway gw-a; store rediss://redis.example.net:6380/0 (key prefix knock-port:)');
    const json = JSON.stringify(configSummary(config));
    expect(configSummary(config).cluster).toEqual({ gateway: 'gw-a', store: 'rediss://redis.example.net:6380/0', prefix: 'knock-port:', tls: true });
    for (const secret of [KEY, PASSWORD, 'knock-port@', passwordFile]) {
      expect(text).not.toContain(secret);
      expect(json).not.toContain(secret);
    }
    const sentinels = load(
      withCluster(`    gateway: gw-a\n    key: ${KEY}\n    redis:\n      sentinels: [10.0.0.5:26379, 10.0.0.6]\n      sentinel_name: kp\n`),
    );
    expect(summarizeConfig(sentinels)).toContain('cluster: gateway gw-a; store sentinel master kp via 10.0.0.5:26379, 10.0.0.6:26379 (key prefix knock-port:)');
    const sentinelFile = secretFile('summary-sentinel.password', SENTINEL_PASSWORD);
    for (const line of [`sentinel_password: ${SENTINEL_PASSWORD}`, `sentinel_password_file: ${sentinelFile}`]) {
      const withSentinelPassword = load(withCluster(`${SENTINELS}      sentinel_username: sentinel-kp\n      ${line}\n`));
      const shown = [summarizeConfig(withSentinelPassword), JSON.stringify(configSummary(withSentinelPassword))];
      for (const secret of [SENTINEL_PASSWORD, sentinelFile, 'sentinel-kp']) for (const output of shown) expect(output).not.toContain(secret);
    }
  });

  it('warns when a secret file can be read by every user', () => {
    const keyFile = secretFile('open.key', KEY, 0o644);
    const text = withCluster(SERVER.replace(`key: ${KEY}`, `key_file: ${keyFile}`));
    expect(load(text).warnings).toEqual([
      `test.yaml:${lineOf(text, 'key_file')}:15: global.cluster.key_file: the cluster key file can be read by every user of this host (mode 0644): chmod 640 ${keyFile} && chown root:knock-port ${keyFile}`,
    ]);
  });

  it('warns when the sentinel password file can be read by every user', () => {
    const file = secretFile('open-sentinel.password', SENTINEL_PASSWORD, 0o604);
    const text = withCluster(`${SENTINELS}      sentinel_password_file: ${file}\n`);
    expect(load(text).warnings).toEqual([
      `test.yaml:${lineOf(text, 'sentinel_password_file')}:31: global.cluster.redis.sentinel_password_file: the sentinel password file can be read by every user of this host (mode 0604): chmod 640 ${file} && chown root:knock-port ${file}`,
    ]);
  });
});

describe('global.cluster refusals', () => {
  it('is not a top-level key: a top-level cluster section is an app', () => {
    const text = `${VALID}cluster:\n  gateway: gw-a\n`;
    expect(issuesOf(text).some((issue) => issue.path.startsWith('cluster.') || issue.path === 'cluster')).toBe(true);
  });

  it.each([
    ['gateway: GW-A', 'global.cluster.gateway', 'gateway', /^expected 1-63 of a-z 0-9 - \(lower case\)/],
    ['gateway: -gw', 'global.cluster.gateway', 'gateway', /^expected 1-63 of a-z 0-9 -/],
    ['prefix: "knock port*"', 'global.cluster.prefix', 'prefix', /^expected 1-64 of A-Z a-z 0-9 _ \. : \/ -/],
    ['gatway: gw-a', 'global.cluster.gatway', 'gatway', /^unknown key 'gatway'; did you mean 'gateway'\?/],
    ['key_fil: /etc/kp.key', 'global.cluster.key_fil', 'key_fil', /^unknown key 'key_fil'; did you mean 'key_file'\?/],
    ['key_file: etc/kp.key', 'global.cluster.key_file', 'key_file', /^expected an absolute path/],
  ])('refuses %s', (line, path, marker, message) => {
    const field = line.split(':')[0]!;
    const base = ['gateway', 'prefix'].includes(field) ? SERVER.replace(/ {4}gateway: gw-a\n/, field === 'prefix' ? '    gateway: gw-a\n' : '') : SERVER;
    expectRefusedOnce(withCluster(`    ${line}\n${base}`), path, marker, message);
  });

  it('refuses unknown keys in redis and tls with "did you mean"', () => {
    expectRefusedOnce(withCluster(`${SERVER}      pasword: x\n`), 'global.cluster.redis.pasword', 'pasword', /did you mean 'password'\?/);
    expectRefusedOnce(
      withCluster(SERVER.replace('redis://', 'rediss://') + '      tls:\n        certificate: /etc/c.pem\n'),
      'global.cluster.redis.tls.certificate',
      'certificate',
      /did you mean 'cert'\?|allowed here: ca, cert, key/,
    );
  });

  it('refuses a missing key, and both key and key_file', () => {
    expectRefusedOnce(withCluster(SERVER.replace(`    key: ${KEY}\n`, '')), 'global.cluster', 'cluster:', /^the cluster key is missing: give key_file/);
    const keyFile = secretFile('both.key', KEY);
    expectRefusedOnce(withCluster(`${SERVER}    key_file: ${keyFile}\n`), 'global.cluster.key_file', 'key_file', /^give key or key_file, not both/);
  });

  it('refuses short, published and control-character keys without quoting them', () => {
    for (const [key, message] of [
      ['0123456789abcdef0123456789abcde', /^a cluster key needs at least 32 characters; generate one with: openssl rand -hex 32/],
      [PUBLISHED_CLUSTER_KEYS[0]!, /^this is a published example key that anyone can try; generate one with: openssl rand -hex 32/],
      [PUBLISHED_CLUSTER_KEYS[0]!.toUpperCase(), /^this is a published example key/],
      ['1f6612b5bc1996191745672119b4b5d6', /^this is a published example key/], // config.example.yaml's openvpn key
      ['"7d2a9c4e1b6f8a3d\\t5c0e2b4f6a8d1c3e"', /^a cluster key must not contain control characters/],
    ] as const) {
      const text = withCluster(SERVER.replace(`key: ${KEY}`, `key: ${key}`));
      const issue = expectRefusedOnce(text, 'global.cluster.key', 'key:', message);
      expect(issue.message).not.toContain(key);
    }
  });

  it('refuses a key file that is missing, short or published, on the key_file line', () => {
    const short = secretFile('short.key', 'abc\n');
    const published = secretFile('published.key', `${PUBLISHED_CLUSTER_KEYS[0]}\n`);
    for (const [file, message] of [
      [join(dir, 'missing.key'), /^the cluster key file does not exist/],
      [short, /^the cluster key file: a cluster key needs at least 32 characters/],
      [published, /^the cluster key file: this is a published example key/],
    ] as const) {
      const text = withCluster(SERVER.replace(`key: ${KEY}`, `key_file: ${file}`));
      expectRefusedOnce(text, 'global.cluster.key_file', 'key_file', message);
    }
  });

  it('refuses a cluster key that is also an access key', () => {
    const text = withCluster(SERVER.replace(`key: ${KEY}`, 'key: 3f9a1c7e5b2d80463f9a1c7e5b2d8046')).replace(
      '3f9a1c7e5b2d8046\n  access_key_https',
      '3f9a1c7e5b2d80463f9a1c7e5b2d8046\n  access_key_https',
    );
    expectRefusedOnce(text, 'global.cluster.key', 'key: 3f9a', /^the cluster key is also an access key \(openvpn\.access_key_http\[0\]\)/);
  });

  it.each([
    ['http://10.0.0.5:6379', /^the scheme must be redis: or rediss:/],
    ['10.0.0.5:6379', /^(not a URL|the scheme must be)/],
    ['redis://', /^(not a URL|the host must be)/],
    ['redis://kp:Secr3tPass@10.0.0.5', /^the url must not hold credentials .*: give them as username and password_file/],
    ['redis://10.0.0.5/0?timeout=5', /^the url takes no query or fragment/],
    ['redis://10.0.0.5/knock', /^the path can only be a database number/],
    ['redis://10.0.0.5:99999', /^not a URL/],
  ])('refuses the url %s without quoting it', (url, message) => {
    const text = withCluster(SERVER.replace('redis://10.0.0.5:6379', url));
    const issue = expectRefusedOnce(text, 'global.cluster.redis.url', 'url:', message);
    if (url.includes('Secr3tPass')) expect(issue.message).not.toContain('Secr3tPass');
  });

  it('refuses both or neither of url and sentinels, and sentinels without their name or the reverse', () => {
    const sentinelLines = '      sentinels: [10.0.0.5:26379]\n      sentinel_name: kp\n';
    expectRefusedOnce(withCluster(SERVER + sentinelLines), 'global.cluster.redis.sentinels', 'sentinels', /^give url or sentinels, not both/);
    expectRefusedOnce(
      withCluster(SERVER.replace('      url: redis://10.0.0.5:6379\n', '      username: kp\n')),
      'global.cluster.redis',
      'redis:',
      /^the store address is missing: give url/,
    );
    const noUrl = SERVER.replace('      url: redis://10.0.0.5:6379\n', '');
    expectRefusedOnce(
      withCluster(`${noUrl}      sentinels: [10.0.0.5:26379]\n`),
      'global.cluster.redis.sentinels',
      'sentinels',
      /^sentinels need sentinel_name/,
    );
    expectRefusedOnce(
      withCluster(`${SERVER}      sentinel_name: kp\n`),
      'global.cluster.redis.sentinel_name',
      'sentinel_name',
      /^sentinel_name is only used with sentinels/,
    );
    expectRefusedOnce(
      withCluster(`${noUrl}      sentinels: [10.0.0.5:26379, "10.0.0.6:port"]\n      sentinel_name: kp\n`),
      'global.cluster.redis.sentinels[1]',
      'sentinels',
      /^expected HOST:PORT, \[IPv6\]:PORT or HOST \(port 26379\)/,
    );
    expectRefusedOnce(
      withCluster(`${noUrl}      sentinels: []\n      sentinel_name: kp\n`),
      'global.cluster.redis.sentinels',
      'sentinels',
      /^the list must not be empty/,
    );
  });

  it('refuses both password and password_file, an empty or missing password file, TLS with redis:// and half a client certificate', () => {
    const passwordFile = secretFile('p.password', PASSWORD);
    const both = withCluster(`${SERVER}      password: ${PASSWORD}\n      password_file: ${passwordFile}\n`);
    const issue = expectRefusedOnce(both, 'global.cluster.redis.password_file', 'password_file', /^give password or password_file, not both/);
    expect(issue.message).not.toContain(PASSWORD);
    const empty = secretFile('empty.password', '\n');
    expectRefusedOnce(
      withCluster(`${SERVER}      password_file: ${empty}\n`),
      'global.cluster.redis.password_file',
      'password_file',
      /^the password file is empty/,
    );
    expectRefusedOnce(
      withCluster(`${SERVER}      password_file: ${join(dir, 'none')}\n`),
      'global.cluster.redis.password_file',
      'password_file',
      /^the password file does not exist/,
    );
    expectRefusedOnce(
      withCluster(`${SERVER}      tls:\n        ca: /etc/ca.pem\n`),
      'global.cluster.redis.tls',
      'tls:',
      /^TLS settings need a rediss:\/\/ url/,
    );
    expectRefusedOnce(
      withCluster(`${SERVER.replace('redis://', 'rediss://')}      tls:\n        cert: /etc/c.pem\n`),
      'global.cluster.redis.tls.cert',
      'cert:',
      /^a client certificate needs both cert and key/,
    );
  });

  it('refuses both sentinel_password and sentinel_password_file, and an empty or missing sentinel password file', () => {
    const file = secretFile('s.password', SENTINEL_PASSWORD);
    const both = withCluster(`${SENTINELS}      sentinel_password: ${SENTINEL_PASSWORD}\n      sentinel_password_file: ${file}\n`);
    const issue = expectRefusedOnce(
      both,
      'global.cluster.redis.sentinel_password_file',
      'sentinel_password_file',
      /^give sentinel_password or sentinel_password_file, not both/,
    );
    expect(issue.message).not.toContain(SENTINEL_PASSWORD);
    const empty = secretFile('empty-sentinel.password', '\n');
    expectRefusedOnce(
      withCluster(`${SENTINELS}      sentinel_password_file: ${empty}\n`),
      'global.cluster.redis.sentinel_password_file',
      'sentinel_password_file',
      /^the sentinel password file is empty/,
    );
    expectRefusedOnce(
      withCluster(`${SENTINELS}      sentinel_password_file: ${join(dir, 'none')}\n`),
      'global.cluster.redis.sentinel_password_file',
      'sentinel_password_file',
      /^the sentinel password file does not exist/,
    );
    expectRefusedOnce(
      withCluster(`${SENTINELS}      sentinel_password_file: etc/sentinel.password\n`),
      'global.cluster.redis.sentinel_password_file',
      'sentinel_password_file',
      /^expected an absolute path/,
    );
  });

  it.each([['sentinel_username: sentinel-kp'], ['sentinel_password: Rt5-sentinel-password-Wz8'], ['sentinel_password_file: FILE']])(
    'refuses %s without sentinels',
    (template) => {
      const line = template.replace('FILE', secretFile('unused-sentinel.password', SENTINEL_PASSWORD));
      const key = line.split(':')[0]!;
      const issue = expectRefusedOnce(
        withCluster(`${SERVER}      ${line}\n`),
        `global.cluster.redis.${key}`,
        key,
        new RegExp(`^${key} is only used with sentinels`),
      );
      expect(issue.message).not.toContain(SENTINEL_PASSWORD);
    },
  );

  it('refuses a sentinel user with spaces, and suggests the sentinel keys for a typo', () => {
    expectRefusedOnce(
      withCluster(`${SENTINELS}      sentinel_username: "sentinel kp"\n`),
      'global.cluster.redis.sentinel_username',
      'sentinel_username',
      /^expected 1-128 printable characters without spaces/,
    );
    expectRefusedOnce(
      withCluster(`${SENTINELS}      sentinel_pasword: x\n`),
      'global.cluster.redis.sentinel_pasword',
      'sentinel_pasword',
      /did you mean 'sentinel_password'\?/,
    );
  });

  it('never shows a password of the wrong type', () => {
    let message = '';
    try {
      parseConfig(withCluster(`${SERVER}      password: 918273645546372819\n`), 'test.yaml');
    } catch (err) {
      message = (err as ConfigError).message;
    }
    expect(message).toContain('global.cluster.redis.password: expected a string, got a number');
    expect(message).not.toContain('918273645546372819');
  });

  it('never shows a sentinel password of the wrong type', () => {
    let message = '';
    try {
      parseConfig(withCluster(`${SENTINELS}      sentinel_password: 918273645546372819\n`), 'test.yaml');
    } catch (err) {
      message = (err as ConfigError).message;
    }
    expect(message).toContain('global.cluster.redis.sentinel_password: expected a string, got a number');
    expect(message).not.toContain('918273645546372819');
  });
});
