/**
 * `knock-port run`: config → firewall install → capture → inspector → sessions → grants,
 * plus the step-2 HTTPS server, the control socket and metrics. Everything here is wiring;
 * the decisions live in step1/, step2/ and firewall/.
 *
 * Fail closed: stopping (or dying) leaves the firewall installed. With no listener on the
 * queue the kernel drops step-1 packets, HTTPS and service ports stay dropped, and grants
 * already given run out in the kernel on time.
 */
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { performance } from 'node:perf_hooks';
import { SecretLockout, lockoutPolicy, type LockEvent } from './auth/lockout.js';
import { PerMinuteLimiter } from './auth/ratelimit.js';
import { TotpVerifier } from './auth/totp.js';
import type { CaptureDrops } from './capture/step1-capture.js';
import { publicHttpsPort, type AppConfig, type Config, type GlobalConfig } from './config/types.js';
import { resolveStep1Workers } from './config/workers.js';
import { createControlHandlers } from './control/handlers.js';
import type { HealthReport } from './control/protocol.js';
import { startControlServer, type ControlServer } from './control/server.js';
import { describeError, KnockPortError } from './shared/errors.js';
import { netnsPrefix } from './firewall/command.js';
import { ConntrackFlowCloser, spawnTool } from './firewall/conntrack.js';
import { chooseCapture, createFirewall, type FirewallOptions } from './firewall/index.js';
import { InterfaceWatch } from './firewall/interface-presence.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import type { HostFirewallReport } from './firewall/host-firewall.js';
import type { FirewallBackend } from './firewall/types.js';
import type { Logger } from './shared/log.js';
import { createDaemonMetrics, type DaemonMetrics } from './metrics/daemon-metrics.js';
import { startMetricsServer } from './metrics/server.js';
import { Granter } from './sessions/grants.js';
import { secondsLeft } from './sessions/record.js';
import { SessionStore } from './sessions/store.js';
import { SavedUsedCodes } from './sessions/used-codes-file.js';
import { loadOrCreateCookieSecret } from './sessions/cookie-secret-file.js';
import { STEP1_REASONS, STEP1_RESULTS } from './step1/decision.js';
import { createSharedState, SharedLockoutStates, SharedSourceBudget, SharedUsedCodeStore, type SharedStateBuffers } from './step1/shared-state.js';
import { Step1Workers, type WorkerEvents } from './step1/workers/pool.js';
import { credentialFingerprint, type GrantEvent } from './step1/workers/protocol.js';
import { createStep2Server } from './step2/server.js';
import type { CaptureKind } from './shared/kinds.js';

export class DaemonStartError extends KnockPortError {}

export interface DaemonOptions {
  config: Config;
  /** Reads the config again (SIGHUP); throws on an invalid file. */
  reloadConfig: () => Config;
  cert: Buffer;
  key: Buffer;
  logger: Logger;
  /** Passed to the firewall backend (iptables variant, ...). */
  firewall?: Omit<FirewallOptions, 'nft' | 'type'>;
}

/** How often the daemon checks its ruleset is still there and reads capture drop counters. */
const MAINTENANCE_INTERVAL_MS = 5_000;
/** How long a degraded condition stays in the health report after it was last seen. */
const PROBLEM_MEMORY_MS = 60_000;

export class Daemon {
  private config: Config;
  /** Step 1: one worker thread per queue (log group), sharing budgets, tables and used codes. */
  private workers: Step1Workers | undefined;
  private httpsServer: HttpsServer;
  private control: ControlServer | undefined;
  private metricsServer: Server | undefined;
  private maintenance: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private readonly step2Limiter: { current: PerMinuteLimiter };
  /** Wrong guesses per secret across all sources, for both steps; kept across reloads. */
  private readonly lockout: SecretLockout;
  /** One verifier for both steps; its used-code cache is saved in state_dir and outlives reloads. */
  private readonly totp: TotpVerifier;
  /** Reloads run one after the other. */
  private reloading: Promise<void> = Promise.resolve();
  /** Degraded conditions by message, with when each was last seen (health reports the recent ones). */
  private readonly problems = new Map<string, number>();
  private countedDrops: CaptureDrops = { kernel: 0, enobufs: 0 };
  /** Host firewall problems already logged (each is logged when it appears, reported by health while it lasts). */
  private reportedHostProblems = new Set<string>();
  /** Configured interface names that match no interface right now (a typo fails open). */
  private readonly interfaces: InterfaceWatch;
  private countedStep1 = { results: {} as Record<string, number>, reasons: {} as Record<string, number> };
  /** Per-worker packet counts already in the metrics, by queue number (log group) and worker slot. */
  private countedWorkers = new Map<number, { slot: number; packets: number }>();

