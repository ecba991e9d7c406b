/**
 * The step-2 HTTPS server: `POST <https_post_path>` opens the app's service for a client holding
 * a step-2 window. Connections are bounded (size, time, count per source prefix), and every
 * answer is a fixed text that reveals nothing about the request: every refusal, whatever its
 * cause (path, method, body, app, key, token, window), is the same response byte for byte.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { SecretLockout, lockoutPolicy } from '../auth/lockout.js';
import type { PerMinuteLimiter } from '../auth/ratelimit.js';
import type { TotpVerifier } from '../auth/totp.js';
import type { UsedCode } from '../auth/used-codes.js';
import type { AppConfig, Config, User } from '../config/types.js';
import { logRefusedKnock, type RefusalClass } from '../shared/knock-refusal.js';
import { oneLine } from '../shared/one-line.js';
import type { Logger } from '../shared/log.js';
import type { DaemonMetrics, Step2Outcome } from '../metrics/daemon-metrics.js';
import { SourcePrefixKey } from '../packet/address.js';
import { canonicalIp } from '../shared/ip.js';
import type { SessionStore } from '../sessions/store.js';
import { errorFields } from '../shared/errors.js';
import { authorizeStep2 } from './authorize.js';
import { resolveClientAddress, trustedProxies, type TrustedProxies } from './client-address.js';
import { parseStep2Body } from './form.js';

/** Limits that keep one slow or idle client from holding anything up (the original's worst failure). */
export interface Step2Limits {
  bodyBytes: number;
  handshakeTimeoutMs: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** A connected socket silent this long is closed. */
  idleTimeoutMs: number;
  maxHeadersCount: number;
  maxHeaderBytes: number;
  /** Open connections per source prefix (`source_prefix_v4/v6`): no few networks can take `maxConnections`. */
  connectionsPerPrefix: number;
  maxConnections: number;
}

export const DEFAULT_STEP2_LIMITS: Step2Limits = {
  bodyBytes: 1024,
  handshakeTimeoutMs: 5_000,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 5_000,
  idleTimeoutMs: 5_000,
  maxHeadersCount: 32,
  maxHeaderBytes: 4096,
  connectionsPerPrefix: 8,
  maxConnections: 512,
};

export interface Step2ServerOptions {
  /** The config, or a getter so a reload takes effect without a new server. */
  config: Config | (() => Config);
  cert: Buffer;
  key: Buffer;
  sessions: Pick<SessionStore, 'step2Windows'>;
  /** Opens the service for the IP (firewall + session record + log); `Granter.openService`. */
  grantService(ip: string, app: AppConfig, user: User): Promise<void>;
  /**
   * Clustered: after a one-time code was accepted here and before the grant, whether the other
   * gateways agree it was not used there first (false: refused like a used code).
   */
  confirmCode?(code: UsedCode): Promise<boolean>;
  limiter: Pick<PerMinuteLimiter, 'allow'>;
  totp: TotpVerifier;
  /** Failure counts per secret, shared with step 1 by the daemon; default: the first config's policy. */
  lockout?: SecretLockout;
  logger: Logger;
  metrics: Pick<DaemonMetrics, 'step2Requests'>;
  limits?: Partial<Step2Limits>;
}

/**
 * Every answer step 2 gives. Bodies are fixed text: nothing about the request is echoed. One
 * refusal for everything a prober could vary: a distinct answer for a wrong path, a malformed
 * body or a missing token would confirm the path or the key. Only the rate limit and the size
 * limit answer apart, and both are checked the same way on every path.
 */
const RESPONSES = {
  granted: [200, 'OK\n'],
  forbidden: [403, 'Forbidden\n'],
  'too-large': [413, 'Payload Too Large\n'],
  'rate-limited': [429, 'Too Many Requests\n'],
  error: [500, 'Internal Server Error\n'],
} as const satisfies Record<Step2Outcome, readonly [number, string]>;

