/**
 * One convention for every command: exit 0 on success, 1 on a runtime failure, 2 on a usage
 * error (commander's convention; `knock` adds its own codes from 3 up), and every operator error on one
 * line starting with `knock-port: ` (then maybe commander's hints). Flags that would do nothing for a command are not offered.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registerCommands } from '../../../src/cli/commands/index.js';
import { ExitCode, KnockExitCode } from '../../../src/client/exit-codes.js';
import { KnockPortError } from '../../../src/shared/errors.js';
import { runCli, type CliInput } from '../client/cli-harness.js';
import { VALID } from '../config/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kp-exit-codes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = join(dir, 'config.yaml');
writeFileSync(config, VALID, { mode: 0o640 });

/** `knock-port <args>` with every command, as the binary runs it. */
const cli = (args: string[], input?: CliInput) => runCli((program, terminal) => registerCommands(program, terminal), args, input);

/** The error is one line with the one prefix, maybe followed by commander's usage hint. */
function expectOnePrefix(stderr: string, message: RegExp): void {
  const [first, ...rest] = stderr.trimEnd().split('\n');
  expect(first).toMatch(/^knock-port: /);
  expect(first).toMatch(message);
  expect(first).not.toMatch(/^knock-port: (error|knock):/);
  expect(rest.filter((line) => line !== '(run with --help for usage)' && !/^\(Did you mean .*\?\)$/.test(line))).toEqual([]);
}

describe('usage errors exit 2 in every command', () => {
  it.each([
    [['nope'], /unknown command 'nope'/],
    [['check', '--bogus'], /unknown option '--bogus'/],
    [['check', '-c', config, '--http-port', '0'], /option '--http-port <port>' argument '0' is invalid\. expected a port number 1-65535/],
    [['check', '-c', config, '--waf-http-port', '80'], /not supported: step 1 is read from packets/],
    [['rules', '--firewall-type', 'pf'], /argument 'pf' is invalid\. Allowed choices are nftables, iptables, vyos/],
    [['replay', '-c', config], /missing required argument 'file'/],
    [['watch', '-c', config], /required option '--iface <name>' not specified/],
    [['sessions', '--socket'], /option '--socket <path>' argument missing/],
    [['revoke', 'not-an-ip'], /expected an IPv4 or IPv6 address/],
    [['run', '-c', config], /no TLS certificate: give --cert and --key, or set global.tls_cert and global.tls_key/],
    [['hash-key', 'extra'], /too many arguments for 'hash-key'/],
    [['totp', 'code'], /required option '--secret <base32>' not specified/],
    [['totp', 'code', '--secret', '0000'], /not valid base32/],
    [['knock', '--bogus'], /unknown option '--bogus'/],
    [['knock', '--host', 'gw', '--http-path', '/a', '--https-path', '/b'], /--app is required/],
    [['knock', '--insecure', '--ca', 'x.pem'], /cannot be used with/],
  ])('knock-port %j', async (args, message) => {
    const run = await cli(args, { env: { KNOCK_PORT_HTTP_KEY: 'k1-0123456789', KNOCK_PORT_HTTPS_KEY: 'k2-0123456789' } });
    expect(run.exitCode).toBe(ExitCode.usage);
    expect(run.stdout).toBe('');
    expectOnePrefix(run.stderr, message);
  });

  it("knock's documented usage code is the same 2", () => {
    expect(KnockExitCode.usage).toBe(ExitCode.usage);
    expect(KnockExitCode.failed).toBe(ExitCode.failed);
  });

  it('no command at all is a usage error too (help on stderr)', async () => {
    const run = await cli([]);
    expect(run.exitCode).toBe(ExitCode.usage);
    expect(run.stderr).toContain('Usage: knock-port');
  });
});

