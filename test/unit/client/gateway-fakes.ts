import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed certificate for localhost, 127.0.0.1 and ::1, made with openssl. */
export interface TestCertificate {
  dir: string;
  certPath: string;
  cert: Buffer;
  key: Buffer;
  remove(): void;
}

export function makeCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'knock-client-tls-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ],
    { stdio: 'ignore' },
  );
  return { dir, certPath, cert: readFileSync(certPath), key: readFileSync(keyPath), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Stands in for the stealth step-1 port: accepts, records every data event, never answers. */
export class Step1Recorder {
  /** One entry per connection: the chunks received, in order. */
  readonly connections: Buffer[][] = [];
  /** How each connection ended: the client's FIN, or a RST. */
  readonly endings: Array<'open' | 'fin' | 'reset'> = [];
  /** Bytes to answer with (knock-port never answers; a web server on the wrong port would). */
  answer: string | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private onKnock: (() => void) | undefined;

  private constructor(server: Server) {
    this.server = server;
    server.on('connection', (socket) => {
      const chunks: Buffer[] = [];
      const index = this.connections.push(chunks) - 1;
      this.endings[index] = 'open';
      this.sockets.add(socket);
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        if (this.answer !== undefined) socket.write(this.answer);
        this.onKnock?.();
      });
      socket.on('end', () => {
        this.endings[index] = 'fin';
        socket.end();
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNRESET') this.endings[index] = 'reset';
      });
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  static async listen(host = '127.0.0.1'): Promise<Step1Recorder> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return new Step1Recorder(server);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Called on each data event, e.g. to open the HTTPS port as the daemon would. */
  whenKnocked(callback: () => void): void {
    this.onKnock = callback;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface Step2Request {
  path: string;
  host: string | undefined;
  form: URLSearchParams;
}

/**
 * Stands in for the daemon's step 2: the app name picks the answer, so one server covers
 * every status the client must map to an exit code.
 */
export class Step2Server {
  readonly requests: Step2Request[] = [];

  private constructor(private readonly server: HttpsServer) {}

  static async listen(certificate: TestCertificate, port = 0, host = '127.0.0.1'): Promise<Step2Server> {
    const server = createHttpsServer({ cert: certificate.cert, key: certificate.key });
    const step2 = new Step2Server(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        step2.requests.push({ path: req.url ?? '', host: req.headers.host, form });
        const status = statusFor(form);
        res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close' }).end(status === 200 ? 'OK\n' : 'no\n');
      });
    });
    await new Promise<void>((resolve) => server.listen(port, host, resolve));
    return step2;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export const STEP2_TOKEN = '424242';

function statusFor(form: URLSearchParams): number {
  switch (form.get('app')) {
    case 'forbidden':
      return 403;
    case 'busy':
      return 429;
    case 'oldpath': // as gateways of earlier versions answered a wrong step-2 path
      return 404;
    case 'odd':
      return 500;
    case 'totp': // as the daemon answers: no token is refused like a wrong one
      return form.get('token') === STEP2_TOKEN ? 200 : 403;
    case 'oldtotp': // as gateways of earlier versions answered
      return form.get('token') === STEP2_TOKEN ? 200 : form.has('token') ? 403 : 401;
    default:
      return 200;
  }
}

export { freePort } from '../../helpers/ports.js';
