import { describe, expect, it } from 'vitest';
import { hashedKeyString } from '../../../src/config/key-digest.js';
import { totpAt } from '../../../src/auth/totp.js';
import { base32Decode } from '../../../src/shared/otp-format.js';
import { registerHashKey } from '../../../src/cli/commands/hash-key.js';
import { registerTotp } from '../../../src/cli/commands/totp.js';
import { runCli } from './cli-harness.js';

describe('knock-port hash-key', () => {
  it('prints sha256:<hex> of the piped key, without its trailing newline', async () => {
    const run = await runCli(registerHashKey, ['hash-key'], { stdin: 'correct-horse-battery\n' });
    expect(run.exitCode).toBe(0);
    // Independent reference: `printf %s correct-horse-battery | sha256sum`.
    expect(run.stdout).toBe('sha256:62249369389075490555a758353aec61500c6218fa597252d52dc4bd0148f12d\n');
  });

  it('asks on a terminal without echo and never prints the key', async () => {
    const run = await runCli(registerHashKey, ['hash-key'], { stdinIsTTY: true, answers: ['terminal-typed-key'] });
    expect(run.exitCode).toBe(0);
    expect(run.asked).toHaveLength(1);
    expect(run.stdout).toBe(`${hashedKeyString('terminal-typed-key')}\n`);
    expect(run.stdout + run.stderr).not.toContain('terminal-typed-key');
  });

  it('refuses keys shorter than 10 characters and more than one line, as usage errors (exit 2)', async () => {
    const short = await runCli(registerHashKey, ['hash-key'], { stdin: 'abc123\n' });
    expect(short.exitCode).toBe(2);
    expect(short.stdout).toBe('');
    expect(short.stderr).toContain('at least 10');
    const twoLines = await runCli(registerHashKey, ['hash-key'], { stdin: 'first-key-123\nsecond-key-456\n' });
    expect(twoLines.exitCode).toBe(2);
    expect(twoLines.stderr).toContain('one key on one line');
  });
});

describe('knock-port totp', () => {
  it('new: prints a 160-bit base32 secret and a matching otpauth URI, no QR code when piped', async () => {
    const run = await runCli(registerTotp, ['totp', 'new', '--user', 'alice', '--issuer', 'Gate Way']);
    expect(run.exitCode).toBe(0);
    const secret = /^secret: ([A-Z2-7]+)$/m.exec(run.stdout)?.[1];
    expect(secret).toBeDefined();
    expect(base32Decode(secret!)).toHaveLength(20);
    const uri = new URL(/^uri: +(\S+)$/m.exec(run.stdout)![1]!);
    expect(uri.protocol).toBe('otpauth:');
    expect(decodeURIComponent(uri.href)).toContain('otpauth://totp/Gate Way:alice?');
    expect(uri.searchParams.get('secret')).toBe(secret);
    expect(uri.searchParams.get('issuer')).toBe('Gate Way');
    expect(run.stdout).not.toMatch(/[█▀▄]/);
  });

  it('new: adds a terminal QR code when stdout is a terminal', async () => {
    const run = await runCli(registerTotp, ['totp', 'new', '--user', 'bob'], { stdoutIsTTY: true });
    expect(run.exitCode).toBe(0);
    const qrLines = run.stdout.split('\n').filter((line) => /[█▀▄]/.test(line));
    expect(qrLines.length).toBeGreaterThan(10);
  });

  it('new: two runs give two different secrets', async () => {
    const secretOf = async () => /^secret: (\S+)$/m.exec((await runCli(registerTotp, ['totp', 'new', '--user', 'x'])).stdout)?.[1];
    expect(await secretOf()).not.toBe(await secretOf());
  });

  it('code: prints the current RFC 6238 code for a secret', async () => {
    const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
    const before = totpAt(secret, Date.now() / 1000);
    const run = await runCli(registerTotp, ['totp', 'code', '--secret', secret]);
    const after = totpAt(secret, Date.now() / 1000);
    expect(run.exitCode).toBe(0);
    expect([`${before}\n`, `${after}\n`]).toContain(run.stdout);
  });

  it('code: refuses a secret that is not base32, and a missing --secret, as usage errors (exit 2)', async () => {
    const bad = await runCli(registerTotp, ['totp', 'code', '--secret', 'not-base32!']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('not valid base32');
    const missing = await runCli(registerTotp, ['totp', 'code']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain('--secret');
  });
});
