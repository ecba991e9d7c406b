/** The Granter: every grant and revoke, in the kernel first, then the session record, log and metrics. */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { AppConfig, User } from '../config/types.js';
import { errorFields } from '../shared/errors.js';
import { revokedFlowTargets, type FlowCloser, type FlowScope } from '../firewall/conntrack.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { Logger } from '../shared/log.js';
import type { DaemonMetrics } from '../metrics/daemon-metrics.js';
import { secondsLeft, type SessionRecord } from './record.js';
import { FlowExpiry, WHOLE_SECOND_GRACE_MS } from './flow-expiry.js';
import type { SessionStore } from './store.js';

export type GrantingFirewall = Pick<FirewallBackend, 'grantStep2' | 'grantService' | 'revoke'>;

export interface GranterOptions {
  firewall: GrantingFirewall;
  sessions: SessionStore;
  logger: Logger;
  metrics?: Pick<DaemonMetrics, 'grants' | 'appGrants' | 'grantFailures' | 'revokes' | 'knockToGrantSeconds'>;
  /** The firewall backend's name (nftables, iptables, vyos), which labels the grant failures counted. */
  backend?: string;
  /** Ends a revoked address's established and NAT-ed flows; without it a revoke only removes grants. */
  flows?: RevokedFlows;
  /** Reports a degraded condition for `health`; the error itself is logged here. */
  onProblem?: (problem: string) => void;
  /** Clustered: this gateway's name, recorded on its own grants. */
  gateway?: string;
}

/** What the Granter tells its listeners (which must not throw nor block). */
export interface GranterEvents {
  /** A grant of this gateway's own, once in the kernel and recorded (not one applied for another gateway). */
  granted: [record: SessionRecord];
}

export interface RevokedFlows {
  closer: FlowCloser;
  /** The ports a full revoke covers, from the running config. */
  scope: () => FlowScope;
}

/** Health problems, one message each so a repeat is reported once. */
export const FLOWS_NOT_CLOSED = 'a revoke could not close established flows: revoked clients may still be connected (see the error log)';
export const VOIDED_NOT_REVOKED = 'a grant the config voided (a reload, or a user removed while stopped) could not be revoked (see the error log)';

/** A live grant a config reload took away: the app as it was, and why. */
export interface VoidedGrant {
  ip: string;
  app: AppConfig;
  reason: 'app removed' | 'app port changed' | 'user removed';
}

function sameUser(a: User, b: User): boolean {
  return a.name === b.name && a.step1Key.equals(b.step1Key) && a.step2Key.equals(b.step2Key);
}

/**
 * Grants a reload voids, one per (ip, app): the app is gone or now has another port or
 * protocol (the grant is keyed on the old one), or a service grant's user is gone. A user
 * whose keys changed counts as gone: list-form users are named by position (`key0`), so
 * removing one pair renames the next. Step-2 windows of a removed user are left to expire in
 * seconds; step 2 refuses a user that no longer exists.
 */
export function voidedByReload(records: readonly SessionRecord[], previous: readonly AppConfig[], next: readonly AppConfig[]): VoidedGrant[] {
  const voided = new Map<string, VoidedGrant>();
  for (const record of records) {
    const before = previous.find((a) => a.name === record.app);
    if (!before) continue; // unattributed, or an app the previous config did not have either
    const after = next.find((a) => a.name === before.name);
    let reason: VoidedGrant['reason'] | undefined;
    if (!after) reason = 'app removed';
    else if (after.port !== before.port || after.protocol !== before.protocol) reason = 'app port changed';
    else if (record.step === 'service' && record.user !== null) {
      const user = before.users.find((u) => u.name === record.user);
      const still = user && after.users.find((u) => sameUser(u, user));
      if (!still) reason = 'user removed';
    }
    const key = JSON.stringify([record.ip, before.name]);
    if (reason && !voided.has(key)) voided.set(key, { ip: record.ip, app: before, reason });
  }
  return [...voided.values()];
}

/**
 * Restored service grants whose user the config no longer has, one per (ip, app): the user was
 * removed while the daemon was stopped (`knock-port user remove` without a running daemon). Only
 * names can be compared here: the keys the grant was made with are not saved. An app removed
 * meanwhile needs nothing: its rules and set are not installed any more, so its grants are gone
 * from the kernel and were not restored.
 */
