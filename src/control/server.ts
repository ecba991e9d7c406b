/**
 * The daemon's control socket: a root-only Unix socket that answers sessions, revoke, health, confirm and reload,
 * with bounded request lines and idle timeouts; it never replaces a socket another daemon serves.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { describeError, errorFields } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { canonicalIp } from '../shared/ip.js';
import { ControlSocketError, NotInTrialError } from './errors.js';
import { NOT_IN_TRIAL } from './trial.js';
import { parseControlRequest, type ControlRequest, type ControlResponse, type HealthReport, type SessionView } from './protocol.js';

/** What the daemon does for each command; the server only speaks the protocol. */
export interface ControlHandlers {
  sessions(): SessionView[] | Promise<SessionView[]>;
  /** Revokes the IP's grants (one app's when given); resolves to how many were removed. */
  /** The grants closed; clustered, also whether the store has the revoke yet (`shared: false`: closed here only, retried). */
  revoke(ip: string, app?: string): Promise<number | { closed: number; shared: boolean }>;
  health(): HealthReport | Promise<HealthReport>;
  /** Confirms a `run --trial`: the gate stays; resolves to the seconds that were left. Throws when no trial waits. */
  confirm?(): { secondsLeft: number };
  /** Reads the config again (as SIGHUP does); throws when the daemon keeps the running one. */
  reload(): Promise<{ voided: number }>;
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** A request line longer than this is not one of ours. */
const MAX_LINE_BYTES = 4096;
/** A client that says nothing for this long is disconnected. */
const IDLE_TIMEOUT_MS = 10_000;

/**
 * Listens on a Unix socket, mode 0600 in a 0700 directory (root only). A stale socket left
 * by a killed daemon is replaced; a socket another daemon still answers on is not.
 */
export async function startControlServer(path: string, handlers: ControlHandlers, logger: Logger): Promise<ControlServer> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await removeStaleSocket(path);
  const server = createServer((socket) => serveConnection(socket, handlers, logger));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ControlSocketError(`cannot listen on the control socket ${path}: ${err.message}`, { cause: err })));
    server.listen(path, resolve);
  });
  await chmod(path, 0o600);
  server.on('error', (err) => logger.warn(errorFields(err), 'control socket error'));
  return { path, close: () => closeServer(server, path) };
}

async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!stat) return;
  if (!stat.isSocket()) throw new ControlSocketError(`${path} exists and is not a socket; remove it or set control_socket to another path`);
  if (await answers(path)) throw new ControlSocketError(`another knock-port daemon is listening on ${path}`);
  await unlink(path);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

async function closeServer(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await unlink(path).catch(() => undefined);
}

function serveConnection(socket: Socket, handlers: ControlHandlers, logger: Logger): void {
  socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', () => undefined); // a client gone mid-reply is not our problem
  let buffered = '';
  let queue = Promise.resolve();
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line.length > 0) queue = queue.then(() => answer(socket, line, handlers, logger));
    }
    if (Buffer.byteLength(buffered) > MAX_LINE_BYTES) {
      buffered = '';
      queue = queue.then(() => send(socket, { ok: false, error: `request longer than ${MAX_LINE_BYTES} bytes` })).then(() => void socket.end());
    }
  });
}

async function answer(socket: Socket, line: string, handlers: ControlHandlers, logger: Logger): Promise<void> {
  const parsed = parseControlRequest(line);
  if (!parsed.ok) return send(socket, { ok: false, error: parsed.error });
  // A command the daemon takes long over (a reload installs the firewall) is not the client idling.
  socket.setTimeout(0);
  try {
    send(socket, await dispatch(parsed.request, handlers));
  } catch (err) {
    logger.warn({ cmd: parsed.request.cmd, ...errorFields(err) }, 'control command failed');
    send(socket, { ok: false, error: describeError(err) });
  } finally {
    socket.setTimeout(IDLE_TIMEOUT_MS);
  }
}

async function dispatch(request: ControlRequest, handlers: ControlHandlers): Promise<ControlResponse> {
  switch (request.cmd) {
    case 'sessions':
      return { ok: true, sessions: await handlers.sessions() };
    case 'revoke':
      return revokeAnswer(await handlers.revoke(canonicalIp(request.ip)!, request.app));
    case 'health':
      return { ok: true, health: await handlers.health() };
    case 'confirm':
      if (!handlers.confirm) throw new NotInTrialError(NOT_IN_TRIAL);
      return { ok: true, confirmed: handlers.confirm() };
    case 'reload':
      return { ok: true, reloaded: await handlers.reload() };
  }
}

function send(socket: Socket, response: ControlResponse): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
}

function revokeAnswer(outcome: number | { closed: number; shared: boolean }): ControlResponse {
  if (typeof outcome === 'number') return { ok: true, revoked: outcome };
  return { ok: true, revoked: outcome.closed, ...(outcome.shared ? {} : { notShared: true as const }) };
}
