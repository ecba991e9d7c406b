/**
 * TCP connects for the client to ports a firewall may still be dropping (step 2 while it opens,
 * the service with --wait): fresh attempts at intervals instead of waiting on the kernel's retries.
 */
import { connect, type Socket } from 'node:net';

export interface ConnectPlan {
  /** An IP address (resolved once, so every step leaves from and goes to the same addresses). */
  address: string;
  port: number;
  /** New attempts start every `intervalMs` until `windowMs` has passed (0: a single attempt). */
  windowMs: number;
  intervalMs: number;
  /** Each attempt is given up after this long without a SYN-ACK. */
  attemptTimeoutMs: number;
}

export type ConnectFailureReason = 'timeout' | 'refused' | 'unreachable' | 'error';

export type ConnectResult = { ok: true; socket: Socket; elapsedMs: number } | { ok: false; reason: ConnectFailureReason; detail: string; elapsedMs: number };

/**
 * Opens a TCP connection to a port that may still be dropped by a firewall. A dropped SYN
 * only fails after the kernel's slow retransmissions, so rather than wait on one attempt,
 * start a fresh one every interval and keep the first that connects; the rest are closed.
 * In flight at once: at most attemptTimeoutMs / intervalMs + 1 sockets.
 */
export function connectWithin(plan: ConnectPlan): Promise<ConnectResult> {
  const started = Date.now();
  const elapsed = (): number => Date.now() - started;
  const pending = new Set<Socket>();
  let lastFailure: { reason: ConnectFailureReason; detail: string } = { reason: 'timeout', detail: 'no answer' };
  let nextAttempt: NodeJS.Timeout | undefined;
  let settled = false;

  return new Promise((resolve) => {
    const settle = (result: ConnectResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(nextAttempt);
      for (const socket of pending) socket.destroy();
      pending.clear();
      resolve(result);
    };

    const giveUpIfNothingLeft = (): void => {
      if (pending.size === 0 && nextAttempt === undefined) settle({ ok: false, ...lastFailure, elapsedMs: elapsed() });
    };

    const attempt = (): void => {
      nextAttempt = undefined;
      const socket = connect({ host: plan.address, port: plan.port });
      pending.add(socket);
      const fail = (reason: ConnectFailureReason, detail: string): void => {
        clearTimeout(timer);
        socket.destroy();
        pending.delete(socket);
        // A refusal or an ICMP error says more than a silent timeout: keep the most telling.
        if (reason !== 'timeout' || lastFailure.reason === 'timeout') lastFailure = { reason, detail };
        giveUpIfNothingLeft();
      };
      const timer = setTimeout(() => fail('timeout', `no SYN-ACK within ${plan.attemptTimeoutMs} ms`), plan.attemptTimeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => fail(classifyConnectError(err), err.code ?? err.message));
      socket.once('connect', () => {
        clearTimeout(timer);
        pending.delete(socket);
        socket.removeAllListeners('error');
        settle({ ok: true, socket, elapsedMs: elapsed() });
      });
      if (elapsed() + plan.intervalMs <= plan.windowMs) nextAttempt = setTimeout(attempt, plan.intervalMs);
    };

    attempt();
  });
}

export function classifyConnectError(err: NodeJS.ErrnoException): ConnectFailureReason {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return 'unreachable';
    default:
      return 'error';
  }
}
