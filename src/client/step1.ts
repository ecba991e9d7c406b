import { connectWithin, type ConnectFailureReason } from './connect.js';

export interface Step1Plan {
  address: string;
  port: number;
  request: Buffer;
  connectTimeoutMs: number;
  /** How long to leave the connection open after sending (the daemon never answers). */
  waitMs: number;
}

export type Step1Result = { sent: true; answered: boolean } | { sent: false; reason: ConnectFailureReason; detail: string };

/**
 * Sends the step-1 request in one write, as one segment (Nagle off, headers and body
 * together), waits, then closes. The daemon never answers, by design; if something else
 * on that port does, `answered` says so. Incoming bytes are drained so that the close sends
 * a FIN, not the RST the kernel sends when a socket is closed with unread data.
 */
export async function sendStep1(plan: Step1Plan): Promise<Step1Result> {
  const connected = await connectWithin({
    address: plan.address,
    port: plan.port,
    windowMs: 0,
    intervalMs: plan.connectTimeoutMs,
    attemptTimeoutMs: plan.connectTimeoutMs,
  });
  if (!connected.ok) return { sent: false, reason: connected.reason, detail: connected.detail };
  const socket = connected.socket;
  socket.setNoDelay(true);
  let answered = false;
  socket.on('data', () => {
    answered = true;
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, plan.waitMs);
    // `step1_reply: reset` answers with a RST: that ends the wait early and is not an error.
    socket.once('error', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.write(plan.request);
  });
  socket.destroy();
  return { sent: true, answered };
}
