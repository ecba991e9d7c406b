/**
 * `knock-port knock`: the client's flags turned into a KnockPlan for client/knock.ts. Usage errors
 * exit 2 as in every command (the option parser's through main.ts); failures have their own codes.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { describeError } from '../../shared/errors.js';
import { CREDENTIAL_ENV, resolveCredentials, type CredentialFlags } from '../../client/credentials.js';
import { KnockUsageError } from '../../client/errors.js';
import { exitCodeHelp, KnockExitCode } from '../../client/exit-codes.js';
import type { knock as knockType, KnockPlan } from '../../client/knock.js';
import { resolveTarget, type TargetOptions } from '../../client/target.js';
import { ERROR_PREFIX, processTerminal, type Terminal } from '../terminal.js';
import { parsePort } from '../options.js';
import { addExamples } from '../help.js';

/** The parsed flags, named as the option parser names them after `--http-port`, `--https-key`, .... */
interface KnockFlags {
  url?: string[];
  host?: string;
  httpPort?: number;
  httpsPort?: number;
  httpPath?: string;
  httpsPath?: string;
  app?: string;
  httpKey?: string;
  httpsKey?: string;
  keyFile?: string;
  token?: string;
  totp?: boolean;
  otpSecret?: string;
  insecure?: boolean;
  ca?: string;
  ipv4?: boolean;
  ipv6?: boolean;
  wait?: number | true;
  servicePort?: number;
  connectTimeout: number;
  step1Wait: number;
  tcpFastopen?: boolean;
  step2ConnectTimeout: number;
  timeout: number;
  quiet?: boolean;
}

const DEFAULT_WAIT_SECONDS = 30;

export function registerKnock(program: Command, terminal: Terminal = processTerminal()): void {
  const knockCommand = program
    .command('knock')
    .description('knock as a client: step 1 (stealth HTTP), then step 2 (HTTPS), optionally wait for the service port')
    .option('--url <url>', 'step-1 URL http://host[:port]/path and/or step-2 URL https://host[:port]/path (repeatable)', collect)
    .option('--host <host>', 'gateway host name or IP ([::1] or ::1 for IPv6), with the port/path flags below')
    .option('--http-port <port>', 'step-1 port (default 80)', parsePort)
    .option('--https-port <port>', 'step-2 port (default 443)', parsePort)
    .option('--http-path <path>', 'step-1 path (global.http_post_path)')
    .option('--https-path <path>', 'step-2 path (global.https_post_path)')
    .option('--app <name>', 'app to open (a section of the gateway config)')
    .option('--http-key <key>', `step-1 key (or ${CREDENTIAL_ENV.step1Key}, or http_key= in --key-file)`)
    .option('--https-key <key>', `step-2 key (or ${CREDENTIAL_ENV.step2Key}, or https_key= in --key-file)`)
    .option('--key-file <file>', 'file with http_key=, https_key= and optionally otp_secret= and totp=yes lines (chmod 600)')
    .option('--token <code>', `step-2 TOTP code (or ${CREDENTIAL_ENV.token})`)
    .option('--totp', 'this user has a step-2 TOTP: ask for the token (on a terminal) before knocking, unless --token gives it')
    .option('--otp-secret <base32>', `TOTP secret for the step-1 one-time otp (or ${CREDENTIAL_ENV.otpSecret}, or otp_secret= in --key-file)`)
    .addOption(new Option('--insecure', 'do not verify the step-2 certificate').conflicts('ca'))
    .option('--ca <file>', 'PEM CA certificate (or the self-signed certificate itself) to trust for step 2')
    .addOption(new Option('-4, --ipv4', 'use IPv4 only').conflicts('ipv6'))
    .option('-6, --ipv6', 'use IPv6 only')
    .option('--wait [seconds]', `after step 2, wait until --service-port accepts TCP connections (default ${DEFAULT_WAIT_SECONDS} s)`, parseSeconds)
    .option('--service-port <port>', 'TCP port of the service to wait for (implies --wait)', parsePort)
    .option('--connect-timeout <seconds>', 'give up step 1 without a SYN-ACK after this long', parseSeconds, 5)
    .option('--step1-wait <seconds>', 'keep the step-1 connection open this long before closing it', parseSeconds, 1)
    .option('--tcp-fastopen', 'send step 1 inside the SYN (TCP Fast Open), for a gateway with step1_handshake: none')
    .option('--step2-connect-timeout <seconds>', 'keep retrying to connect to step 2 while it opens, this long', parseSeconds, 2)
    .option('--timeout <seconds>', 'bound on the step-2 TLS handshake and answer', parseSeconds, 10)
    .option('-q, --quiet', 'print errors only')
    .addHelpText('after', exitCodeHelp());
  addExamples(knockCommand, [
    {
      command: 'knock-port knock --url http://gw.example.net/STEP1-PATH --url https://gw.example.net/STEP2-PATH --app ssh --key-file alice.keys',
      what: 'open ssh for this host, with the key file `user add` printed',
    },
    {
      command:
        'knock-port knock --host gw.example.net --http-path /STEP1-PATH --https-path /STEP2-PATH --app ssh --key-file alice.keys --totp --service-port 22 && ssh gw.example.net',
      what: 'ask for the TOTP code, wait until port 22 answers, then connect',
    },
  ]).action(async (flags: KnockFlags) => {
    const outcome = await runKnock(flags, terminal).catch((err: unknown) => ({
      exitCode: err instanceof KnockUsageError ? KnockExitCode.usage : KnockExitCode.failed,
      error: describeError(err),
    }));
    if (outcome.error !== undefined) terminal.stderr.write(`${ERROR_PREFIX}${outcome.error}\n`);
    terminal.setExitCode(outcome.exitCode);
  });
}

