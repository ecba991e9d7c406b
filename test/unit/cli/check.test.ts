/**
 * `knock-port check` protects the operator: this project's own example config is refused (its
 * secrets are published), a config holding clear keys that every user can read is warned about,
 * and `--json` gives the same verdict as one object, without secrets.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registerCheck } from '../../../src/cli/commands/check.js';
import { exposedKeysWarning } from '../../../src/config/file-exposure.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { hashedKeyString } from '../../../src/config/key-digest.js';
import { runCli } from '../client/cli-harness.js';
import { EXAMPLE_CONFIG, EXAMPLE_SECRET, exampleWithFreshSecrets, VALID } from '../config/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-cli-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** `text` in a fresh file with exactly `mode` (the umask does not apply to chmod). */
function configFile(text: string, mode: number): string {
  const file = join(dir, `config-${files++}.yaml`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

// The example's eth0/eth1 need not exist where the tests run.
const check = (...args: string[]) => runCli(registerCheck, ['check', ...args, '--no-interface-check']);
const EXPOSED = /holds keys in clear and every user of this host can read it/;

/** VALID with both keys as sha256: digests, and no other key in clear. */
const HASHED = VALID.replace('3f9a1c7e5b2d8046', hashedKeyString('3f9a1c7e5b2d8046')).replace('b6e2d4f8a1c39057', hashedKeyString('b6e2d4f8a1c39057'));

describe('check refuses the published example config', () => {
  it('exits 1 listing every secret of config.example.yaml as published, never quoting one', async () => {
    const run = await check('-c', EXAMPLE_CONFIG);
    const secrets = readFileSync(EXAMPLE_CONFIG, 'utf8').match(EXAMPLE_SECRET)!;
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(`knock-port: invalid config ${EXAMPLE_CONFIG} (${secrets.length} problems):`);
    expect(run.stderr.match(/this is a published example path that anyone can try/g)).toHaveLength(2);
    expect(run.stderr.match(/this is a published example key that anyone can try; .*knock-port hash-key/g)).toHaveLength(10);
    expect(run.stderr.match(/this is a published example TOTP secret that anyone can try; .*knock-port totp new/g)).toHaveLength(2);
    for (const secret of secrets) expect(run.stderr).not.toContain(secret.replace(/^sha256:/, ''));
  });

  it('--json: {ok: false, config, errors} with each error located, exit 1', async () => {
    const run = await check('-c', EXAMPLE_CONFIG, '--json');
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toBe('');
    const report = JSON.parse(run.stdout) as { ok: boolean; config: string; errors: { path: string; line: number; column: number; message: string }[] };
    expect(Object.keys(report).sort()).toEqual(['config', 'errors', 'ok']);
    expect(report.ok).toBe(false);
    expect(report.config).toBe(EXAMPLE_CONFIG);
    expect(report.errors[0]).toEqual({
      path: 'global.http_post_path',
      line: expect.any(Number),
      column: expect.any(Number),
      message: expect.stringMatching(/published example path/),
    });
    expect(report.errors.map((error) => error.path)).toContain('ssh.users[0].totp_secret');
    expect(report.errors.map((error) => error.path)).toContain('ssh.users[1].access_key_http');
    for (const secret of readFileSync(EXAMPLE_CONFIG, 'utf8').match(EXAMPLE_SECRET)!) expect(run.stdout).not.toContain(secret.replace(/^sha256:/, ''));
  });
});

describe('check warns about clear keys every user can read', () => {
  it('mode 0644 with clear keys: a warning on stderr that says what to do, still exit 0', async () => {
    const file = configFile(VALID, 0o644);
    const run = await check('-c', file);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain(`config OK: ${file}`);
    expect(run.stderr).toBe(
      `knock-port: warning: ${file} holds keys in clear and every user of this host can read it (mode 0644): chmod 640 ${file} && chown root:knock-port ${file}, or store the keys as sha256: digests (knock-port hash-key)\n`,
    );
    expect(run.stderr).not.toContain('3f9a1c7e5b2d8046');
  });

  it('also for clear keys in a users: list, and for 0604', async () => {
    const text = `${HASHED}  users:\n    - name: carol\n      access_key_http: 5b8e1f3a7d0c2946\n      access_key_https: ${hashedKeyString('9a2d6f0c4e8b1735')}\n`;
    expect(exposedKeysWarning(loadConfigFile(configFile(text, 0o644)))).toMatch(EXPOSED);
    expect(exposedKeysWarning(loadConfigFile(configFile(VALID, 0o604)))).toMatch(/\(mode 0604\)/);
  });

  it('no warning for mode 0640, nor for 0644 holding only sha256: digests', async () => {
    for (const file of [configFile(VALID, 0o640), configFile(VALID, 0o600), configFile(HASHED, 0o644)]) {
      const run = await check('-c', file);
      expect([run.exitCode, run.stderr]).toEqual([0, '']);
      const json = await check('-c', file, '--json');
      expect((JSON.parse(json.stdout) as { warnings: string[] }).warnings.filter((warning) => EXPOSED.test(warning))).toEqual([]);
    }
  });

  it('--json carries the warning, on stdout only', async () => {
    const file = configFile(VALID, 0o644);
    const run = await check('-c', file, '--json');
    expect([run.exitCode, run.stderr]).toEqual([0, '']);
    const report = JSON.parse(run.stdout) as { warnings: string[] };
    expect(report.warnings.filter((warning) => EXPOSED.test(warning))).toEqual([expect.stringContaining(`chmod 640 ${file}`)]);
  });
});

describe('check --json', () => {
  it('{ok: true, config, summary, warnings}: the summary without any secret', async () => {
    const text = exampleWithFreshSecrets();
    const file = configFile(text, 0o640);
    const run = await check('-c', file, '--json', '--http-port', '8080');
    expect([run.exitCode, run.stderr]).toEqual([0, '']);
    const report = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(Object.keys(report).sort()).toEqual(['config', 'ok', 'summary', 'warnings']);
    expect(report).toMatchObject({
      ok: true,
      config: file,
      summary: {
        config: file,
        step1: { port: 8080, handshake: 'cookie', reply: 'silent', xdp: 'off' },
        step2: { port: 443, listenPort: 443, trustedProxies: [] },
        rateLimitPerMinute: 60,
        sourcePrefix: { ipv4: 32, ipv6: 64 },
        firewall: { type: 'nftables', table: 'knockport' },
        capture: 'auto',
        ipv6: true,
        interfaces: { external: 'eth0', internal: 'eth1' },
      },
    });
    expect((report.summary as { apps: unknown[] }).apps).toEqual([
      {
        name: 'openvpn',
        port: 1194,
        protocol: 'udp',
        destination: 'local',
        masquerade: false,
        duration: 86400,
        endFlowsOnExpiry: false,
        alwaysAllow: [],
        step2HttpsDuration: 5,
        users: 2,
        usersWithTotp: 0,
        usersWithStep1Otp: 0,
      },
      {
        name: 'ssh',
        port: 22,
        protocol: 'tcp',
        destination: 'local',
        masquerade: false,
        duration: 3600,
        endFlowsOnExpiry: false,
        alwaysAllow: [],
        step2HttpsDuration: 5,
        users: 2,
        usersWithTotp: 1,
        usersWithStep1Otp: 1,
      },
      {
        name: 'rdp',
        port: 13389,
        protocol: 'tcp',
        destination: '192.168.10.20:3389',
        masquerade: true,
        duration: 28800,
        endFlowsOnExpiry: false,
        alwaysAllow: [],
        step2HttpsDuration: 5,
        users: 1,
        usersWithTotp: 0,
        usersWithStep1Otp: 0,
      },
    ]);
    expect(Array.isArray(report.warnings)).toBe(true);
    for (const secret of text.match(EXAMPLE_SECRET)!) expect(run.stdout).not.toContain(secret.replace(/^sha256:/, ''));
  });
});
