/**
 * `check` checks the TLS files as `run` does, named by --cert/--key or by global.tls_cert and
 * global.tls_key (the flags win), so a unit's pre-start check without flags catches a bad pair:
 * exit 10 naming the file, in text and in --json; a good pair is summarized.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCheck } from '../../../src/cli/commands/check.js';
import { runCli } from '../client/cli-harness.js';
import { VALID } from '../config/helpers.js';
import { selfSigned, serialOf, type PemPair } from '../../helpers/tls-certs.js';

let dir: string;
let good: PemPair;
let other: PemPair;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kp-check-tls-'));
  good = selfSigned(dir, 'good');
  other = selfSigned(dir, 'other');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configWith(tls: { cert?: string; key?: string }): string {
  const lines = `${tls.cert ? `  tls_cert: ${tls.cert}\n` : ''}${tls.key ? `  tls_key: ${tls.key}\n` : ''}`;
  const file = join(dir, `config-${files++}.yaml`);
  writeFileSync(file, VALID.replace('global:\n', `global:\n${lines}`), { mode: 0o600 });
  return file;
}

const check = (...args: string[]) => runCli(registerCheck, ['check', ...args, '--no-interface-check']);

describe('check and the TLS files', () => {
  it('a good pair from the config: exit 0 and a line saying which certificate, until when', async () => {
    const run = await check('-c', configWith({ cert: good.cert, key: good.key }));
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(`^tls: ${good.cert} with ${good.key}: CN=good, serial ${serialOf(good.cert)}, valid until \\S+ \\((59|60) days left\\)$`, 'm'),
    );
  });

  it('the config names them swapped: exit 10 naming the file and the keys, nothing on stdout', async () => {
    const run = await check('-c', configWith({ cert: good.key, key: good.cert }));
    expect(run.exitCode).toBe(10);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      `knock-port: the TLS certificate file ${good.key} (global.tls_cert) holds a private key and the TLS key file ${good.cert} (global.tls_key) a certificate: global.tls_cert and global.tls_key swapped?\n`,
    );
  });

  it('the flags override the config', async () => {
    const config = configWith({ cert: good.key, key: good.cert });
    expect((await check('-c', config, '--cert', good.cert, '--key', good.key)).exitCode).toBe(0);
    const mixed = await check('-c', config, '--key', good.key);
    expect(mixed.exitCode).toBe(10);
    expect(mixed.stderr).toContain('(global.tls_cert) holds a private key, not a certificate');
  });

  it('--json: {ok: false, errors} with the message, exit 10; a good pair adds tls to the summary', async () => {
    const bad = await check('-c', configWith({}), '--cert', good.cert, '--key', other.key, '--json');
    expect(bad.exitCode).toBe(10);
    const report = JSON.parse(bad.stdout) as { ok: boolean; errors: { path: string; message: string }[] };
    expect(report.ok).toBe(false);
    expect(report.errors).toEqual([
      { path: '', message: expect.stringMatching(/^the key in the TLS key file .* \(--key\) does not belong to the certificate in /) },
    ]);
    const ok = await check('-c', configWith({}), '--cert', good.cert, '--key', good.key, '--json');
    expect(ok.exitCode).toBe(0);
    expect((JSON.parse(ok.stdout) as { tls: unknown }).tls).toEqual({
      cert: good.cert,
      key: good.key,
      subject: 'CN=good',
      serial: serialOf(good.cert),
      fingerprint256: expect.any(String),
      notAfter: expect.any(String),
      daysLeft: expect.any(Number),
    });
  });

  it('a certificate without its key is a usage error (2); no TLS named at all checks the config alone', async () => {
    const half = await check('-c', configWith({}), '--cert', good.cert);
    expect(half.exitCode).toBe(2);
    expect(half.stderr).toBe('knock-port: a TLS certificate (--cert) without its key: give --key FILE or set global.tls_key\n');
    const none = await check('-c', configWith({}));
    expect(none.exitCode).toBe(0);
    expect(none.stdout).not.toContain('tls:');
  });
});
