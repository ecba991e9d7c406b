/**
 * The client's whole knock: step 1, step 2 (asking for a TOTP token first when needed), then
 * optionally waiting for the service port; each failure maps to an exit code and a message.
 */
import { lookup } from 'node:dns/promises';
import { totpAt } from '../auth/totp.js';
import { connectWithin } from './connect.js';
import { CREDENTIAL_ENV, type KnockCredentials } from './credentials.js';
import { KnockExitCode } from './exit-codes.js';
import { MAX_SYN_REQUEST_BYTES } from './fastopen.js';
import { buildStep1Request, encodeForm, MAX_STEP1_REQUEST_BYTES } from './request.js';
import { sendStep1 } from './step1.js';
import { postStep2, type Step2Result, type TlsTrust } from './step2.js';
import { describeEndpoint, type KnockTarget } from './target.js';

export interface KnockPlan {
  target: KnockTarget;
  app: string;
  credentials: KnockCredentials;
  trust: TlsTrust;
  /** Force the address family used for every connection (both steps must come from one address). */
  family?: 4 | 6;
  step1ConnectTimeoutMs: number;
  step1WaitMs: number;
  /** Send step 1 inside the SYN (TCP Fast Open), for gateways with `step1_handshake: none`. */
  step1FastOpen?: boolean;
  step2ConnectWindowMs: number;
  step2TimeoutMs: number;
  /** Poll this TCP port after step 2 until it accepts a connection, for up to `waitMs`. */
  service?: { port: number; waitMs: number };
}

export interface KnockEnvironment {
  /** Progress for the user (stderr); never given a secret. */
  report(line: string): void;
  /** Asks for the step-2 TOTP code; undefined when there is no terminal to ask on. */
  askToken?: () => Promise<string>;
  /** Current time in unix seconds, for the step-1 otp. */
  now(): number;
}

export interface KnockOutcome {
  exitCode: KnockExitCode;
  /** Why it failed, for the user; undefined on success. */
  error?: string;
}

/** Interval between fresh connection attempts to a port that may still be dropped. */
const RETRY_INTERVAL_MS = 250;

/** Step 1, step 2 (with the TOTP token asked for first when needed), then optionally wait for the service. */
export async function knock(plan: KnockPlan, env: KnockEnvironment): Promise<KnockOutcome> {
  const { step1, step2 } = plan.target;
  let token = plan.credentials.token;
  // Step 2 refuses a missing token like a wrong key, so a TOTP user says so (--totp); the token
  // is asked for before step 1, not while the short step-2 window runs.
  if (token === undefined && plan.credentials.totp) {
    if (!env.askToken)
      return {
        exitCode: KnockExitCode.tokenRequired,
        error: `this user needs a step-2 TOTP token: give --token or ${CREDENTIAL_ENV.token}, or run from a terminal to be asked`,
      };
    token = await env.askToken();
  }
  const step1Address = await resolve(step1.host, plan.family);
  if (!step1Address) return { exitCode: KnockExitCode.step1Unreachable, error: `cannot resolve ${step1.host}` };
  const step2Address = step2.host === step1.host ? step1Address : await resolve(step2.host, plan.family);
  if (!step2Address) return { exitCode: KnockExitCode.step2Unreachable, error: `cannot resolve ${step2.host}` };

  const step1Failure = await knockStep1(plan, step1Address, env);
  if (step1Failure) return step1Failure;

  let answer = await step2Post(plan, step2Address, token);
  // A gateway of an earlier version still answers 401 to a TOTP user without a token.
  if (answer.kind === 'answered' && answer.status === 401 && token === undefined && env.askToken) {
    token = await env.askToken();
    answer = await step2Post(plan, step2Address, token);
  }
  const failure = step2Failure(answer, plan, token !== undefined);
  if (failure) return failure;
  env.report(`step 2: ${describeEndpoint('https', step2)} accepted the knock`);

  if (plan.service) return waitForService(plan.service, step2Address, env);
  return { exitCode: KnockExitCode.ok };
}

/** Polls the service port until it accepts a TCP connection (closed at once) or time runs out. */
async function waitForService(service: { port: number; waitMs: number }, address: string, env: KnockEnvironment): Promise<KnockOutcome> {
  const opened = await connectWithin({
    address,
    port: service.port,
    windowMs: service.waitMs,
    intervalMs: RETRY_INTERVAL_MS,
    attemptTimeoutMs: Math.min(service.waitMs, 1000) || RETRY_INTERVAL_MS,
  });
  if (!opened.ok) {
    return {
      exitCode: KnockExitCode.serviceNotOpen,
      error: `service port ${service.port} did not open within ${service.waitMs / 1000} s (${opened.reason}: ${opened.detail})`,
    };
  }
  opened.socket.destroy();
  env.report(`service port ${service.port} is open (after ${(opened.elapsedMs / 1000).toFixed(1)} s)`);
  return { exitCode: KnockExitCode.ok };
}