/** The info line's class per refused outcome: the wire's own answer, which says nothing of which secret was wrong. */
const STEP2_REFUSAL_CLASSES: Partial<Record<Step2Outcome, RefusalClass>> = {
  forbidden: 'refused',
  'too-large': 'malformed',
  'rate-limited': 'rate-limited',
};

/**
 * TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only, for ECDSA and RSA certificates alike.
 * Node's defaults would also take CBC with SHA-1. TLS 1.3 keeps OpenSSL's defaults (all AEAD).
 */
export const STEP2_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The TLS settings of step 2 with its certificate and key: for the server, for a renewed pair
 * (`setSecureContext` takes them all again) and for the check before start.
 */
export function step2TlsOptions(pair: { cert: Buffer; key: Buffer }): SecureContextOptions {
  return { cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2', ciphers: STEP2_TLS12_CIPHERS, honorCipherOrder: true };
}

/**
 * The step-2 HTTPS server (not listening yet: the daemon calls `listen`). Only
 * `POST <https_post_path>` exists; any other method or path gets the same refusal as a wrong
 * key, so nothing tells a prober which path is the real one.
 */
export function createStep2Server(options: Step2ServerOptions): Server {
  const limits = { ...DEFAULT_STEP2_LIMITS, ...options.limits };
  const config = typeof options.config === 'function' ? options.config : () => options.config as Config;
  const proxies = trustedProxiesOf(config);
  const sourceKeys = sourceKeysOf(config);
  const lockout = options.lockout ?? new SecretLockout(lockoutPolicy(config().global));
  const server = createServer(
    {
      ...step2TlsOptions(options),
      handshakeTimeout: limits.handshakeTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks the two timeouts above on this interval (30 s by default).
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
      maxHeaderSize: limits.maxHeaderBytes,
      keepAliveTimeout: 0,
    },
    (req, res) => {
      void handleRequest(req, res, options, config(), proxies(), sourceKeys(), lockout, limits).catch((err: unknown) => {
        options.logger.warn(errorFields(err), 'step 2 request failed');
        if (res.headersSent) return;
        options.metrics.step2Requests.inc({ outcome: 'error' });
        reply(res, 'error');
      });
    },
  );
  server.maxHeadersCount = limits.maxHeadersCount;
  server.maxConnections = limits.maxConnections;
  server.setTimeout(limits.idleTimeoutMs);
  // Behind a proxy every connection comes from the proxy: the per-source cap belongs in the proxy then.
  capConnectionsPerPrefix(server, limits.connectionsPerPrefix, options.logger, sourceKeys, (ip) => proxies().has(ip));
  server.on('tlsClientError', (err: Error & { code?: string }, socket: Socket) => {
    // At info, with the address: scanners and wrong clients fail here, and fail2ban bans on it (packaging/fail2ban/).
    options.logger.info(
      { ip: canonicalIp(socket.remoteAddress ?? ''), port: socket.remotePort, reason: oneLine(err.code ?? err.message) },
      'step 2 TLS handshake failed',
    );
  });
  return server;
}

/** Too many open connections from one source prefix are cut at accept, before TLS costs anything. */
function capConnectionsPerPrefix(server: Server, cap: number, logger: Logger, sourceKeys: () => SourcePrefixKey, exempt: (ip: string) => boolean): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const ip = canonicalIp(socket.remoteAddress ?? '') ?? 'unknown';
    if (exempt(ip)) return;
    const source = sourceKeys().ofText(ip);
    const count = (open.get(source) ?? 0) + 1;
    if (count > cap) {
      logger.debug({ ip, source, open: count - 1 }, 'step 2 connection refused: too many from this source');
      socket.destroy();
      return;
    }
    open.set(source, count);
    socket.once('close', () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left <= 0) open.delete(source);
      else open.set(source, left);
    });
  });
}

/** Source prefix keys of the current config (its prefix lengths), rebuilt only on a reload. */
function sourceKeysOf(config: () => Config): () => SourcePrefixKey {
  let built: { from: Config; keys: SourcePrefixKey } | undefined;
  return () => {
    const current = config();
    if (built?.from !== current) built = { from: current, keys: new SourcePrefixKey(current.global.sourcePrefixV4, current.global.sourcePrefixV6) };
    return built.keys;
  };
}

