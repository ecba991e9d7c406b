import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../../../src/cli/main.js';
import { ConfigError } from '../../../src/config/load.js';
import { EXAMPLE_CONFIG, EXAMPLE_SECRET, exampleWithFreshSecrets, lineOf, VALID } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-check-'));
// The example as an operator fills it in: fresh secrets, readable by root and the daemon's group only.
const exampleConfig = join(dir, 'config.yaml');
writeFileSync(exampleConfig, exampleWithFreshSecrets(), { mode: 0o640 });
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** Runs `knock-port check ...` in-process (the example's eth0/eth1 need not exist here); returns stdout, or the error main() would print before exiting 1. */
async function check(...args: string[]): Promise<{ stdout: string; error?: unknown }> {
  let stdout = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await buildProgram()
      .exitOverride()
      .parseAsync(['node', 'knock-port', 'check', ...args, '--no-interface-check']);
    return { stdout };
  } catch (error) {
    return { stdout, error };
  }
}

describe('knock-port check', () => {
  it('refuses config.example.yaml as published: its secrets are public', async () => {
    const { stdout, error } = await check('-c', EXAMPLE_CONFIG);
    expect(stdout).toBe('');
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues).toHaveLength(readFileSync(EXAMPLE_CONFIG, 'utf8').match(EXAMPLE_SECRET)!.length);
  });

  it('prints a summary of the example config with fresh secrets and succeeds', async () => {
    const { stdout, error } = await check('-c', exampleConfig);
    expect(error).toBeUndefined();
    expect(stdout).toContain(`config OK: ${exampleConfig}`);
    expect(stdout).toMatch(/step 1: 80\/tcp .*step 2: 443\/tcp/);
    expect(stdout).toMatch(/firewall: nftables .*capture: auto; IPv6: on/);
    expect(stdout).toMatch(/apps \(3\):/);
    expect(stdout).toMatch(/openvpn +1194\/udp +-> local +open 86400 s, step-2 window 5 s, 2 users/);
    expect(stdout).toMatch(/ssh +22\/tcp +-> local .*2 users \(1 with step-2 TOTP, 1 with step-1 OTP\)/);
    expect(stdout).toMatch(/rdp +13389\/tcp +-> 192\.168\.10\.20:3389 \(masquerade\)/);
  });

  it('never prints a path, key or TOTP secret', async () => {
    const { stdout } = await check('-c', exampleConfig);
    const secrets = readFileSync(exampleConfig, 'utf8').match(/\/[0-9a-f]{32}|\b[0-9a-f]{32}\b|sha256:[0-9a-f]{64}|\b[A-Z2-7]{32}\b/g)!;
    expect(secrets.length).toBeGreaterThanOrEqual(12);
    for (const secret of secrets) expect(stdout).not.toContain(secret);
  });

  it('applies command-line overrides', async () => {
    const { stdout, error } = await check(
      '-c',
      exampleConfig,
      '--http-port',
      '8080',
      '--https-port',
      '8443',
      '--firewall-type',
      'iptables',
      '--capture',
      'nflog',
    );
    expect(error).toBeUndefined();
    expect(stdout).toMatch(/step 1: 8080\/tcp .*step 2: 8443\/tcp/);
    expect(stdout).toMatch(/firewall: iptables .*capture: nflog/);
  });

  it('fails with every problem, each as FILE:LINE:COL: PATH: message', async () => {
    const text = VALID.replace('/a8Fq2Lm9Zx', '/step-1').replace('port: 1194', 'port: 0').replace('duration: 3600', 'duration: 0');
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, text);
    const { stdout, error } = await check('-c', file);
    expect(stdout).toBe('');
    expect(error).toBeInstanceOf(ConfigError);
    const lines = (error as ConfigError).message.split('\n');
    expect(lines[0]).toBe(`invalid config ${file} (3 problems):`);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^  ${file}:${lineOf(text, 'http_post_path')}:19: global\\.http_post_path: this is a published example path`)),
      expect.stringMatching(new RegExp(`^  ${file}:${lineOf(text, 'port: 0')}:9: openvpn\\.port: expected a number >= 1, got 0$`)),
      expect.stringMatching(new RegExp(`^  ${file}:${lineOf(text, 'duration: 0')}:13: openvpn\\.duration: expected a number >= 1, got 0$`)),
    ]);
  });

  it('fails when the file cannot be read', async () => {
    const { error } = await check('-c', join(dir, 'missing.yaml'));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('missing.yaml: cannot read the config file: no such file');
  });

  it('prints warnings for accepted but unused keys', async () => {
    const file = join(dir, 'warn.yaml');
    writeFileSync(file, VALID.replace('  interface_int: eth1\n', '  interface_int: eth1\n  healthcheck_app_name: healthcheck\n'));
    const { stdout, error } = await check('-c', file);
    expect(error).toBeUndefined();
    expect(stdout).toMatch(new RegExp(`warnings:\\n  ${file}:7:25: global\\.healthcheck_app_name: accepted but not used`));
  });
});
