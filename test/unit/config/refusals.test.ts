import { describe, expect, it } from 'vitest';
import { hashedKeyString } from '../../../src/config/key-digest.js';
import { PUBLISHED_KEY_DIGESTS, PUBLISHED_KEYS, PUBLISHED_PATHS, PUBLISHED_TOTP_SECRETS } from '../../../src/config/refused-values.js';
import { expectRefusedOnce, issuesOf, lineOf, load, VALID } from './helpers.js';

/** VALID with its second app appended (ports and keys chosen not to clash). */
const withSecondApp = (lines: string) => `${VALID}ssh:
  port: 22
  destination: local
  duration: 600
  step2_https_duration: 5
${lines}`;

const keys = (http: string, https: string) => `  access_key_http:\n    - ${http}\n  access_key_https:\n    - ${https}\n`;

describe('published example paths and keys', () => {
  it.each(PUBLISHED_PATHS)('refuses the path %s as http_post_path and as https_post_path', (path) => {
    const step1 = VALID.replace('/a8Fq2Lm9Zx', path);
    expectRefusedOnce(step1, 'global.http_post_path', 'http_post_path', /published example path/);
    const step2 = VALID.replace('/Qp3Rt7Vw1Y', path);
    expectRefusedOnce(step2, 'global.https_post_path', 'https_post_path', /published example path/);
  });

  it('refuses a published path in another letter case', () => {
    expectRefusedOnce(VALID.replace('/a8Fq2Lm9Zx', '/STEP-1-secret'), 'global.http_post_path', 'http_post_path', /published example path/);
  });

  it.each(PUBLISHED_KEYS.filter((key) => key.length >= 10))('refuses the key %s, in clear and hashed', (key) => {
    expectRefusedOnce(VALID.replace('3f9a1c7e5b2d8046', `"${key}"`), 'openvpn.access_key_http[0]', `- "${key}"`, /published example key/);
    const hashed = hashedKeyString(key);
    expectRefusedOnce(VALID.replace('b6e2d4f8a1c39057', hashed), 'openvpn.access_key_https[0]', hashed, /published example key/);
  });

  it("refuses this project's own example paths (config.example.yaml, README), saying how to make one", () => {
    for (const path of ['/8f18837d44f4d73f4e0eafa2b40e16dc', '/de34caef460ed2b33c6de88beade586f', '/knock-c564fc72abed', '/STEP1-PATH', '/YOUR-STEP-2-PATH']) {
      const issue = expectRefusedOnce(VALID.replace('/a8Fq2Lm9Zx', path), 'global.http_post_path', 'http_post_path', /^this is a published example path/);
      expect(issue.message).toContain('openssl rand -hex 16');
      expect(issue.message).not.toContain(path);
    }
  });

  it("refuses this project's own example keys (config.example.yaml, README), saying how to make and hash one", () => {
    for (const key of [
      '1f6612b5bc1996191745672119b4b5d6',
      '1ac6221c842379fe0f081e8b4b1dae43',
      'dc0d9fd5affa7e043e8f22fada8a3dc0',
      'c407c81340169f40469082f53eb599c9',
    ]) {
      const issue = expectRefusedOnce(
        VALID.replace('3f9a1c7e5b2d8046', key),
        'openvpn.access_key_http[0]',
        key,
        /^this is a published example key that anyone can try; /,
      );
      expect(issue.message).toContain('openssl rand -hex 16');
      expect(issue.message).toContain('knock-port hash-key');
      expect(issue.message).not.toContain(key);
    }
  });

  it.each(PUBLISHED_KEY_DIGESTS)('refuses the key published only as its digest sha256:%s, in either letter case', (hex) => {
    for (const hashed of [`sha256:${hex}`, `sha256:${hex.toUpperCase()}`]) {
      const issue = expectRefusedOnce(VALID.replace('b6e2d4f8a1c39057', hashed), 'openvpn.access_key_https[0]', hashed, /published example key/);
      expect(issue.message).not.toContain(hex.slice(0, 16));
    }
  });

  it.each(PUBLISHED_TOTP_SECRETS)('refuses the TOTP secret %s as totp_secret and step1_otp_secret, however written', (secret) => {
    const user = (field: string, value: string) =>
      `${VALID}  users:\n    - name: erin\n      access_key_http: 5b8e1f3a7d0c2946\n      access_key_https: 9a2d6f0c4e8b1735\n      ${field}: "${value}"\n`;
    const spaced = secret
      .toLowerCase()
      .replace(/(.{4})/g, '$1 ')
      .trim();
    for (const [field, value] of [
      ['totp_secret', secret],
      ['step1_otp_secret', secret],
      ['totp_secret', spaced],
    ] as const) {
      const issue = expectRefusedOnce(user(field, value), `openvpn.users[0].${field}`, field, /^this is a published example TOTP secret that anyone can try; /);
      expect(issue.message).toContain('knock-port totp new');
      expect(issue.message).not.toContain(secret.slice(0, 8));
    }
  });
});