  private constructor(
    private readonly options: DaemonOptions,
    private firewall: FirewallBackend,
    private readonly nft: NftRunner,
    private readonly captureKind: CaptureKind,
    private readonly sessions: SessionStore,
    private readonly granter: Granter,
    private readonly metrics: DaemonMetrics,
    private readonly cookieSecret: Buffer,
    private readonly shared: SharedStateBuffers,
    private readonly logger: Logger,
    private readonly usedCodes: SavedUsedCodes,
  ) {
    this.config = options.config;
    this.totp = new TotpVerifier(1, undefined, usedCodes.codes);
    // The same counts as the step-1 workers', in shared memory: one budget per secret for both steps.
    this.lockout = new SecretLockout(lockoutPolicy(this.config.global), {
      states: new SharedLockoutStates(shared),
      onLock: (event) => logLock(logger, metrics, event),
      onRefused: (factor) => metrics.lockoutRefusals.inc({ factor }),
    });
    this.step2Limiter = { current: new PerMinuteLimiter(this.config.global.rateLimitPerMinute) };
    // Revoke means closed: revokes also end the address's flows, over the running config's ports.
    const flows = new ConntrackFlowCloser(spawnTool(netnsPrefix(options.firewall?.netns)));
    granter.useFlows({ closer: flows, scope: () => ({ httpsPort: publicHttpsPort(this.config.global), apps: this.config.apps }) }, (problem) => this.noteProblem(problem));
    this.interfaces = new InterfaceWatch(logger);
    this.interfaces.refresh(this.config);
    this.httpsServer = this.createHttpsServer();
    metrics.registry.beforeRender(() => this.collectStep1Counts());
  }

  /** The step-2 server (not listening yet); a reload that moves the listener builds a second one. */
  private createHttpsServer(): HttpsServer {
    return createStep2Server({
      config: () => this.config,
      cert: this.options.cert,
      key: this.options.key,
      sessions: this.sessions,
      grantService: (ip, app, user) => this.granter.openService(ip, app, user),
      limiter: { allow: (key) => this.step2Limiter.current.allow(key) },
      totp: this.totp,
      lockout: this.lockout,
      logger: this.logger,
      metrics: this.metrics,
    });
  }

