/** A reverse proxy or WAF in front of step 2: https_public_port, https_listen_address, trusted_proxies and the original's --waf-* flags. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../../../src/cli/main.js';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { publicStep2Port } from '../../../src/config/types.js';
import { expectRefusedOnce, issuesOf, load, VALID } from './helpers.js';

const withGlobal = (lines: string): string => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n${lines}`);
const PROXY_FRONT = withGlobal(
  '  https_public_port: 443\n  https_port: 8443\n  https_listen_address: 127.0.0.1\n  trusted_proxies: [127.0.0.1, "::1", 10.1.2.3/8]\n',
);

describe('config keys for a proxy in front of step 2', () => {
  it('reads them, with the trusted proxies as networks', () => {
    const config = load(PROXY_FRONT);
    expect(config.global).toMatchObject({
      step2PublicPort: 443,
      step2Port: 8443,
      step2ListenAddress: '127.0.0.1',
      trustedProxies: ['127.0.0.1/32', '::1/128', '10.1.2.3/8'],
    });
    expect(publicStep2Port(config.global)).toBe(443);
    expect(config.warnings).toBeUndefined();
  });

  it('defaults to no proxy: clients reach https_port itself, on every address, and no header is trusted', () => {
    const { global } = load(VALID);
    expect(global.step2PublicPort).toBeUndefined();
    expect(global.step2ListenAddress).toBeUndefined();
    expect(global.trustedProxies).toBeUndefined();
    expect(publicStep2Port(global)).toBe(443);
  });

  it('writes IPv6 addresses in one form', () => {
    const { global } = load(withGlobal('  https_listen_address: "0:0::1"\n  trusted_proxies: ["FD00:0::0:1/64"]\n'));
    expect(global.step2ListenAddress).toBe('::1');
    expect(global.trustedProxies).toEqual(['fd00::1/64']);
  });

  it('refuses a public step-2 port equal to the step-1 port', () => {
    expectRefusedOnce(
      withGlobal('  https_public_port: 80\n  trusted_proxies: [127.0.0.1]\n'),
      'global.https_public_port',
      'https_public_port',
      /is 80, the step-1 port \(global\.http_port\); the public step-2 port must differ/,
    );
  });

  it('refuses an app on the public step-2 port', () => {
    const text = withGlobal('  https_public_port: 1194\n  https_port: 8443\n  trusted_proxies: [127.0.0.1]\n').replace('protocol: udp', 'protocol: tcp');
    expectRefusedOnce(text, 'openvpn.port', '  port: 1194', /1194\/tcp is the public step-2 port \(global\.https_public_port\)/);
  });

  it('refuses entries of trusted_proxies that are not an IP or network, each at its line', () => {
    const text = withGlobal('  trusted_proxies:\n    - 127.0.0.1\n    - proxy.lan\n    - 10.0.0.0/33\n    - 0.0.0.0/0\n    - "::ffff:127.0.0.1"\n');
    const issues = issuesOf(text);
    expect(issues.map((issue) => [issue.path, issue.line])).toEqual([
      ['global.trusted_proxies[1]', 9],
      ['global.trusted_proxies[2]', 10],
      ['global.trusted_proxies[3]', 11],
      ['global.trusted_proxies[4]', 12],
    ]);
    expect(issues.map((issue) => issue.message)).toEqual([
      "'proxy.lan' is not an IP address or network (IP or IP/PREFIX, e.g. 127.0.0.1 or 10.0.0.0/8)",
      "'10.0.0.0/33': the prefix length must be a number from 0 to 32",
      "'0.0.0.0/0' trusts every address: anyone could claim to be any client; list only your proxies",
      'write the IPv4-mapped address ::ffff:127.0.0.1 as 127.0.0.1',
    ]);
  });

  it('refuses an https_listen_address that is not an IP address', () => {
    expectRefusedOnce(
      withGlobal('  https_listen_address: localhost\n'),
      'global.https_listen_address',
      'https_listen_address',
      /expected an IP address to listen on, e.g. 127\.0\.0\.1 or ::1; got 'localhost'/,
    );
    expectRefusedOnce(withGlobal('  https_listen_address: "fe80::1%eth0"\n'), 'global.https_listen_address', 'https_listen_address', /expected an IP address/);
  });

  it('warns when a public port is set but no proxy is trusted: every step 2 would be refused', () => {
    const config = load(withGlobal('  https_public_port: 443\n  https_port: 8443\n'));
    expect(config.warnings).toEqual([expect.stringMatching(/global\.https_public_port: differs from https_port but trusted_proxies is empty/)]);
  });
});

describe("the original's --waf-* flags", () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-waf-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, withGlobal('  https_port: 8443\n'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  async function check(...args: string[]): Promise<{ stdout: string; stderr: string; error?: unknown }> {
    let stdout = '';
    let stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
    try {
      await buildProgram()
        .exitOverride()
        .parseAsync(['node', 'knock-port', 'check', '-c', file, '--no-interface-check', ...args]);
      return { stdout, stderr };
    } catch (error) {
      return { stdout, stderr, error };
    }
  }

  it('--waf-https-port and --waf-trusted-ips set the public port and the trusted proxies', async () => {
    const { stdout, error } = await check('--waf-https-port', '443', '--waf-trusted-ips', '127.0.0.1,::1');
    expect(error).toBeUndefined();
    expect(stdout).toMatch(/step 2: 443\/tcp; knock-port listens on every address port 8443; client address from trusted proxies 127\.0\.0\.1\/32, ::1\/128/);
    expect(stdout).not.toContain('warnings');
  });

  it('--waf-trusted-ips refuses an entry that is not an IP or network', async () => {
    const { stderr, error } = await check('--waf-https-port', '443', '--waf-trusted-ips', '127.0.0.1,proxy');
    expect(error).toBeDefined();
    expect(stderr).toMatch(/--waf-trusted-ips.*'proxy' is not an IP address or network/);
  });

  it('names --waf-https-port when the port it sets clashes', async () => {
    const { error } = await check('--waf-https-port', '80', '--waf-trusted-ips', '127.0.0.1');
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/global\.https_public_port: is 80 \(set by --waf-https-port\), the step-1 port/);
  });

  it('refuses --waf-http-port: step 1 cannot sit behind a proxy', async () => {
    const { stderr, error } = await check('--waf-http-port', '8080');
    expect(error).toBeDefined();
    expect(stderr).toMatch(/--waf-http-port.*not supported: step 1 is read from packets on http_port itself and cannot sit behind a proxy/);
  });

  it('parseConfig takes the same overrides', () => {
    const config = parseConfig(VALID, 'test.yaml', { step2Port: 8443, step2PublicPort: 443, trustedProxies: ['127.0.0.1/32'] });
    expect(config.global).toMatchObject({ step2Port: 8443, step2PublicPort: 443, trustedProxies: ['127.0.0.1/32'] });
  });
});