async function runKnock(flags: KnockFlags, terminal: Terminal): ReturnType<typeof knockType> {
  const plan = buildPlan(flags, terminal);
  // Loaded when a knock runs, so that --help stays fast.
  const { knock } = await import('../../client/knock.js');
  return knock(plan, {
    report: (line) => {
      if (!flags.quiet) terminal.stderr.write(`${line}\n`);
    },
    ...(terminal.stdinIsTTY ? { askToken: async () => (await terminal.ask('TOTP token: ', { echo: true })).trim() } : {}),
    now: () => Date.now() / 1000,
  });
}

function targetOptions(flags: KnockFlags): TargetOptions {
  const { host, httpPort, httpsPort, httpPath, httpsPath } = flags;
  return { urls: flags.url ?? [], host, step1Port: httpPort, step2Port: httpsPort, step1Path: httpPath, step2Path: httpsPath };
}

function credentialFlags(flags: KnockFlags): CredentialFlags {
  const { httpKey, httpsKey, token, otpSecret, keyFile, totp } = flags;
  return { step1Key: httpKey, step2Key: httpsKey, token, otpSecret, keyFile, totp };
}

function buildPlan(flags: KnockFlags, terminal: Terminal): KnockPlan {
  if (flags.app === undefined || flags.app === '') throw new KnockUsageError('--app is required');
  const { credentials, warnings } = resolveCredentials(credentialFlags(flags), terminal.env);
  for (const warning of warnings) terminal.stderr.write(`${ERROR_PREFIX}warning: ${warning}\n`);
  if (flags.wait !== undefined && flags.servicePort === undefined) throw new KnockUsageError('--wait needs --service-port');
  const plan: KnockPlan = {
    target: resolveTarget(targetOptions(flags)),
    app: flags.app,
    credentials,
    trust: { insecure: flags.insecure === true, ...(flags.ca !== undefined ? { ca: readCa(flags.ca) } : {}) },
    step1ConnectTimeoutMs: flags.connectTimeout * 1000,
    step1WaitMs: flags.step1Wait * 1000,
    step1FastOpen: flags.tcpFastopen === true,
    step2ConnectWindowMs: flags.step2ConnectTimeout * 1000,
    step2TimeoutMs: flags.timeout * 1000,
  };
  if (flags.ipv4) plan.family = 4;
  if (flags.ipv6) plan.family = 6;
  if (flags.servicePort !== undefined) {
    const seconds = typeof flags.wait === 'number' ? flags.wait : DEFAULT_WAIT_SECONDS;
    plan.service = { port: flags.servicePort, waitMs: seconds * 1000 };
  }
  return plan;
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new KnockUsageError(`cannot read --ca ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(seconds) || seconds > 3600)
    throw new InvalidArgumentError('expected a number of seconds (0-3600, decimals allowed)');
  return seconds;
}