  /** Installs the firewall, restores sessions and starts every listener; throws on failure. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config, logger } = options;
    for (const warning of config.warnings ?? []) logger.warn({ config: config.source }, warning);
    const nft = createNftRunner();
    const firewall = createFirewall(config, { ...options.firewall, nft });
    const { capture, reason } = chooseCapture(config.global.capture, await firewall.capabilities());
    logger.info({ firewall: firewall.type, capture, nft: nft.kind }, reason);
    await firewall.install(capture);
    logHostFirewall(logger, firewall.hostFirewall(), 'start');

    const sessions = await SessionStore.open({ stateDir: config.global.stateDir, logger }, await firewall.list());
    const metrics = createDaemonMetrics(() => sessions.size);
    const granter = new Granter({ firewall, sessions, logger, metrics });
    const cookieSecret = await loadOrCreateCookieSecret(config.global.stateDir);
    // Created once: reloads and worker restarts keep the budgets, tables, locks and used codes.
    const shared = createSharedState(config.global.rateLimitPerMinute);
    let daemon: Daemon | undefined;
    const usedCodes = await SavedUsedCodes.open({
      stateDir: config.global.stateDir,
      logger,
      store: new SharedUsedCodeStore(shared),
      onFull: () => daemon?.noteProblem('one-time codes refused: the used-code cache is full (see the error log)'),
    });
    daemon = new Daemon(options, firewall, nft, capture, sessions, granter, metrics, cookieSecret, shared, logger, usedCodes);
    try {
      await daemon.listen();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return daemon;
  }

  private async listen(): Promise<void> {
    const g = this.config.global;
    this.workers = await this.openWorkers(this.config);
    await this.listenHttps(this.httpsServer, g);
    this.control = await startControlServer(
      g.controlSocket,
      createControlHandlers({ sessions: this.sessions, granter: this.granter, config: () => this.config, health: () => this.health() }),
      this.logger,
    );
    if (g.metricsListen) this.metricsServer = await startMetricsServer(g.metricsListen, this.metrics.registry);
    this.maintenance = setInterval(() => void this.maintain(), MAINTENANCE_INTERVAL_MS);
    this.maintenance.unref();
    this.logger.info(
      {
        step1Port: g.httpPort,
        httpsPort: publicHttpsPort(g),
        ...(publicHttpsPort(g) !== g.httpsPort ? { httpsBehindProxy: `${g.httpsListenAddress ?? '*'}:${g.httpsPort}` } : {}),
        capture: this.captureKind,
        queue: this.workers?.numbers()[0],
        step1Workers: this.workers?.numbers().length,
        apps: this.config.apps.map((a) => a.name),
        controlSocket: g.controlSocket,
        metrics: g.metricsListen ?? null,
      },
      'knock-port ready',
    );
  }

  /** The queue numbers (log groups) step 1 reads under a config: one per worker, consecutive. */
  private captureNumbers(config: Config): number[] {
    const g = config.global;
    const first = this.captureKind === 'nfqueue' ? g.queueNum : g.nflogGroup;
    return Array.from({ length: resolveStep1Workers(g.step1Workers) }, (_, i) => first + i);
  }

  /** Throws when a queue number or log group cannot be bound (e.g. another process holds it). */
  private openWorkers(config: Config): Promise<Step1Workers> {
    return Step1Workers.start(
      {
        kind: this.captureKind,
        shared: this.shared,
        cookieSecret: this.cookieSecret,
        logger: this.logger,
        logRejections: this.logger.isLevelEnabled('debug'),
        onEvents: (events) => this.onWorkerEvents(events),
        onProblem: (problem) => this.noteProblem(problem),
      },
      this.captureNumbers(config),
      config,
    );
  }

