/**
 * The step-2 HTTPS listener across reloads: the server listening now, and a reload's move to a
 * new address prepared next to it, switched to only once everything else of the reload is in
 * place (or cancelled, with the running listener as it was).
 */
import type { Server as HttpsServer } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { GlobalConfig } from '../config/types.js';
import { errorFields, KnockPortError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

export class Step2ListenError extends KnockPortError {}

/** A prepared switch: `apply` makes it current, `cancel` undoes the preparation. */
export interface PreparedSwitch {
  apply(): Promise<void>;
  cancel(): Promise<void>;
}

export class Step2Listener {
  constructor(
    private server: HttpsServer,
    /** A new step-2 server (not listening yet), for a move. */
    private readonly createServer: () => HttpsServer,
    private readonly logger: Logger,
  ) {}

  get listening(): boolean {
    return this.server.listening;
  }

  /** Throws Step2ListenError when the address cannot be bound. */
  listen(g: GlobalConfig): Promise<void> {
    return listenStep2(this.server, g, this.logger);
  }

  /**
   * A listener for a reload's new HTTPS address, next to the running one. When the port stays
   * and only the address changes, the running listener holds the port: it is closed first, and
   * listens again if the new one cannot (or the reload is cancelled).
   */
  async prepareMove(next: GlobalConfig, before: GlobalConfig): Promise<PreparedSwitch> {
    const server = this.createServer();
    const oldClosed = await this.listenBeside(server, next, before);
    return {
      apply: async () => {
        const old = this.server;
        this.server = server;
        if (!oldClosed) await closeStep2(old);
      },
      cancel: async () => {
        await closeStep2(server);
        if (oldClosed) await this.relisten(before);
      },
    };
  }

  /** New connections get this certificate and key (a renewal); open ones keep theirs. */
  setSecureContext(options: SecureContextOptions): void {
    this.server.setSecureContext(options);
  }

  /** Stops accepting and ends the open connections. */
  close(): Promise<void> {
    return closeStep2(this.server);
  }

  /** Listens on `server`; true when the running listener had to be closed for it. */
  private async listenBeside(server: HttpsServer, next: GlobalConfig, before: GlobalConfig): Promise<boolean> {
    try {
      await listenStep2(server, next, this.logger);
      return false;
    } catch (err) {
      if (next.step2Port !== before.step2Port || (err as { cause?: { code?: string } }).cause?.code !== 'EADDRINUSE') throw err;
    }
    await closeStep2(this.server);
    try {
      await listenStep2(server, next, this.logger);
      return true;
    } catch (err) {
      await this.relisten(before);
      throw err;
    }
  }

  /** Puts the running listener back after a reload closed it and then failed. */
  private async relisten(g: GlobalConfig): Promise<void> {
    try {
      await listenStep2(this.server, g, this.logger);
    } catch (err) {
      this.logger.error(errorFields(err), 'HTTPS listener could not be restored after a failed reload; step 2 is down until the next reload or restart');
    }
  }
}

function listenStep2(server: HttpsServer, g: GlobalConfig, logger: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const where = g.step2ListenAddress === undefined ? `port ${g.step2Port}` : `${g.step2ListenAddress} port ${g.step2Port}`;
    const onError = (err: Error) => reject(new Step2ListenError(`cannot listen for HTTPS on ${where}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ port: g.step2Port, host: g.step2ListenAddress ?? (g.ipv6 ? '::' : '0.0.0.0'), ipv6Only: false }, () => {
      server.off('error', onError);
      server.on('error', (err) => logger.error(errorFields(err), 'HTTPS server error'));
      resolve();
    });
  });
}

/** Stops accepting and ends the server's open connections; resolves once it is closed. */
function closeStep2(server: HttpsServer): Promise<void> {
  const closed = new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  server.closeAllConnections();
  return closed;
}