describe('flags that would do nothing are not offered', () => {
  it.each([
    [['check', '-c', config, '--log-level', 'debug'], '--log-level'],
    [['check', '-c', config, '--state-dir', '/tmp'], '--state-dir'],
    [['rules', '-c', config, '--log-level', 'debug'], '--log-level'],
    [['rules', '-c', config, '--state-dir', '/tmp'], '--state-dir'],
    [['uninstall', '-c', config, '--log-level', 'debug'], '--log-level'],
    [['replay', '-c', config, '--capture', 'nflog', 'x.pcap'], '--capture'],
    [['replay', '-c', config, '--firewall-type', 'iptables', 'x.pcap'], '--firewall-type'],
    [['watch', '--iface', 'lo', '-c', config, '--https-port', '8443'], '--https-port'],
  ])('knock-port %j', async (args, flag) => {
    const run = await cli(args);
    expect(run.exitCode).toBe(ExitCode.usage);
    expectOnePrefix(run.stderr, new RegExp(`unknown option '${flag}'`));
  });

  it('help lists only the flags each command uses', async () => {
    const help = async (command: string) => (await cli([command, '--help'])).stdout;
    expect(await help('run')).toMatch(/--log-level[\s\S]*--state-dir|--state-dir[\s\S]*--log-level/);
    for (const command of ['check', 'rules', 'uninstall', 'replay', 'watch']) expect(await help(command)).not.toMatch(/--log-level|--state-dir/);
    expect(await help('replay')).toContain('--http-port');
    expect(await help('replay')).not.toMatch(/--https-port|--capture|--firewall-type|--waf/);
  });
});

describe('runtime failures exit 1, with the same prefix', () => {
  it.each([
    [['check', '-c', join(dir, 'missing.yaml')], /^knock-port: invalid config .*missing\.yaml \(1 problem\):/],
    [['health', '--socket', join(dir, 'none.sock')], /^knock-port: no control socket at /],
    [['replay', '-c', config, join(dir, 'missing.pcap')], /^knock-port: /],
  ])('knock-port %j', async (args, message) => {
    const run = await cli(args);
    expect(run.exitCode).toBe(ExitCode.failed);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(/^error:|^knock-port knock:/m);
  });

  it('knock: a failure has its own code and the same prefix', async () => {
    // Nothing listens on port 1 of the loopback: step 1 cannot connect.
    const run = await cli(['knock', '--host', '127.0.0.1', '--http-port', '1', '--http-path', '/a', '--https-path', '/b', '--app', 'x', '-q'], {
      env: { KNOCK_PORT_HTTP_KEY: 'k1-0123456789', KNOCK_PORT_HTTPS_KEY: 'k2-0123456789' },
    });
    expect(run.exitCode).toBe(KnockExitCode.step1Unreachable);
    expect(run.stderr).toMatch(/^knock-port: step 1: /);
  });
});

describe('a crash is shown with where it happened', () => {
  /** `knock-port boom`, a command that throws `thrown`. */
  const boom = (thrown: Error) => runCli((program) => void program.command('boom').action(() => Promise.reject(thrown)), ['boom']);

  it('an unexpected error prints its stack', async () => {
    const run = await boom(new TypeError('cannot read x of undefined'));
    expect(run.exitCode).toBe(ExitCode.failed);
    const [first, ...rest] = run.stderr.trimEnd().split('\n');
    expect(first).toBe('knock-port: TypeError: cannot read x of undefined');
    expect(rest[0]).toMatch(/^\s+at .*exit-codes\.test\.ts/);
  });

  it('an operator error stays its one-line message', async () => {
    const run = await boom(new KnockPortError('state_dir /nope is not writable'));
    expect([run.exitCode, run.stderr]).toEqual([ExitCode.failed, 'knock-port: state_dir /nope is not writable\n']);
  });
});

describe('success exits 0', () => {
  it.each([[['check', '-c', config, '--no-interface-check']], [['help', 'check']], [['check', '--help']], [['knock', '--help']]])(
    'knock-port %j',
    async (args) => {
      const run = await cli(args);
      expect(run.exitCode).toBe(ExitCode.ok);
      expect(run.stderr).toBe('');
    },
  );

  it('hash-key', async () => {
    const run = await cli(['hash-key'], { stdin: 'correct-horse-battery\n' });
    expect([run.exitCode, run.stderr]).toEqual([0, '']);
  });
});