describe('request paths', () => {
  it('refuses equal step-1 and step-2 paths', () => {
    expectRefusedOnce(VALID.replace('/Qp3Rt7Vw1Y', '/a8Fq2Lm9Zx'), 'global.https_post_path', 'https_post_path', /must differ from http_post_path/);
  });

  it.each([
    ['a8Fq2Lm9Zx', /starting with '\/'/],
    ['/a8Fq2?x=1', /'\?' or '#'/],
    ['/a8Fq2#frag', /'\?' or '#'/],
    ['"/a8Fq 2Lm9"', /whitespace/],
    ['"/a8Fq\\u00012Lm9"', /printable ASCII/],
    ['"/a8Fqé2Lm9"', /printable ASCII/],
    ['/', /not a secret path/],
  ])('refuses the path %s', (path, message) => {
    expectRefusedOnce(VALID.replace('/a8Fq2Lm9Zx', path), 'global.http_post_path', 'http_post_path', message);
  });
});

describe('keys', () => {
  it('refuses a plain key shorter than 10 characters', () => {
    expectRefusedOnce(VALID.replace('3f9a1c7e5b2d8046', 'shortkey1'), 'openvpn.access_key_http[0]', '- shortkey1', /at least 10 characters; generate your own/);
  });

  it('refuses a key used for both steps by one user', () => {
    const text = VALID.replace('b6e2d4f8a1c39057', '3f9a1c7e5b2d8046  # here');
    expectRefusedOnce(text, 'openvpn.access_key_https[0]', '# here', /also a step-1 key \(openvpn\.access_key_http\[0\]\)/);
  });

  it('refuses a step-2 key that is a step-1 key of another app, even hashed', () => {
    const text = withSecondApp(keys('7c1e9a3f5d0b2846', hashedKeyString('3f9a1c7e5b2d8046')));
    expectRefusedOnce(text, 'ssh.access_key_https[0]', 'sha256:', /also a step-1 key \(openvpn\.access_key_http\[0\]\)/);
  });

  it('accepts the same key pair for two apps (as the original does)', () => {
    expect(() => issuesOf(withSecondApp(keys('3f9a1c7e5b2d8046', 'b6e2d4f8a1c39057')))).toThrow(/loaded/);
  });

  it('refuses two users of one app with the same key', () => {
    const text = `${VALID}  users:
    - name: frank
      access_key_http: 3f9a1c7e5b2d8046  # here
      access_key_https: 0d4a7e2c9b5f1368
`;
    expectRefusedOnce(text, 'openvpn.users[0].access_key_http', '# here', /same key as openvpn\.access_key_http\[0\]; each user needs their own key/);
  });

  it('refuses a malformed hashed key', () => {
    expectRefusedOnce(VALID.replace('3f9a1c7e5b2d8046', 'sha256:abcd'), 'openvpn.access_key_http[0]', 'sha256:abcd', /64 hex digits/);
  });

  it('refuses a number where a key is expected, suggesting quotes', () => {
    expectRefusedOnce(VALID.replace('3f9a1c7e5b2d8046', '31415926535897'), 'openvpn.access_key_http[0]', '31415926535897', /expected a string.*quotes/);
  });

  it('refuses parallel key lists of different lengths', () => {
    const text = VALID.replace('    - 3f9a1c7e5b2d8046\n', '    - 3f9a1c7e5b2d8046\n    - 8e0b6d2f4a7c1935\n');
    expectRefusedOnce(text, 'openvpn.access_key_http', 'access_key_http:', /has 2 keys and access_key_https has 1 key/);
  });

  it('refuses an app without keys', () => {
    const text = VALID.replace(keys('3f9a1c7e5b2d8046', 'b6e2d4f8a1c39057'), '');
    expectRefusedOnce(text, 'openvpn', 'openvpn:', /no keys/);
  });

  it('refuses a duplicate user name', () => {
    const text = `${VALID}  users:
    - name: key0
      access_key_http: 5b8e1f3a7d0c2946
      access_key_https: 9a2d6f0c4e8b1735
`;
    expectRefusedOnce(text, 'openvpn.users[0].name', 'name: key0', /used twice/);
  });
});

