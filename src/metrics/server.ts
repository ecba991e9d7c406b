/**
 * The `/metrics` endpoint (Prometheus text format), on the address `metrics_listen` names:
 * plain HTTP on loopback, or off loopback behind a bearer token (`metrics_token_file`) or TLS
 * with client certificates (`metrics_tls_client_ca`), over TLS when `metrics_tls_cert` is set.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer, type ServerOptions } from 'node:https';
import { isIP } from 'node:net';
import { digestKey } from '../config/key-digest.js';
import type { MetricsAuth } from '../config/types.js';
import { KnockPortError } from '../shared/errors.js';
import { explainReadError } from '../shared/read-error.js';
import type { MetricsRegistry } from './registry.js';

export class MetricsListenError extends KnockPortError {}

export interface MetricsEndpoint {
  host: string;
  port: number;
}

export interface MetricsServerOptions {
  /** `host:port` / `[v6]:port` (port 0: any free port). */
  listen: string;
  auth?: MetricsAuth;
  /** Told of each request refused for a missing or wrong token (answered 401). */
  onUnauthorized?: () => void;
}

/**
 * Parses `host:port` / `[v6]:port` (port 0: any free port). Anything but a loopback address is
 * refused unless `guarded`: a token or client certificates keep others out.
 */
export function parseMetricsListen(listen: string, guarded = false): MetricsEndpoint {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || port > 65535) {
    throw new MetricsListenError(`metrics_listen '${listen}' is not host:port (e.g. 127.0.0.1:9464 or [::1]:9464)`);
  }
  if (!guarded && !isLoopback(host)) {
    throw new MetricsListenError(
      `metrics_listen '${listen}' is not a loopback address; off loopback the metrics need metrics_token_file or metrics_tls_client_ca`,
    );
  }
  return { host, port };
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return /^(0{0,4}:){2,7}0{0,3}1$|^::1$/i.test(host) || /^::ffff:127\./i.test(host);
  return false;
}

/** True when the request carries `Authorization: Bearer <the token>` (compared in constant time). */
export function carriesToken(req: Pick<IncomingMessage, 'headers'>, tokenDigest: Buffer): boolean {
  const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(req.headers.authorization ?? '');
  return match !== null && timingSafeEqual(digestKey(match[1]!), tokenDigest);
}

/** Serves `GET /metrics` (and nothing else); resolves once listening. */
export async function startMetricsServer(options: MetricsServerOptions, registry: MetricsRegistry): Promise<Server> {
  const { auth } = options;
  const { host, port } = parseMetricsListen(options.listen, auth?.tokenDigest !== undefined || auth?.tls?.clientCa !== undefined);
  const serve: RequestListener = (req, res) => {
    res.setHeader('Connection', 'close');
    if (auth?.tokenDigest && !carriesToken(req, auth.tokenDigest)) {
      options.onUnauthorized?.();
      res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Bearer realm="knock-port metrics"' }).end('Unauthorized\n');
      return;
    }
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics failed\n'),
    );
  };
  const server: Server = auth?.tls ? createTlsServer(tlsOptions(auth.tls), serve) : createServer(serve);
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The certificate, key and client CA read now; with a client CA, a client without a certificate it signed fails the handshake. */
function tlsOptions(tls: NonNullable<MetricsAuth['tls']>): ServerOptions {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new MetricsListenError(`${what} ${path} cannot be read: ${explainReadError(err, path)}`);
    }
  };
  const cert = read(tls.cert, 'metrics_tls_cert');
  const key = read(tls.key, 'metrics_tls_key');
  if (tls.clientCa === undefined) return { cert, key };
  return { cert, key, ca: read(tls.clientCa, 'metrics_tls_client_ca'), requestCert: true, rejectUnauthorized: true };
}
