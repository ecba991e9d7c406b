import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { digestKey } from '../../../src/config/key-digest.js';
import { expectRefusedOnce, issuesOf, load, VALID } from './helpers.js';

/** VALID with these lines added to its global section. */
const withGlobal = (...lines: string[]) => VALID.replace('  interface_int: eth1\n', `  interface_int: eth1\n${lines.map((line) => `  ${line}\n`).join('')}`);

describe('the metrics endpoint keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kp-metrics-auth-'));
  const tokenFile = join(dir, 'metrics.token');
  const token = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o640 });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads a config without them as before: loopback, nothing protecting it', () => {
    const global = load(withGlobal('metrics_listen: 127.0.0.1:9464')).global;
    expect(global.metricsListen).toBe('127.0.0.1:9464');
    expect(global.metricsAuth).toBeUndefined();
  });

  it('accepts any address with a token file, keeping only the digest of the token', () => {
    const config = load(withGlobal('metrics_listen: 0.0.0.0:9464', `metrics_token_file: ${tokenFile}`));
    expect(config.global.metricsListen).toBe('0.0.0.0:9464');
    expect(config.global.metricsAuth).toEqual({ tokenDigest: digestKey(token) });
    expect(JSON.stringify(config)).not.toContain(token);
    expect(config.warnings).toBeUndefined();
  });

  it('accepts any address with TLS and client certificates, and loopback with TLS alone', () => {
    const tls = ['metrics_tls_cert: /etc/kp/m.crt', 'metrics_tls_key: /etc/kp/m.key'];
    const clientCa = load(withGlobal('metrics_listen: "[2001:db8::1]:9464"', ...tls, 'metrics_tls_client_ca: /etc/kp/ca.crt'));
    expect(clientCa.global.metricsAuth).toEqual({ tls: { cert: '/etc/kp/m.crt', key: '/etc/kp/m.key', clientCa: '/etc/kp/ca.crt' } });
    expect(load(withGlobal('metrics_listen: 127.0.0.1:9464', ...tls)).global.metricsAuth).toEqual({ tls: { cert: '/etc/kp/m.crt', key: '/etc/kp/m.key' } });
  });

  it('refuses an address other than loopback with nothing, or TLS alone, to keep others out', () => {
    for (const extra of [[], ['metrics_tls_cert: /etc/kp/m.crt', 'metrics_tls_key: /etc/kp/m.key']]) {
      expectRefusedOnce(
        withGlobal('metrics_listen: 192.0.2.1:9464', ...extra),
        'global.metrics_listen',
        'metrics_listen',
        /not a loopback address.*metrics_token_file/,
      );
    }
  });

  it('refuses half a TLS pair, client certificates without TLS, and the keys without metrics_listen', () => {
    expectRefusedOnce(withGlobal('metrics_listen: 127.0.0.1:9464', 'metrics_tls_cert: /m.crt'), 'global.metrics_tls_cert', 'metrics_tls_cert', /go together/);
    expectRefusedOnce(withGlobal('metrics_listen: 127.0.0.1:9464', 'metrics_tls_client_ca: /ca.crt'), 'global.metrics_tls_client_ca', 'client_ca', /need TLS/);
    expectRefusedOnce(withGlobal(`metrics_token_file: ${tokenFile}`), 'global.metrics_token_file', 'metrics_token_file', /only used with metrics_listen/);
  });

  it('refuses a missing, short or spaced token file without quoting it, and warns when everyone can read it', () => {
    const listen = 'metrics_listen: 0.0.0.0:9464';
    expectRefusedOnce(withGlobal(listen, `metrics_token_file: ${join(dir, 'none')}`), 'global.metrics_token_file', 'metrics_token_file', /does not exist/);
    for (const [name, content] of [
      ['short', 'abc123'],
      ['spaced', 'abcdef0123456789 abcdef0123456789'],
    ] as const) {
      writeFileSync(join(dir, name), content, { mode: 0o600 });
      const [issue] = issuesOf(withGlobal(listen, `metrics_token_file: ${join(dir, name)}`));
      expect(issue!.message).toMatch(/at least 16 characters.*openssl rand -hex 32/);
      expect(issue!.message).not.toContain(content);
    }
    chmodSync(tokenFile, 0o644);
    expect(load(withGlobal(listen, `metrics_token_file: ${tokenFile}`)).warnings).toEqual([expect.stringMatching(/every user of this host \(mode 0644\)/)]);
    chmodSync(tokenFile, 0o640);
  });
});