export function voidedAtStart(records: readonly SessionRecord[], apps: readonly AppConfig[]): VoidedGrant[] {
  const voided = new Map<string, VoidedGrant>();
  for (const record of records) {
    if (record.step !== 'service' || record.user === null) continue;
    const app = apps.find((a) => a.name === record.app);
    if (!app || app.users.some((u) => u.name === record.user)) continue;
    const key = JSON.stringify([record.ip, app.name]);
    if (!voided.has(key)) voided.set(key, { ip: record.ip, app, reason: 'user removed' });
  }
  return [...voided.values()];
}

/**
 * Opens and closes grants: the kernel first (it enforces expiry), then the session record,
 * one info line and the metrics. Step 1, step 2, the control socket and the self-heal's
 * re-granting all go through here.
 */
export class Granter extends EventEmitter<GranterEvents> {
  /** Service grants' deadlines, for apps that end their flows at expiry (only with `flows`). */
  private readonly expiry: FlowExpiry | undefined;

  /**
   * With `flows`, revokes also end the address's flows (see firewall/conntrack.ts), and so does
   * the expiry of a service grant of an app with `end_flows_on_expiry`, live grants restored at
   * start included.
   */
  constructor(private readonly options: GranterOptions) {
    super();
    const { flows, sessions, logger, onProblem } = options;
    if (!flows) return;
    this.expiry = new FlowExpiry({ sessions, closer: flows.closer, scope: flows.scope, logger, ...(onProblem ? { onProblem } : {}) });
    for (const record of sessions.list()) {
      // Restored from the kernel's listing, in whole seconds.
      if (record.step === 'service' && record.app !== null) this.expiry.watch(record.ip, record.app, record.expiresAt + WHOLE_SECOND_GRACE_MS);
    }
  }

  /**
   * A grant another gateway of the cluster made: into the kernel for `ttl` seconds (its time
   * left), recorded until `expiresAt` under the gateway that made it. Not told to the listener.
   */
  async applyRemote(
    grant: { ip: string; app: AppConfig; user: string; step: 'step2' | 'service'; expiresAt: number; gateway: string },
    ttl: number,
  ): Promise<void> {
    const { ip, app, user, step, expiresAt, gateway } = grant;
    if (step === 'step2') await this.inKernel('step2', (firewall) => firewall.grantStep2(ip, ttl));
    else {
      await this.inKernel('service', (firewall) => firewall.grantService(ip, app, ttl));
      this.expiry?.watch(ip, app.name, Date.now() + ttl * 1000);
    }
    this.options.sessions.recordUntil(ip, app.name, user, step, expiresAt, gateway);
    // Logged by the caller, once per batch (a joining gateway applies thousands at once).
    this.options.logger.debug({ ip, app: app.name, user, step, ttl, gateway }, 'granted by another gateway');
  }

  /** A record another gateway's grant covers without a kernel change (a longer one is in place). */
  recordRemote(grant: { ip: string; app: string; user: string; step: 'step2' | 'service'; expiresAt: number; gateway: string }): void {
    this.options.sessions.recordUntil(grant.ip, grant.app, grant.user, grant.step, grant.expiresAt, grant.gateway);
    if (grant.step === 'service') this.expiry?.watch(grant.ip, grant.app, grant.expiresAt + WHOLE_SECOND_GRACE_MS);
  }

  /** Stops watching expiries (tests; the daemon's timer does not hold the process). */
  close(): void {
    this.expiry?.close();
  }

  /** After a valid step 1: the HTTPS port for `ip`, for `app.step2Duration` seconds. */
  async openStep2Window(ip: string, app: AppConfig, user: User, knockAt = performance.now()): Promise<void> {
    await this.inKernel('step2', (firewall) => firewall.grantStep2(ip, app.step2Duration));
    this.recorded(ip, app, user, 'step2', app.step2Duration, knockAt);
  }

  /** After a valid step 2: the app's service port for `ip`, for `app.duration` seconds. */
  async openService(ip: string, app: AppConfig, user: User, knockAt = performance.now()): Promise<void> {
    await this.inKernel('service', (firewall) => firewall.grantService(ip, app, app.duration));
    const record = this.recorded(ip, app, user, 'service', app.duration, knockAt);
    // Recorded after the kernel took the grant: the kernel's deadline is no later.
    this.expiry?.watch(ip, app.name, record.expiresAt);
  }

