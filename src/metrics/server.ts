/** The `/metrics` endpoint (Prometheus text format), on the address `metrics_listen` names. */
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import { KnockPortError } from '../shared/errors.js';
import type { MetricsRegistry } from './registry.js';

export class MetricsListenError extends KnockPortError {}

export interface MetricsEndpoint {
  host: string;
  port: number;
}

/** Parses `host:port` / `[v6]:port` (port 0: any free port) and refuses anything but a loopback address. */
export function parseMetricsListen(listen: string): MetricsEndpoint {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || port > 65535) {
    throw new MetricsListenError(`metrics_listen '${listen}' is not host:port (e.g. 127.0.0.1:9464 or [::1]:9464)`);
  }
  if (!isLoopback(host)) {
    throw new MetricsListenError(`metrics_listen '${listen}' is not a loopback address; metrics are only served on 127.0.0.0/8, ::1 or localhost`);
  }
  return { host, port };
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return /^(0{0,4}:){2,7}0{0,3}1$|^::1$/i.test(host) || /^::ffff:127\./i.test(host);
  return false;
}

/** Serves `GET /metrics` (and nothing else) on a loopback address; resolves once listening. */
export async function startMetricsServer(listen: string, registry: MetricsRegistry): Promise<Server> {
  const { host, port } = parseMetricsListen(listen);
  const server = createServer((req, res) => {
    res.setHeader('Connection', 'close');
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics failed\n'),
    );
  });
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