describe('TOTP secrets', () => {
  const withTotp = (secret: string) => `${VALID}  users:
    - name: dave
      access_key_http: 5b8e1f3a7d0c2946
      access_key_https: 9a2d6f0c4e8b1735
      totp_secret: "${secret}"
`;
  it('refuses a secret that is not base32', () => {
    expectRefusedOnce(withTotp('JBSWY3DP1HPK3PX!'), 'openvpn.users[0].totp_secret', 'totp_secret', /not a base32 TOTP secret/);
  });
  it('refuses a secret shorter than 80 bits', () => {
    expectRefusedOnce(withTotp('JBSWY3DP'), 'openvpn.users[0].totp_secret', 'totp_secret', /at least 80 bits/);
  });
});

describe('ports', () => {
  it('refuses two apps on the same port and protocol', () => {
    const text = withSecondApp(keys('7c1e9a3f5d0b2846', '1f5b9d3a7e0c4862')).replace('port: 22', 'port: 1194  # here\n  protocol: udp');
    expectRefusedOnce(text, 'ssh.port', '# here', /1194\/udp is already the port of app openvpn/);
  });

  it('accepts the same port number on tcp and udp', () => {
    const text = withSecondApp(keys('7c1e9a3f5d0b2846', '1f5b9d3a7e0c4862')).replace('port: 22', 'port: 1194\n  protocol: tcp');
    expect(() => issuesOf(text)).toThrow(/loaded/);
  });

  it.each([
    ['http_port', 80, /step-1 port \(global\.http_port\)/],
    ['https_port', 443, /step-2 port \(global\.https_port\)/],
  ])('refuses a tcp app on the %s', (_key, port, message) => {
    const text = withSecondApp(keys('7c1e9a3f5d0b2846', '1f5b9d3a7e0c4862')).replace('port: 22', `port: ${port}`);
    expectRefusedOnce(text, 'ssh.port', `port: ${port}`, message);
  });

  it('refuses a kernel rate limit iptables cannot express', () => {
    const text = VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  step1_rate_per_second: 2000000\n');
    expectRefusedOnce(text, 'global.step1_rate_per_second', 'step1_rate_per_second', /expected a number <= 1000000, got 2000000/);
  });

  it('refuses equal step-1 and step-2 ports', () => {
    const text = VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  http_port: 8443\n  https_port: 8443\n');
    expectRefusedOnce(text, 'global.https_port', 'https_port', /must differ \(both are 8443\)/);
  });

  it.each([
    ['0', /expected a number >= 1, got 0/],
    ['65536', /expected a number <= 65535, got 65536/],
    ['"80"', /expected a number, got the text '80' \(remove the quotes\)/],
  ])('refuses the port %s', (port, message) => {
    expectRefusedOnce(VALID.replace('port: 1194', `port: ${port}`), 'openvpn.port', 'port:', message);
  });
});

