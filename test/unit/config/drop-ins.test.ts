import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, type ConfigIssue } from '../../../src/config/load.js';
import { summarizeConfig } from '../../../src/config/summary.js';
import { lineOf, VALID } from './helpers.js';

const ALICE = `ssh:
  users:
    - name: alice
      access_key_http: 7c1e9a2b4d6f8031
      access_key_https: e5a3c1f9b7d20486
`;

const SSH = `ssh:
  port: 22
  duration: 3600
  step2_https_duration: 5
  users:
    - name: root
      access_key_http: 0a9b8c7d6e5f4a3b
      access_key_https: 1f2e3d4c5b6a7980
`;

describe('config drop-ins (conf.d/*.yaml, then users.d/*.yaml, in name order)', () => {
  let dir: string;
  let config: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'knock-dropins-'));
    config = join(dir, 'config.yaml');
    writeFileSync(config, VALID + SSH);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function dropIn(folder: 'conf.d' | 'users.d', name: string, text: string): string {
    mkdirSync(join(dir, folder), { recursive: true });
    const file = join(dir, folder, name);
    writeFileSync(file, text);
    return file;
  }

  function issues(): ConfigIssue[] {
    try {
      loadConfigFile(config);
    } catch (err) {
      if (err instanceof ConfigError) return err.issues;
      throw err;
    }
    throw new Error('expected the config to be refused');
  }

  it('a users.d file adds its user to an app of the config file, and check names the drop-ins it read', () => {
    dropIn('users.d', 'alice.yaml', ALICE);
    dropIn(
      'conf.d',
      '10-web.yaml',
      'web:\n  port: 8080\n  duration: 60\n  step2_https_duration: 5\n  access_key_http: 9d8c7b6a5f4e3d2c\n  access_key_https: 2c3d4e5f6a7b8c9d\nglobal:\n  ipv6: false\n',
    );
    const loaded = loadConfigFile(config);
    expect(loaded.apps.find((app) => app.name === 'ssh')!.users.map((user) => user.name)).toEqual(['root', 'alice']);
    expect(loaded.apps.map((app) => app.name)).toEqual(['openvpn', 'ssh', 'web']);
    expect(loaded.global.ipv6).toBe(false);
    expect(summarizeConfig(loaded)).toContain(`config OK: ${config} with conf.d/10-web.yaml, users.d/alice.yaml`);
  });

  it("a problem in a drop-in is reported at the drop-in's own file, line and column", () => {
    const text = ALICE.replace('access_key_https: e5a3c1f9b7d20486', 'access_key_https: e5a3c1f9b7d20486\n      totp_secret: not-base32!');
    const file = dropIn('users.d', 'alice.yaml', text);
    const [issue, ...rest] = issues();
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({ file, line: lineOf(text, 'totp_secret'), column: 20, path: 'ssh.users[1].totp_secret' });
  });

  it('an unknown key in a drop-in is located at the key, with the usual hint', () => {
    const text = 'global:\n  ipv7: false\n';
    const file = dropIn('conf.d', 'net.yaml', text);
    expect(issues()).toEqual([
      expect.objectContaining({ file, line: 2, column: 3, path: 'global.ipv7', message: expect.stringMatching(/did you mean 'ipv6'/) }),
    ]);
  });

  it('a global key set twice is refused at the later file, naming the earlier one (name order decides)', () => {
    dropIn('conf.d', '10-a.yaml', 'global:\n  ipv6: false\n');
    const later = dropIn('conf.d', '20-b.yaml', '# b\nglobal:\n  ipv6: true\n');
    expect(issues()).toEqual([
      expect.objectContaining({ file: later, line: 3, path: 'global.ipv6', message: `global.ipv6 is already set in ${join(dir, 'conf.d', '10-a.yaml')}` }),
    ]);
  });

  it('a drop-in may not change an app defined elsewhere, only add users to it', () => {
    const file = dropIn('conf.d', 'ssh.yaml', 'ssh:\n  port: 2222\n');
    expect(issues()).toEqual([
      expect.objectContaining({ file, line: 2, path: 'ssh.port', message: `app ssh is defined in ${config}: a drop-in adds users to it, not its port` }),
    ]);
  });

  it('two drop-ins giving one app the same user name: the second is refused at its line', () => {
    dropIn('users.d', 'alice.yaml', ALICE);
    const text = ALICE.replace('7c1e9a2b4d6f8031', '5b4a39281706f5e4').replace('e5a3c1f9b7d20486', 'd4c3b2a1f0e9d8c7');
    const file = dropIn('users.d', 'alice2.yaml', text);
    const found = issues();
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ file, path: 'ssh.users[2].name' });
    expect(found[0]!.line).toBe(lineOf(text, 'name: alice'));
  });

  it('a YAML syntax error in a drop-in names that file and line', () => {
    const file = dropIn('users.d', 'bad.yaml', 'ssh:\n  users:\n    - name: "unclosed\n');
    const found = issues();
    expect(found[0]!.file).toBe(file);
    expect(found[0]!.message).toMatch(/^YAML syntax error/);
  });

  it('an empty drop-in changes nothing; files not ending in .yaml are not read', () => {
    dropIn('users.d', 'empty.yaml', '# nobody yet\n');
    dropIn('users.d', 'alice.yaml.disabled', 'not: [valid');
    expect(loadConfigFile(config).apps.find((app) => app.name === 'ssh')!.users).toHaveLength(1);
  });
});