  /**
   * After the ruleset was re-installed (self-heal: a VyOS commit flushed the sets): puts every
   * live grant back in the kernel for the time it has left. The records, logs and metrics
   * already have them; service grants of apps the running config no longer has stay out.
   */
  async reapplyLive(apps: readonly AppConfig[], now = Date.now()): Promise<void> {
    for (const record of this.options.sessions.list()) {
      const ttl = secondsLeft(record, now);
      if (ttl <= 0) continue;
      if (record.step === 'step2') await this.inKernel('step2', (firewall) => firewall.grantStep2(record.ip, ttl));
      else {
        const app = apps.find((a) => a.name === record.app);
        if (!app) continue;
        await this.inKernel('service', (firewall) => firewall.grantService(record.ip, app, ttl));
        // Rounded up to whole seconds: the kernel may now hold it a little past the record.
        this.expiry?.watch(record.ip, app.name, Date.now() + ttl * 1000);
      }
    }
  }

  /**
   * Closes the IP's grants now (all, or one app's service grant), then ends its flows to
   * those ports; returns the records removed. Grants go first: a flow ended while the grant
   * still stood could come straight back. A flow that cannot be ended is logged and reported,
   * and the revoke of the grant stands.
   */
  async revoke(ip: string, app?: AppConfig): Promise<number> {
    await this.options.firewall.revoke(ip, app);
    this.expiry?.forget(ip, app?.name);
    const removed = this.options.sessions.revoke(ip, app?.name).length;
    this.options.metrics?.revokes.inc();
    const flowsClosed = await this.closeFlows(ip, app);
    this.options.logger.info({ ip, app: app?.name ?? '*', records: removed, ...(flowsClosed === undefined ? {} : { flowsClosed }) }, 'revoked');
    return removed;
  }

  /**
   * After a reload: revokes every grant whose app or user the new config dropped (see
   * voidedByReload), flows included. Failures are logged and reported, and the others still go.
   * Returns how many (ip, app) grants were revoked.
   */
  revokeVoided(previous: readonly AppConfig[], next: readonly AppConfig[]): Promise<number> {
    return this.revokeAll(voidedByReload(this.options.sessions.list(), previous, next), 'config reload voids a grant');
  }

  /** At start: revokes the restored grants of users the config no longer has (see voidedAtStart). */
  revokeVoidedAtStart(apps: readonly AppConfig[]): Promise<number> {
    return this.revokeAll(voidedAtStart(this.options.sessions.list(), apps), 'restored grant of a user the config no longer has');
  }

  private async revokeAll(grants: readonly VoidedGrant[], why: string): Promise<number> {
    let revoked = 0;
    for (const { ip, app, reason } of grants) {
      this.options.logger.info({ ip, app: app.name, reason }, why);
      try {
        await this.revoke(ip, app);
        revoked++;
      } catch (err) {
        this.options.logger.error({ ip, app: app.name, ...errorFields(err) }, 'grant voided by the config could not be revoked');
        this.options.onProblem?.(VOIDED_NOT_REVOKED);
      }
    }
    return revoked;
  }

  /** A grant into the kernel; a failure is counted (by backend and step) and thrown on. */
  private async inKernel(step: 'step2' | 'service', put: (firewall: GrantingFirewall) => Promise<void>): Promise<void> {
    try {
      await put(this.options.firewall);
    } catch (err) {
      this.options.metrics?.grantFailures.inc({ backend: this.options.backend ?? 'unknown', step });
      throw err;
    }
  }

  private async closeFlows(ip: string, app: AppConfig | undefined): Promise<number | undefined> {
    const flows = this.options.flows;
    if (!flows) return undefined;
    try {
      return await flows.closer.close(ip, revokedFlowTargets(flows.scope(), app));
    } catch (err) {
      this.options.logger.error({ ip, app: app?.name ?? '*', ...errorFields(err) }, 'grant revoked, but established flows could not be closed');
      this.options.onProblem?.(FLOWS_NOT_CLOSED);
      return undefined;
    }
  }

  private recorded(ip: string, app: AppConfig, user: User, step: 'step2' | 'service', ttl: number, knockAt: number): SessionRecord {
    const record = this.options.sessions.record(ip, app.name, user.name, step, ttl, this.options.gateway);
    this.options.metrics?.grants.inc({ step });
    this.options.metrics?.appGrants.inc({ app: app.name, step });
    this.options.metrics?.knockToGrantSeconds.observe({ step }, (performance.now() - knockAt) / 1000);
    this.options.logger.info({ ip, app: app.name, user: user.name, step, ttl }, 'granted');
    this.emit('granted', record);
    return record;
  }
}