describe('durations', () => {
  it.each([
    ['duration', '0', /expected a number >= 1, got 0/],
    ['duration', '-30', /expected a number >= 1, got -30/],
    ['duration', '1.5', /expected a whole number, got 1.5/],
    ['step2_https_duration', '0', /expected a number >= 1, got 0/],
  ])('refuses %s: %s', (key, value, message) => {
    const original = key === 'duration' ? 'duration: 3600' : 'step2_https_duration: 5';
    expectRefusedOnce(VALID.replace(original, `${key}: ${value}`), `openvpn.${key}`, `${key}: ${value}`, message);
  });

  it('requires duration', () => {
    expectRefusedOnce(VALID.replace('  duration: 3600\n', ''), 'openvpn.duration', 'openvpn:', /this key is required/);
  });
});

describe('names and unknown keys', () => {
  it.each(['open vpn', 'app!', 'x'.repeat(33), 'café'])('refuses the app name %j', (name) => {
    const text = VALID.replace('openvpn:', `"${name}":`);
    expectRefusedOnce(text, name, `"${name}":`, /app name .* is not 1-32 of A-Z a-z 0-9 _ -/);
  });

  it('suggests the closest key for a misspelt global key', () => {
    const issue = expectRefusedOnce(
      `${VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  https_prot: 8443\n')}`,
      'global.https_prot',
      'https_prot',
      /did you mean 'https_port'\?/,
    );
    expect(issue.column).toBe(3);
  });

  it('suggests the closest key for a misspelt app key', () => {
    expectRefusedOnce(
      VALID.replace('step2_https_duration: 5', 'step2_https_duration: 5\n  masquarade: false'),
      'openvpn.masquarade',
      'masquarade',
      /did you mean 'masquerade'\?/,
    );
  });

  it('suggests the closest key for a misspelt user key', () => {
    const text = `${VALID}  users:
    - name: erin
      access_key_http: 5b8e1f3a7d0c2946
      acess_key_https: 9a2d6f0c4e8b1735
`;
    const issues = issuesOf(text);
    expect(issues.map((issue) => [issue.path, issue.line, issue.message])).toEqual([
      ['openvpn.users[0].access_key_https', lineOf(text, '- name: erin'), 'this key is required'],
      ['openvpn.users[0].acess_key_https', lineOf(text, 'acess_key_https'), "unknown key 'acess_key_https'; did you mean 'access_key_https'?"],
    ]);
  });

  it('lists the allowed keys when nothing is close', () => {
    expectRefusedOnce(
      VALID.replace('step2_https_duration: 5', 'step2_https_duration: 5\n  colour: blue'),
      'openvpn.colour',
      'colour',
      /allowed here: port, access_key_http/,
    );
  });

  it('suggests global for a misspelt global section', () => {
    const issues = issuesOf(VALID.replace('global:', 'globl:'));
    expect(issues).toContainEqual(expect.objectContaining({ path: 'globl', line: 1, message: "unknown section 'globl'; did you mean 'global'?" }));
  });
});