/** The trusted proxies of the current config, rebuilt only when a reload brings a new config. */
function trustedProxiesOf(config: () => Config): () => TrustedProxies {
  let built: { from: Config; proxies: TrustedProxies } | undefined;
  return () => {
    const current = config();
    if (built?.from !== current) built = { from: current, proxies: trustedProxies(current.global.trustedProxies) };
    return built.proxies;
  };
}

async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  options: Step2ServerOptions,
  config: Config,
  proxies: TrustedProxies,
  sourceKeys: SourcePrefixKey,
  lockout: SecretLockout,
  limits: Step2Limits,
): Promise<void> {
  const peer = canonicalIp(req.socket.remoteAddress ?? '');
  if (peer === undefined) return void req.socket.destroy();
  const client = resolveClientAddress(peer, req.headers, proxies);
  // Logged as the client's address, plus the proxy's when the request came through one.
  const who = client.ok ? { ip: client.ip, ...(client.proxy ? { proxy: client.proxy } : {}) } : { proxy: peer };
  const finish = (outcome: Step2Outcome, reason: string, app?: string): void => {
    options.metrics.step2Requests.inc({ outcome });
    // The detailed reason is for the operator's log only; the wire and the metrics never have it.
    if (outcome !== 'granted') options.logger.debug({ ...who, app, outcome, reason }, 'step 2 rejected');
    const refusal = STEP2_REFUSAL_CLASSES[outcome];
    if (refusal !== undefined && client.ok) {
      logRefusedKnock(options.logger, { ip: client.ip, ...(client.proxy ? {} : { port: req.socket.remotePort }), step: 2, class: refusal });
    }
    reply(res, outcome);
  };
  if (!client.ok) return finish('forbidden', client.reason);
  const { ip } = client;
  if (!options.limiter.allow(`step2|${sourceKeys.ofText(ip)}`)) return finish('rate-limited', 'over step1_2_rate_limit_per_minute');
  // Read (and size-checked) before the path is looked at, so 413 says nothing about the path either.
  const body = await readBody(req, limits.bodyBytes);
  if (body === 'too-large') return finish('too-large', `body over ${limits.bodyBytes} bytes`);
  if (body === 'aborted') return;
  if (req.method !== 'POST' || req.url !== config.global.step2Path) return finish('forbidden', 'another path or method');
  const form = parseStep2Body(body, req.headers['content-type']);
  if (!form.ok) return finish('forbidden', `malformed: ${form.reason}`);

  const decision = authorizeStep2(form.fields, options.sessions.step2Windows(ip), config, options.totp, lockout);
  if (decision.outcome === 'forbidden') return finish('forbidden', decision.reason, form.fields.app);
  if (decision.code && options.confirmCode && !(await options.confirmCode(decision.code))) {
    return finish('forbidden', 'one-time code used on another gateway first', form.fields.app);
  }
  await options.grantService(ip, decision.app, decision.user);
  finish('granted', 'ok', decision.app.name);
}

/** The body, up to `limit` bytes; a declared or actual larger body is refused unread. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large' | 'aborted'> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.resolve('too-large');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (result: Buffer | 'too-large' | 'aborted'): void => {
      req.removeAllListeners('data');
      resolve(result);
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) settle('too-large');
      else chunks.push(chunk);
    });
    req.once('end', () => settle(Buffer.concat(chunks)));
    req.once('error', () => settle('aborted'));
    req.once('close', () => settle('aborted')); // no-op after 'end': a promise settles once
  });
}

/** The same headers for every answer; no Date either, so two refusals are identical byte for byte. */
function reply(res: ServerResponse, outcome: Step2Outcome): void {
  const [status, body] = RESPONSES[outcome];
  res.sendDate = false;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    Connection: 'close',
  });
  res.end(body);
}
