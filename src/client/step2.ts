/**
 * The client's step 2: connects while the HTTPS port is still opening, then posts the form over
 * TLS (system store, --ca or --insecure) and reports the status, or why there was none.
 */
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connectWithin, type ConnectFailureReason } from './connect.js';
import { hostHeader, type Endpoint } from './target.js';

export interface TlsTrust {
  /** PEM CA certificate(s) to trust instead of the system store. */
  ca?: Buffer;
  /** Skip certificate verification (self-signed gateway certificate, at your own risk). */
  insecure: boolean;
}

export interface Step2Plan {
  address: string;
  endpoint: Endpoint;
  body: string;
  trust: TlsTrust;
  /** How long to keep trying to connect while the port may still be closed. */
  connectWindowMs: number;
  connectIntervalMs: number;
  /** Bound on the TLS handshake plus the answer. */
  timeoutMs: number;
}

export type Step2Result =
  | { kind: 'answered'; status: number; body: string }
  | { kind: 'unreachable'; reason: ConnectFailureReason; detail: string }
  | { kind: 'tls-failed'; detail: string }
  | { kind: 'failed'; detail: string };

const MAX_ANSWER_BYTES = 4096;

/** Connects (retrying while the step-2 window opens), then posts the step-2 form over HTTPS. */
export async function postStep2(plan: Step2Plan): Promise<Step2Result> {
  const connected = await connectWithin({
    address: plan.address,
    port: plan.endpoint.port,
    windowMs: plan.connectWindowMs,
    intervalMs: plan.connectIntervalMs,
    attemptTimeoutMs: Math.max(plan.connectWindowMs, plan.connectIntervalMs),
  });
  if (!connected.ok) return { kind: 'unreachable', reason: connected.reason, detail: connected.detail };
  const deadline = AbortSignal.timeout(plan.timeoutMs);
  let tls: TLSSocket;
  try {
    tls = await handshake(connected.socket, plan, deadline);
  } catch (err) {
    connected.socket.destroy();
    return { kind: 'tls-failed', detail: (err as Error).message };
  }
  try {
    return await post(tls, plan, deadline);
  } catch (err) {
    return { kind: 'failed', detail: (err as Error).message };
  } finally {
    tls.destroy();
  }
}

function handshake(socket: Socket, plan: Step2Plan, deadline: AbortSignal): Promise<TLSSocket> {
  const host = plan.endpoint.host;
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      host,
      // SNI carries names only; for an IP the certificate is checked against the IP itself.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      minVersion: 'TLSv1.2',
      rejectUnauthorized: !plan.trust.insecure,
      ...(plan.trust.ca ? { ca: plan.trust.ca } : {}),
    });
    const onAbort = (): void => {
      tls.destroy();
      reject(new Error(`no TLS handshake within ${plan.timeoutMs} ms`));
    };
    deadline.addEventListener('abort', onAbort, { once: true });
    tls.once('secureConnect', () => {
      deadline.removeEventListener('abort', onAbort);
      tls.removeAllListeners('error');
      resolve(tls);
    });
    tls.once('error', (err: Error) => {
      deadline.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

function post(tls: TLSSocket, plan: Step2Plan, deadline: AbortSignal): Promise<Step2Result> {
  const body = Buffer.from(plan.body, 'utf8');
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        method: 'POST',
        path: plan.endpoint.path,
        headers: {
          Host: hostHeader(plan.endpoint, 443),
          'Content-Type': 'application/x-www-form-urlencoded',
          'Content-Length': body.length,
          Connection: 'close',
        },
        createConnection: () => tls,
        signal: deadline,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_ANSWER_BYTES) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', () =>
          resolve({ kind: 'answered', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8').slice(0, MAX_ANSWER_BYTES) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err) => reject(deadline.aborted ? new Error(`no answer within ${plan.timeoutMs} ms`) : err));
    req.end(body);
  });
}
