/**
 * The CLI's side of the control socket (sessions, revoke, health, confirm, reload): one request, one validated
 * answer, and a message that says why when the daemon cannot be reached.
 */
import { connect } from 'node:net';
import { ControlCommandError, ControlUnreachableError } from './errors.js';
import { controlResponseSchema, type ControlRequest, type ControlResponse } from './protocol.js';

type Answer = Extract<ControlResponse, { ok: true }>;
export type AnswerField = 'sessions' | 'revoked' | 'health' | 'confirmed' | 'reloaded';
export type AnswerOf<F extends AnswerField> = Extract<Answer, Record<F, unknown>>[F];

/** One command's answer, or the daemon's error as a ControlCommandError. */
export async function callDaemon<F extends AnswerField>(path: string, request: ControlRequest, field: F, timeoutMs?: number): Promise<AnswerOf<F>> {
  const response = await sendControlRequest(path, request, timeoutMs);
  if (!response.ok) throw new ControlCommandError(response.error);
  if (!(field in response)) throw new ControlCommandError(`unexpected answer to ${request.cmd}`);
  return (response as Record<F, unknown>)[field] as AnswerOf<F>;
}

/** Sends one request to the daemon's control socket and returns its (validated) answer. */
export function sendControlRequest(path: string, request: ControlRequest, timeoutMs = 5_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffered = '';
    const fail = (message: string): void => {
      socket.destroy();
      reject(new ControlUnreachableError(message));
    };
    socket.setTimeout(timeoutMs, () => fail(`no answer from the daemon on ${path} within ${timeoutMs / 1000} s`));
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      socket.end();
      const parsed = controlResponseSchema.safeParse(safeJson(buffered.slice(0, newline)));
      if (parsed.success) resolve(parsed.data);
      else reject(new ControlUnreachableError(`unexpected answer on ${path}; is it a knock-port control socket?`));
    });
    socket.once('end', () => fail(`the daemon on ${path} closed the connection without answering`));
    socket.once('error', (err: NodeJS.ErrnoException) => fail(unreachableMessage(path, err)));
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function unreachableMessage(path: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return `no control socket at ${path}: is knock-port running? (or pass --socket / -c)`;
    case 'ECONNREFUSED':
      return `nothing answers on ${path}: the daemon is not running (stale socket)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${path}: the control socket is root-only`;
    default:
      return `cannot reach the daemon on ${path}: ${err.message}`;
  }
}