  private listenHttps(server: HttpsServer, g: GlobalConfig): Promise<void> {
    return new Promise((resolve, reject) => {
      const where = g.httpsListenAddress === undefined ? `port ${g.httpsPort}` : `${g.httpsListenAddress} port ${g.httpsPort}`;
      const onError = (err: Error) => reject(new DaemonStartError(`cannot listen for HTTPS on ${where}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen({ port: g.httpsPort, host: g.httpsListenAddress ?? (g.ipv6 ? '::' : '0.0.0.0'), ipv6Only: false }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.logger.error({ err: err.message }, 'HTTPS server error'));
        resolve();
      });
    });
  }

  /**
   * A listener for a reload's new HTTPS address, next to the running one. When the port stays
   * and only the address changes, the running listener holds the port: it is closed first
   * (`oldClosed`), and listens again if the new one cannot.
   */
  private async moveHttps(next: GlobalConfig, before: GlobalConfig): Promise<{ server: HttpsServer; oldClosed: boolean }> {
    const server = this.createHttpsServer();
    try {
      await this.listenHttps(server, next);
      return { server, oldClosed: false };
    } catch (err) {
      if (next.httpsPort !== before.httpsPort || (err as { cause?: { code?: string } }).cause?.code !== 'EADDRINUSE') throw err;
    }
    await closeHttps(this.httpsServer);
    try {
      await this.listenHttps(server, next);
      return { server, oldClosed: true };
    } catch (err) {
      await this.relistenHttps(before);
      throw err;
    }
  }

  /** Puts the running HTTPS listener back after a reload closed it and then failed. */
  private async relistenHttps(g: GlobalConfig): Promise<void> {
    try {
      await this.listenHttps(this.httpsServer, g);
    } catch (err) {
      this.logger.error({ err: describeError(err) }, 'HTTPS listener could not be restored after a failed reload; step 2 is down until the next reload or restart');
    }
  }

  /**
   * What a worker posted after a batch: grants to make (the worker already dropped the packets
   * and sent its SYN-ACKs), and what to log and count. Never blocks a worker.
   */
  private onWorkerEvents(events: WorkerEvents): void {
    for (const grant of events.grants) this.grantStep2(grant, grant.receivedAt - performance.timeOrigin);
    if (events.rejections.length > 0 && this.logger.isLevelEnabled('debug')) {
      for (const r of events.rejections) this.logger.debug({ ip: r.src, sport: r.sport, result: r.result, reason: r.reason }, 'step-1 knock refused');
    }
    for (const event of events.locks) logLock(this.logger, this.metrics, event);
    for (const [factor, count] of Object.entries(events.refusals)) this.metrics.lockoutRefusals.inc({ factor }, count);
    if (events.codesClaimed) this.usedCodes.changed();
  }

  private grantStep2(grant: GrantEvent, knockAt: number): void {
    const { ip } = grant;
    const app = this.config.apps.find((a) => a.name === grant.app);
    const user = app?.users.find((u) => u.name === grant.user);
    // A worker may still have judged with the config before a reload: its grant counts only if
    // the user's step-1 credentials are unchanged (a removed user or a rotated key opens nothing).
    if (!app || !user || credentialFingerprint(user) !== grant.credentials) {
      this.logger.info({ ip, app: grant.app, user: grant.user }, 'step-1 knock judged on the config before the reload: not granted');
      return;
    }
    this.granter.openStep2Window(ip, app, user, knockAt).catch((err: unknown) => {
      this.noteProblem('a firewall grant failed (see the error log)');
      this.logger.error({ ip, app: app.name, err: describeError(err) }, 'step-2 window could not be opened');
    });
  }

  /** Copies the workers' counters (shared memory) into the metrics, only at scrape time. */
  private collectStep1Counts(): void {
    if (!this.workers) return;
    const { results, reasons } = this.workers.counts();
    for (const result of STEP1_RESULTS) {
      const delta = results[result] - (this.countedStep1.results[result] ?? 0);
      if (delta > 0) this.metrics.step1Packets.inc({ outcome: result, reason: '' }, delta);
      this.countedStep1.results[result] = results[result];
    }
    for (const reason of STEP1_REASONS) {
      const delta = reasons[reason] - (this.countedStep1.reasons[reason] ?? 0);
      if (delta > 0) this.metrics.step1Packets.inc({ outcome: 'reason', reason }, delta);
      this.countedStep1.reasons[reason] = reasons[reason];
    }
    const stats = this.workers.stats();
    for (const worker of stats) {
      const counted = this.countedWorkers.get(worker.number);
      const before = counted?.slot === worker.slot ? counted.packets : 0;
      if (worker.packets > before) this.metrics.step1WorkerPackets.inc({ worker: String(worker.number) }, worker.packets - before);
      else this.metrics.step1WorkerPackets.inc({ worker: String(worker.number) }, 0);
      this.countedWorkers.set(worker.number, { slot: worker.slot, packets: Math.max(before, worker.packets) });
    }
    this.metrics.step1Workers.set(stats.filter((worker) => worker.alive).length);
    const restarts = this.workers.restartCount - this.metrics.step1WorkerRestarts.get();
    if (restarts > 0) this.metrics.step1WorkerRestarts.inc(undefined, restarts);
  }

  /** Self-heal the ruleset (VyOS commits flush chains) and count capture drops. */
  private async maintain(): Promise<void> {
    try {
      if (this.firewall.ensureInstalled && (await this.firewall.ensureInstalled(this.captureKind))) {
        this.logger.warn({ firewall: this.firewall.type }, 'firewall ruleset was missing and has been re-installed; restoring live grants');
        await this.restoreGrants();
      }
      logHostFirewall(this.logger, this.firewall.hostFirewall(), 'self-heal', this.reportedHostProblems);
      this.reportedHostProblems = new Set(this.firewall.hostFirewall().problems);
      this.problems.delete('firewall self-heal failed');
    } catch (err) {
      this.noteProblem('firewall self-heal failed');
      this.logger.error({ err: describeError(err) }, 'firewall self-heal failed');
    }
    this.countCaptureDrops();
    this.interfaces.refresh(this.config);
  }

  private async restoreGrants(): Promise<void> {
    const now = Date.now();
    for (const record of this.sessions.list()) {
      const ttl = secondsLeft(record, now);
      if (ttl <= 0) continue;
      if (record.step === 'step2') await this.firewall.grantStep2(record.ip, ttl);
      else {
        const app = this.config.apps.find((a) => a.name === record.app);
        if (app) await this.firewall.grantService(record.ip, app, ttl);
      }
    }
  }

  private countCaptureDrops(): void {
    if (!this.workers) return;
    const drops = this.workers.drops();
    const kernel = drops.kernel - this.countedDrops.kernel;
    const enobufs = drops.enobufs - this.countedDrops.enobufs;
    if (kernel > 0) this.metrics.captureDrops.inc({ source: 'kernel' }, kernel);
    if (enobufs > 0) this.metrics.captureDrops.inc({ source: 'enobufs' }, enobufs);
    if (kernel > 0 || enobufs > 0) this.logger.warn({ kernel, enobufs }, 'step-1 packets dropped before inspection (flood or slow consumer)');
    this.countedDrops = drops;
  }

  /**
   * Records a degraded condition: logged when first seen or seen again after a quiet
   * minute (a flood must not flood the log), and reported by `health` while recent, so a
   * transient condition an attacker can provoke does not stick until a restart.
   */
  private noteProblem(problem: string): void {
    const now = Date.now();
    const last = this.problems.get(problem);
    if (last === undefined || now - last > PROBLEM_MEMORY_MS) this.logger.warn(problem);
    this.problems.set(problem, now);
  }

  health(): HealthReport {
    const now = Date.now();
    const problems = [...this.problems].filter(([, seen]) => now - seen <= PROBLEM_MEMORY_MS).map(([problem]) => problem);
    problems.push(...this.interfaces.problems());
    problems.push(...this.firewall.hostFirewall().problems.map((p) => `host firewall: ${p}`));
    if (!this.workers) problems.push('step-1 capture is not open');
    else problems.push(...this.workers.problems());
    if (!this.httpsServer.listening) problems.push('HTTPS server is not listening');
    return { healthy: problems.length === 0, problems };
  }

  /**
   * SIGHUP: re-read the config and switch to it, or keep running on the previous one. Never
   * rejects (a failed reload is logged, the daemon keeps serving); reloads run one at a time.
   */
  reload(): Promise<void> {
    const run = this.reloading.then(() =>
      this.applyReload().catch((err: unknown) => {
        this.logger.error({ err: describeError(err) }, 'config reload failed');
      }),
    );
    this.reloading = run;
    return run;
  }

  /**
   * What can fail is prepared next to what runs now, before anything switches: a capture on a
   * new queue number or log group, an HTTPS listener on a new address, then the firewall (one
   * transaction). A failure closes what was opened and leaves the running config, firewall,
   * capture and listener as they were. Live grants are kept.
   */
  private async applyReload(): Promise<void> {
    if (this.stopping) return; // a SIGHUP during stop must not open listeners again
    let next: Config;
    try {
      next = this.options.reloadConfig();
    } catch (err) {
      this.logger.error({ err: describeError(err) }, 'config reload failed; still running on the previous config');
      return;
    }
    const previous = this.config;
    if (next.global.firewallType !== previous.global.firewallType || next.global.tableName !== previous.global.tableName) {
      this.logger.error('config reload refused: firewall_type and table_name changes need a restart (and `knock-port uninstall` of the old rules)');
      return;
    }
    const g = next.global;
    const before = previous.global;
    const numbers = this.captureNumbers(next);
    const sameNumbers = numbers.join(',') === (this.workers?.numbers() ?? []).join(',');
    const moveHttps = g.httpsPort !== before.httpsPort || g.httpsListenAddress !== before.httpsListenAddress || g.ipv6 !== before.ipv6;
    let capture: { apply(): Promise<void>; cancel(): Promise<void> } | undefined;
    let https: { server: HttpsServer; oldClosed: boolean } | undefined;
    let firewall: FirewallBackend;
    let stage = 'opening the step-1 capture';
    try {
      // New queues (log groups) get their workers next to the running ones; the old stop only once all is in place.
      if (!sameNumbers && this.workers) capture = await this.workers.prepare(numbers, next);
      stage = 'opening the HTTPS listener';
      if (moveHttps) https = await this.moveHttps(g, before);
      stage = 'installing the firewall';
      firewall = createFirewall(next, { ...this.options.firewall, nft: this.nft });
      await firewall.install(this.captureKind);
    } catch (err) {
      await capture?.cancel();
      if (https) {
        await closeHttps(https.server);
        if (https.oldClosed) await this.relistenHttps(before);
      }
      this.logger.error({ err: describeError(err) }, `config reload failed while ${stage}; still running on the previous config`);
      return;
    }
    const replaced = this.firewall;
    this.firewall = firewall;
    this.granter.useFirewall(firewall);
    replaced.close?.();
    this.config = next;
    this.lockout.setPolicy(lockoutPolicy(next.global));
    // Budgets, retransmission table, locks and used codes carry over: a reload is no fresh budget.
    SharedSourceBudget.setLimit(this.shared, next.global.rateLimitPerMinute);
    this.workers?.reconfigure(next, this.logger.isLevelEnabled('debug'));
    this.step2Limiter.current.setLimit(next.global.rateLimitPerMinute);
    this.interfaces.refresh(next);
    await capture?.apply();
    if (https) {
      const old = this.httpsServer;
      this.httpsServer = https.server;
      if (!https.oldClosed) await closeHttps(old);
    }
    // Grants of apps and users the new config dropped end now, with their flows.
    await this.granter.revokeVoided(previous.apps, next.apps);
    this.logger.info({ apps: next.apps.map((a: AppConfig) => a.name) }, 'config reloaded');
  }

  /** Stops listening and saves state; the firewall stays (fail closed). Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.maintenance);
    await this.workers?.stop();
    this.workers = undefined;
    await closeHttps(this.httpsServer);
    await this.control?.close();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
    try {
      await this.sessions.close();
    } catch (err) {
      this.logger.error({ err: describeError(err) }, 'session state could not be saved on stop');
    }
    await this.usedCodes.close();
    this.firewall.close?.();
    this.nft.close?.();
    this.logger.info('knock-port stopped; firewall left closed, live grants expire in the kernel');
  }
}

/** A secret locked after a burst of wrong guesses: names and counts only, never what was sent. */
function logLock(logger: Logger, metrics: DaemonMetrics, event: LockEvent): void {
  metrics.lockouts.inc({ factor: event.factor });
  const message =
    event.user === undefined
      ? `app locked after ${event.failures} wrong keys within ${event.windowSeconds} s: every ${event.factor.startsWith('step1') ? 'step-1 knock' : 'step-2 request'} for it is refused for ${event.lockSeconds} s (lockout_app_failures)`
      : `one-time code locked after ${event.failures} wrong codes with this user's right key within ${event.windowSeconds} s: refused for ${event.lockSeconds} s; someone else may hold the key (lockout_user_failures)`;
  logger.warn(event, message);
}

/** Stops accepting and ends the server's open connections; resolves once it is closed. */
function closeHttps(server: HttpsServer): Promise<void> {
  const closed = new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  server.closeAllConnections();
  return closed;
}

/**
 * Says what knock-port did in the host's own firewall: the accept rule it put at the top of
 * host chains that could drop, and what still drops granted connections (`already`: problems
 * logged before, not repeated every tick).
 */
function logHostFirewall(logger: Logger, report: HostFirewallReport, phase: 'start' | 'self-heal', already = new Set<string>()): void {
  for (const chain of report.inserted) {
    const message = phase === 'start' ? 'host firewall: accept rule for granted connections put at the top of' : 'host firewall: accept rule for granted connections was missing (host ruleset reloaded?) and is back at the top of';
    logger[phase === 'start' ? 'info' : 'warn'](`${message} ${chain}`);
  }
  for (const problem of report.problems) if (!already.has(problem)) logger.warn(`host firewall: ${problem}`);
}
