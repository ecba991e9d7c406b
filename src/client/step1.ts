/**
 * Sends the step-1 knock as one TCP segment, after a handshake or inside the SYN (TCP Fast Open),
 * then closes; the daemon never answers.
 */
import { isIP, Socket } from 'node:net';
import { classifyConnectError, connectWithin, type ConnectFailureReason } from './connect.js';
import { openFastOpenSocket } from './fastopen.js';

export interface Step1Plan {
  address: string;
  port: number;
  request: Buffer;
  connectTimeoutMs: number;
  /** How long to leave the connection open after sending (the daemon never answers). */
  waitMs: number;
  /** Send the request inside the SYN (TCP Fast Open), for gateways with `step1_handshake: none`. */
  fastOpen?: boolean;
  /** Opens the Fast Open socket fd; replaceable for tests. */
  openFastOpen?: (family: 4 | 6) => number;
}

/**
 * Kernels before 5.14 pause Fast Open for every socket on the host for an hour when a Fast
 * Open SYN sees its third timeout (about 7 s): nothing ever answers this one, so close well before.
 */
export const FAST_OPEN_MAX_WAIT_MS = 2000;

export type Step1Result = { sent: true; answered: boolean } | { sent: false; reason: ConnectFailureReason; detail: string };

/**
 * Sends the step-1 request in one write, as one segment (Nagle off, headers and body
 * together), waits, then closes. The daemon never answers, by design; if something else
 * on that port does, `answered` says so. Incoming bytes are drained so that the close sends
 * a FIN, not the RST the kernel sends when a socket is closed with unread data.
 */
export async function sendStep1(plan: Step1Plan): Promise<Step1Result> {
  if (plan.fastOpen) return sendInSyn(plan);
  const connected = await connectWithin({
    address: plan.address,
    port: plan.port,
    windowMs: 0,
    intervalMs: plan.connectTimeoutMs,
    attemptTimeoutMs: plan.connectTimeoutMs,
  });
  if (!connected.ok) return { sent: false, reason: connected.reason, detail: connected.detail };
  connected.socket.setNoDelay(true);
  return writeAndWait(connected.socket, plan.request, plan.waitMs);
}

/**
 * The whole request in the SYN: connect() on the Fast Open socket returns at once without a
 * packet, and the write sends SYN and data together. Nothing answers it; the kernel's
 * retransmissions are bare SYNs, so the knock is this one packet. An error before the write
 * (no route) means it was not sent.
 */
async function sendInSyn(plan: Step1Plan): Promise<Step1Result> {
  const family = isIP(plan.address) === 6 ? 6 : 4;
  const socket = new Socket({ fd: (plan.openFastOpen ?? openFastOpenSocket)(family) });
  const connected = await new Promise<{ ok: true } | { ok: false; error: NodeJS.ErrnoException }>((resolve) => {
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, error }));
    socket.connect({ host: plan.address, port: plan.port }, () => {
      socket.removeAllListeners('error');
      resolve({ ok: true });
    });
  });
  if (!connected.ok) {
    socket.destroy();
    return { sent: false, reason: classifyConnectError(connected.error), detail: connected.error.code ?? connected.error.message };
  }
  return writeAndWait(socket, plan.request, Math.min(plan.waitMs, FAST_OPEN_MAX_WAIT_MS));
}

async function writeAndWait(socket: Socket, request: Buffer, waitMs: number): Promise<Step1Result> {
  let answered = false;
  socket.on('data', () => {
    answered = true;
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, waitMs);
    // `step1_reply: reset` answers with a RST: that ends the wait early and is not an error.
    socket.once('error', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.write(request);
  });
  socket.destroy();
  return { sent: true, answered };
}