/** Sends step 1; an outcome only when it could not even be sent. */
async function knockStep1(plan: KnockPlan, address: string, env: KnockEnvironment): Promise<KnockOutcome | undefined> {
  const endpoint = plan.target.step1;
  const otp = plan.credentials.otpSecret === undefined ? undefined : totpAt(plan.credentials.otpSecret, env.now());
  const body = encodeForm([
    ['app', plan.app],
    ['access_key', plan.credentials.step1Key],
    ['otp', otp],
  ]);
  const fastOpen = plan.step1FastOpen === true;
  const sent = await sendStep1({
    address,
    port: endpoint.port,
    request: buildStep1Request(endpoint, body, fastOpen ? MAX_SYN_REQUEST_BYTES : MAX_STEP1_REQUEST_BYTES),
    connectTimeoutMs: plan.step1ConnectTimeoutMs,
    waitMs: plan.step1WaitMs,
    fastOpen,
  });
  if (!sent.sent) {
    // A gateway with step1_handshake: none looks exactly like this: no SYN-ACK, ever.
    const hint = !fastOpen && sent.reason === 'timeout' ? ' (if the gateway runs step1_handshake: none, add --tcp-fastopen)' : '';
    return {
      exitCode: KnockExitCode.step1Unreachable,
      error: `step 1: cannot connect to ${address} port ${endpoint.port} (${sent.reason}: ${sent.detail}); is knock-port running there, and the port right?${hint}`,
    };
  }
  const how = fastOpen ? ' inside the SYN (TCP Fast Open)' : '';
  env.report(
    `step 1: knock sent${how} to ${describeEndpoint('http', endpoint)}${sent.answered ? ' (it answered, which knock-port never does: is this the right port?)' : ' (no answer, by design)'}`,
  );
  return undefined;
}

function step2Post(plan: KnockPlan, address: string, token: string | undefined): Promise<Step2Result> {
  return postStep2({
    address,
    endpoint: plan.target.step2,
    body: encodeForm([
      ['app', plan.app],
      ['access_key', plan.credentials.step2Key],
      ['token', token],
    ]),
    trust: plan.trust,
    connectWindowMs: plan.step2ConnectWindowMs,
    connectIntervalMs: RETRY_INTERVAL_MS,
    timeoutMs: plan.step2TimeoutMs,
  });
}

/** Maps a step-2 result to its exit code and an actionable message; undefined on 200. */
function step2Failure(answer: Step2Result, plan: KnockPlan, hadToken: boolean): KnockOutcome | undefined {
  const where = describeEndpoint('https', plan.target.step2);
  switch (answer.kind) {
    case 'unreachable':
      return {
        exitCode: KnockExitCode.step2Unreachable,
        error:
          `step 2: ${where} never opened (${answer.reason}: ${answer.detail}). Step 1 was not accepted: check the step-1 path, app and key` +
          `${plan.credentials.otpSecret ? ' (and the otp: each code works once, wait for the next 30 s period)' : ''}, or something blocks the way`,
      };
    case 'tls-failed':
      return {
        exitCode: KnockExitCode.tlsFailed,
        error: `step 2: TLS with ${where} failed: ${answer.detail} (trust the gateway's certificate with --ca FILE, or use --insecure)`,
      };
    case 'failed':
      return { exitCode: KnockExitCode.failed, error: `step 2: ${where}: ${answer.detail}` };
    case 'answered':
      return statusFailure(answer.status, where, hadToken);
  }
}

function statusFailure(status: number, where: string, hadToken: boolean): KnockOutcome | undefined {
  if (status === 200) return undefined;
  if (status === 403) {
    // The gateway gives this one answer to every refusal: say all it may mean, never guess which.
    const token = hadToken
      ? ', token (each code works once)'
      : ' (a user with a step-2 TOTP also needs a token: --token, or --totp, totp=yes in the key file, to be asked)';
    return {
      exitCode: KnockExitCode.forbidden,
      error: `step 2: ${where} refused the knock (403): wrong step-2 path, app or key${token}, or no step-2 window for this app and user from this address (step 1 refused or too long ago)`,
    };
  }
  // Gateways of earlier versions answered these apart from 403.
  if (status === 404)
    return { exitCode: KnockExitCode.failed, error: `step 2: ${where} answered 404: the step-2 path is wrong (a gateway of an earlier version)` };
  if (status === 400)
    return { exitCode: KnockExitCode.failed, error: `step 2: ${where} answered 400: it could not read the request (a gateway of an earlier version)` };
  if (status === 401) {
    return hadToken
      ? { exitCode: KnockExitCode.forbidden, error: `step 2: ${where} refused the token (401): use the current code, each works once` }
      : {
          exitCode: KnockExitCode.tokenRequired,
          error: `step 2: ${where} requires a TOTP token (401): give --token or ${CREDENTIAL_ENV.token}, or run from a terminal to be asked`,
        };
  }
  if (status === 429) return { exitCode: KnockExitCode.rateLimited, error: `step 2: ${where} is rate limiting this address (429): try again in a minute` };
  return { exitCode: KnockExitCode.failed, error: `step 2: ${where} answered HTTP ${status}` };
}

async function resolve(host: string, family: 4 | 6 | undefined): Promise<string | undefined> {
  try {
    return (await lookup(host, family ? { family } : {})).address;
  } catch {
    return undefined;
  }
}
