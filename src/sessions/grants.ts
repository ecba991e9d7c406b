import { performance } from 'node:perf_hooks';
import type { AppConfig, User } from '../config/types.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { Logger } from '../log.js';
import type { DaemonMetrics } from '../metrics/daemon-metrics.js';
import type { SessionStore } from './store.js';

export type GrantingFirewall = Pick<FirewallBackend, 'grantStep2' | 'grantService' | 'revoke'>;

export interface GranterOptions {
  firewall: GrantingFirewall;
  sessions: SessionStore;
  logger: Logger;
  metrics?: Pick<DaemonMetrics, 'grants' | 'revokes' | 'knockToGrantSeconds'>;
}

/**
 * Opens and closes grants: the kernel first (it enforces expiry), then the session record,
 * one info line and the metrics. Step 1, step 2 and the control socket all go through here.
 */
export class Granter {
  constructor(private readonly options: GranterOptions) {}

  /** After a config reload: grants go to the re-created backend. */
  useFirewall(firewall: GrantingFirewall): void {
    this.options.firewall = firewall;
  }

  /** After a valid step 1: the HTTPS port for `ip`, for `app.step2HttpsDuration` seconds. */
  async openStep2Window(ip: string, app: AppConfig, user: User, knockAt = performance.now()): Promise<void> {
    await this.options.firewall.grantStep2(ip, app.step2HttpsDuration);
    this.recorded(ip, app, user, 'step2', app.step2HttpsDuration, knockAt);
  }

  /** After a valid step 2: the app's service port for `ip`, for `app.duration` seconds. */
  async openService(ip: string, app: AppConfig, user: User, knockAt = performance.now()): Promise<void> {
    await this.options.firewall.grantService(ip, app, app.duration);
    this.recorded(ip, app, user, 'service', app.duration, knockAt);
  }

  /** Closes the IP's grants now (all, or one app's service grant); returns the records removed. */
  async revoke(ip: string, app?: AppConfig): Promise<number> {
    await this.options.firewall.revoke(ip, app);
    const removed = this.options.sessions.revoke(ip, app?.name).length;
    this.options.metrics?.revokes.inc();
    this.options.logger.info({ ip, app: app?.name ?? '*', records: removed }, 'revoked');
    return removed;
  }

  private recorded(ip: string, app: AppConfig, user: User, step: 'step2' | 'service', ttl: number, knockAt: number): void {
    this.options.sessions.record(ip, app.name, user.name, step, ttl);
    this.options.metrics?.grants.inc({ step });
    this.options.metrics?.knockToGrantSeconds.observe((performance.now() - knockAt) / 1000, { step });
    this.options.logger.info({ ip, app: app.name, user: user.name, step, ttl }, 'granted');
  }
}
