/**
 * Step 2 in the daemon: the HTTPS listener and the certificate it serves. A SIGHUP replaces the
 * certificate only with a pair that passes every check; a reload that moves the listener builds
 * a second server next to the running one.
 */
import type { Server as HttpsServer } from 'node:https';
import type { UsedCode } from '../auth/used-codes.js';
import type { Config } from '../config/types.js';
import type { ClusterSync } from '../cluster/sync.js';
import type { DaemonMetrics } from '../metrics/daemon-metrics.js';
import { registerTlsMetrics } from '../metrics/tls-metrics.js';
import type { Granter } from '../sessions/grants.js';
import type { SessionStore } from '../sessions/store.js';
import type { Logger } from '../shared/log.js';
import { Step2Listener } from '../step2/listener.js';
import { createStep2Server, step2TlsOptions } from '../step2/server.js';
import { ServedCertificate } from '../step2/served-certificate.js';
import type { CheckedTls } from '../step2/tls-files.js';
import type { LastingState } from './lasting-state.js';
import type { RunningConfig } from './running.js';

export interface Step2Parts {
  running: RunningConfig;
  tls: CheckedTls;
  sessions: SessionStore;
  granter: Granter;
  lasting: LastingState;
  metrics: DaemonMetrics;
  logger: Logger;
  /** Clustered: step 2 waits for the store's word on its one-time code. */
  sync?: ClusterSync;
}

export class Step2 {
  readonly listener: Step2Listener;
  readonly served: ServedCertificate;

  constructor(private readonly parts: Step2Parts) {
    this.served = new ServedCertificate(parts.tls, parts.logger);
    registerTlsMetrics(parts.metrics.registry, { notAfter: () => this.served.current.certificate.notAfter, reloadRefused: () => this.served.reloadRefused });
    this.listener = new Step2Listener(this.createServer(), () => this.createServer(), parts.logger);
  }

  /**
   * SIGHUP also reads the certificate and key again (a renewal), under the config now running,
   * whether its own reload worked or not; a pair that fails a check leaves the served one.
   */
  reloadTls(read: ((config: Config) => CheckedTls) | undefined): void {
    if (read)
      this.served.reload(
        () => read(this.parts.running.config),
        (tls) => this.listener.setSecureContext(step2TlsOptions(tls)),
      );
  }

  /** The step-2 server (not listening yet). */
  private createServer(): HttpsServer {
    const { running, sessions, granter, lasting, metrics, logger, sync } = this.parts;
    return createStep2Server({
      config: () => running.config,
      cert: this.served.current.cert,
      key: this.served.current.key,
      sessions,
      grantService: (ip, app, user) => granter.openService(ip, app, user),
      ...(sync ? { confirmCode: (code: UsedCode) => sync.confirmCode(code) } : {}),
      limiter: lasting.step2Limiter,
      totp: lasting.totp,
      lockout: lasting.lockout,
      logger,
      metrics,
    });
  }
}