describe('other values', () => {
  it.each([
    ['metrics_listen: 0.0.0.0:9464', 'global.metrics_listen', /not a loopback address/],
    ['metrics_listen: localhost:9464', 'global.metrics_listen', /expected IP:PORT/],
    ['state_dir: var/lib/kp', 'global.state_dir', /absolute path/],
    ['firewall_type: pf', 'global.firewall_type', /expected one of nftables, iptables, vyos; got the text 'pf'/],
    ['capture: pcap', 'global.capture', /expected one of auto, nfqueue, nflog/],
    ['ipv6: "yes"', 'global.ipv6', /expected true or false/],
    ['packet_mark: 0', 'global.packet_mark', /from 1 to 0xffffffff/],
    ['table_name: "knock port"', 'global.table_name', /expected a letter/],
    ['queue_num: 70000', 'global.queue_num', /<= 65535/],
    ['interface_int: "eth 1"', 'global.interface_int', /not an interface name/],
  ])('refuses %s', (line, path, message) => {
    const text = line.startsWith('interface_int')
      ? VALID.replace('interface_int: eth1', line)
      : VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  ${line}\n`);
    expectRefusedOnce(text, path, line.split(':')[0]!, message);
  });

  it('refuses a health-check name that is also an app name', () => {
    const text = VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  healthcheck_app_name: openvpn\n');
    expectRefusedOnce(text, 'global.healthcheck_app_name', 'healthcheck_app_name', /'openvpn' is also an app name/);
  });

  it.each([
    ['0x30000000', /must be a single bit .* not 0x30000000/],
    ['0', /expected a mark from 1/],
    ['0x4000', /shares bits with packet_mark \(0x4b50\)/],
  ])('refuses grant_mark %s', (mark, message) => {
    const text = VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n  grant_mark: ${mark}\n`);
    expectRefusedOnce(text, 'global.grant_mark', 'grant_mark', message);
  });

  it('accepts a single-bit grant_mark, the highest bit included', () => {
    const text = VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  grant_mark: 0x80000000\n');
    expect(load(text).global.grantMark).toBe(0x80000000);
  });

  it('warns that the per-source kernel budgets of earlier versions are ignored, and why', () => {
    const text = VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  syn_rate_per_second: 20\n  https_conn_rate_per_second: 10\n');
    const config = load(text);
    expect(config.warnings).toHaveLength(2);
    expect(config.warnings?.[0]).toMatch(
      /global\.syn_rate_per_second: ignored: per-source budgets in the kernel let anyone who forges a client's address lock it out/,
    );
    expect(config.global.step1RatePerSecond).toBe(100_000);
  });

  it('warns that masquerade is ignored on a local app', () => {
    const text = VALID.replace('destination: local', 'destination: local\n  masquerade: true');
    const config = load(text);
    expect(config.apps[0]!.masquerade).toBe(false);
    expect(config.warnings).toEqual([
      `test.yaml:${lineOf(text, 'masquerade')}:15: openvpn.masquerade: ignored: masquerade only applies to forwarded apps (destination IP or IP:PORT)`,
    ]);
  });

  it('reports a YAML syntax error with its line', () => {
    const text = VALID.replace('  protocol: udp', '  protocol: [udp');
    const issues = issuesOf(text);
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]!.line).toBeGreaterThanOrEqual(lineOf(text, 'protocol: [udp'));
    expect(issues[0]!.message).toMatch(/^YAML syntax error/);
  });

  it('reports a duplicate key with its line', () => {
    const text = VALID.replace('  protocol: udp', '  protocol: udp\n  protocol: tcp');
    expect(issuesOf(text)).toEqual([{ path: '', line: lineOf(text, 'protocol: tcp'), column: 3, message: 'YAML duplicate key: Map keys must be unique' }]);
  });
});

it('reports every problem in one pass, not only the first', () => {
  const text = `global:
  http_post_path: /step-1
  https_post_path: no-slash
  interface_ext: eth0
  http_prot: 8080
openvpn:
  port: 0
  access_key_http: [test_secret_http]
  access_key_https: [tiny]
  duration: -1
  step2_https_duration: 5
rdp:
  port: 3389
  destination: 127.0.0.1
  duration: 60
  step2_https_duration: 5
  access_key_http: [9d3b7f1a5c0e2864]
  access_key_https: [9d3b7f1a5c0e2864]
`;
  expect(issuesOf(text).map((issue) => [issue.path, issue.line])).toEqual([
    ['global.http_post_path', 2],
    ['global.https_post_path', 3],
    ['global.http_prot', 5],
    ['openvpn.port', 7],
    ['openvpn.access_key_http[0]', 8],
    ['openvpn.access_key_https[0]', 9],
    ['openvpn.duration', 10],
    ['rdp.destination', 14],
  ]);
});
