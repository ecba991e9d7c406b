/**
 * `knock-port run`: config → firewall install → capture → inspector → sessions → grants,
 * plus the step-2 HTTPS server, the control socket and metrics. Everything here is wiring;
 * the decisions live in step1/, step2/, sessions/ and firewall/, what outlives a reload in
 * daemon/lasting-state.ts.
 *
 * Fail closed: stopping (or dying) leaves the firewall installed. With no listener on the
 * queue the kernel drops step-1 packets, HTTPS and service ports stay dropped, and grants
 * already given run out in the kernel on time.
 */
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { performance } from 'node:perf_hooks';
import { publicHttpsPort, type AppConfig, type Config } from './config/types.js';
import { resolveStep1Workers } from './config/workers.js';
import { createControlHandlers } from './control/handlers.js';
import { NotInTrialError } from './control/errors.js';
import { NOT_IN_TRIAL } from './control/trial.js';
import type { UsedCode } from './auth/used-codes.js';
import type { HealthReport } from './control/protocol.js';
import { startControlServer, type ControlServer } from './control/server.js';
import { describeError, errorFields } from './shared/errors.js';
import { netnsPrefix } from './firewall/command.js';
import { ConntrackFlowCloser, flowScopeOf, spawnTool } from './firewall/conntrack.js';
import { chooseCapture, createFirewall, type FirewallOptions } from './firewall/index.js';
import { InterfaceWatch } from './firewall/interface-presence.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import type { FirewallBackend } from './firewall/types.js';
import type { Logger } from './shared/log.js';
import { storeOptionsFromConfig } from './cluster/from-config.js';
import { RedisClusterStore } from './cluster/store.js';
import { createClusterMetrics } from './metrics/cluster-metrics.js';
import { createDaemonMetrics, type DaemonMetrics } from './metrics/daemon-metrics.js';
import { ProblemMemory } from './metrics/health-problems.js';
import { countRefusals, recordLock } from './metrics/lockouts.js';
import { startMetricsServer } from './metrics/server.js';
import { Step1CountCopier } from './metrics/step1-counts.js';
import { ClusterSync } from './cluster/sync.js';
import { Granter } from './sessions/grants.js';
import { applyReloadedLimits, openLastingState, type LastingState } from './daemon/lasting-state.js';
import { FirewallSelfHeal, installAtStart, logHostFirewall } from './daemon/self-heal.js';
import { SessionStore } from './sessions/store.js';
import { Step1Workers, type WorkerEvents } from './step1/workers/pool.js';
import { currentMatch, type GrantEvent } from './step1/workers/protocol.js';
import { HttpsListener, type PreparedSwitch } from './step2/listener.js';
import { createStep2Server, step2TlsOptions } from './step2/server.js';
import { ServedCertificate } from './step2/served-certificate.js';
import type { CheckedTls } from './step2/tls-files.js';
import { registerTlsMetrics } from './metrics/tls-metrics.js';
import { registerGateMetrics } from './metrics/gate-metrics.js';
import { Trial } from './control/trial.js';
import { REPORT_MODE_WARNING } from './config/policy.js';
import type { CaptureKind } from './shared/kinds.js';
import type { ServiceNotifier } from './systemd/notify.js';

export interface DaemonOptions {
  config: Config;
  /** Reads the config again (SIGHUP); throws on an invalid file. */
  reloadConfig: () => Config;
  /** The step-2 certificate and key, checked before start (step2/tls-files.ts). */
  tls: CheckedTls;
  /** Reads and checks them again on SIGHUP, under the config then running; throws when they fail a check. */
  reloadTls?: (config: Config) => CheckedTls;
  logger: Logger;
  /** Passed to the firewall backend (iptables variant, ...). */
  firewall?: Omit<FirewallOptions, 'nft' | 'type'>;
  /** Told READY=1 once the daemon serves, and RELOADING=1 / READY=1 around each reload (systemd). */
  notifier?: ServiceNotifier;
  /**
   * `run --trial SECONDS`: unless `knock-port confirm` comes within `seconds` of the daemon being
   * ready, the gate is removed (as `knock-port uninstall` removes it) and the daemon stops;
   * `ended` is then told, with the error when the removal failed.
   */
  trial?: { seconds: number; ended: (removalError?: unknown) => void };
}

/** What `Daemon.start` sets up before the daemon exists (the firewall installed, state loaded). */
interface DaemonParts extends LongLivedParts {
  /** The backend installed at start; a reload replaces it (see Daemon.firewall). */
  firewall: FirewallBackend;
}

/** The parts that stay the same for the daemon's whole life. */
interface LongLivedParts {
  options: DaemonOptions;
  nft: NftRunner;
  captureKind: CaptureKind;
  sessions: SessionStore;
  granter: Granter;
  metrics: DaemonMetrics;
  problems: ProblemMemory;
  lasting: LastingState;
  /** Present when `global.cluster` is set: the sharing with the other gateways, and its store. */
  cluster?: { sync: ClusterSync; store: RedisClusterStore };
}

/** How often the daemon checks its ruleset is still there and reads capture drop counters. */
const MAINTENANCE_INTERVAL_MS = 5_000;

export class Daemon {
  private config: Config;
  private firewall: FirewallBackend;
  private readonly logger: Logger;
  /** Step 1: one worker thread per queue (log group), sharing budgets, tables and used codes. */
  private workers: Step1Workers | undefined;
  private readonly https: HttpsListener;
  /** The certificate step 2 serves; a SIGHUP replaces it only with a pair that passes every check. */
  private readonly served: ServedCertificate;
  private control: ControlServer | undefined;
  private metricsServer: Server | undefined;
  private maintenance: NodeJS.Timeout | undefined;
  /** The maintenance tick in flight, awaited before a trial removes the gate (a self-heal would put it back). */
  private maintaining: Promise<void> | undefined;
  /** `run --trial`: waiting for `knock-port confirm`, until confirmed or rolled back. */
  private trial: Trial | undefined;
  private stopping: Promise<void> | undefined;
  /** Reloads run one after the other. */
  private reloading: Promise<void> = Promise.resolve();
  /** Configured interface names that match no interface right now (a typo fails open). */
  private readonly interfaces: InterfaceWatch;
  private readonly selfHeal: FirewallSelfHeal;
  private readonly step1Counts: Step1CountCopier;
  private readonly parts: LongLivedParts;

  private constructor({ firewall, ...parts }: DaemonParts) {
    const { options, granter, metrics, problems } = parts;
    this.parts = parts;
    this.config = options.config;
    this.firewall = firewall;
    this.logger = options.logger;
    // Revoke means closed: revokes also end the address's flows, over the running config's ports.
    const flows = new ConntrackFlowCloser(spawnTool(netnsPrefix(options.firewall?.netns)));
    const scope = () => flowScopeOf(this.config);
    granter.useFlows({ closer: flows, scope }, (problem) => problems.note(problem));
    // Entries from other gateways are applied under the running config's apps.
    parts.cluster?.sync.useApps(() => this.config.apps);
    this.interfaces = new InterfaceWatch(this.logger);
    this.interfaces.refresh(this.config);
    this.served = new ServedCertificate(options.tls, this.logger);
    registerTlsMetrics(metrics.registry, { notAfter: () => this.served.current.certificate.notAfter, reloadRefused: () => this.served.reloadRefused });
    registerGateMetrics(metrics.registry, {
      reportMode: () => this.config.global.gateMode === 'report',
      wouldDrop: () => this.firewall.wouldDrop(),
      onReadError: (err) => this.logger.warn(errorFields(err), 'report mode: the kernel counters could not be read'),
    });
    this.https = new HttpsListener(this.createHttpsServer(), () => this.createHttpsServer(), this.logger);
    this.selfHeal = new FirewallSelfHeal({
      firewall: () => this.firewall,
      capture: parts.captureKind,
      granter,
      apps: () => this.config.apps,
      problems,
      logger: this.logger,
      // A re-install also ends the flows the gap let in without a grant.
      flows: { ender: flows, scope, sessions: parts.sessions },
    });
    this.step1Counts = new Step1CountCopier(metrics, this.logger);
    // The workers' counters reach the metrics only at scrape time.
    metrics.registry.beforeScrape(() => {
      if (this.workers) this.step1Counts.copyCounts(this.workers);
    });
  }

  /** The step-2 server (not listening yet); a reload that moves the listener builds a second one. */
  private createHttpsServer(): HttpsServer {
    const { sessions, granter, lasting, metrics } = this.parts;
    return createStep2Server({
      config: () => this.config,
      cert: this.served.current.cert,
      key: this.served.current.key,
      sessions,
      grantService: (ip, app, user) => granter.openService(ip, app, user),
      ...(this.parts.cluster ? { confirmCode: (code: UsedCode) => this.parts.cluster!.sync.confirmCode(code) } : {}),
      limiter: lasting.step2Limiter,
      totp: lasting.totp,
      lockout: lasting.lockout,
      logger: this.logger,
      metrics,
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
    // A first install keeps the flows already established to protected ports (the operator's SSH session).
    const adopter = new ConntrackFlowCloser(spawnTool(netnsPrefix(options.firewall?.netns)));
    await installAtStart(firewall, capture, { adopter, scope: flowScopeOf(config), logger });
    logHostFirewall(logger, firewall.hostFirewall(), 'start');
    const ownership = firewall.tableOwnership?.();
    if (ownership) logger.info({ tableOwned: ownership.owned }, ownership.summary);

    const sessions = await SessionStore.open({ stateDir: config.global.stateDir, logger }, await firewall.list());
    const metrics = createDaemonMetrics(() => sessions.size);
    const granter = new Granter({ firewall, sessions, logger, metrics });
    const problems = new ProblemMemory(logger);
    const lasting = await openLastingState(config.global, {
      logger,
      onLock: (event) => recordLock(logger, metrics, event),
      onRefused: (factor) => metrics.lockoutRefusals.inc({ factor }),
      onProblem: (problem) => problems.note(problem),
    });
    const cluster = config.global.cluster ? startCluster(options, { sessions, granter, metrics, lasting }) : undefined;
    const daemon = new Daemon({ options, firewall, nft, captureKind: capture, sessions, granter, metrics, problems, lasting, ...(cluster ? { cluster } : {}) });
    try {
      await daemon.listen();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    // Only now: the rules are in, every step-1 worker has its queue (log group) bound, HTTPS listens.
    options.notifier?.ready(daemon.status());
    return daemon;
  }

  private async listen(): Promise<void> {
    const g = this.config.global;
    const { sessions, granter, metrics, cluster } = this.parts;
    this.workers = await this.openWorkers(this.config);
    await this.https.listen(g);
    this.control = await startControlServer(
      g.controlSocket,
      createControlHandlers({
        sessions,
        // Clustered, an operator's revoke is also told to the other gateways.
        granter: cluster ? { revoke: (ip, app) => cluster.sync.revoke(ip, app) } : granter,
        config: () => this.config,
        health: () => this.health(),
        ...(this.parts.options.trial ? { trial: { confirm: () => this.confirmTrial() } } : {}),
      }),
      this.logger,
    );
    if (g.metricsListen) this.metricsServer = await startMetricsServer(g.metricsListen, metrics.registry);
    this.maintenance = setInterval(() => {
      this.maintaining = this.maintain();
    }, MAINTENANCE_INTERVAL_MS);
    this.maintenance.unref();
    this.startTrial();
    this.logger.info(
      {
        step1Port: g.httpPort,
        httpsPort: publicHttpsPort(g),
        ...(publicHttpsPort(g) !== g.httpsPort ? { httpsBehindProxy: `${g.httpsListenAddress ?? '*'}:${g.httpsPort}` } : {}),
        capture: this.parts.captureKind,
        queue: this.workers?.numbers()[0],
        step1Workers: this.workers?.numbers().length,
        apps: this.config.apps.map((a) => a.name),
        controlSocket: g.controlSocket,
        metrics: g.metricsListen ?? null,
        gateMode: g.gateMode ?? 'enforce',
        ...(this.trial ? { trialSeconds: this.trial.seconds } : {}),
      },
      'knock-port ready',
    );
  }

  /** `run --trial`: the clock starts once everything serves, so the operator gets all of it to knock and confirm. */
  private startTrial(): void {
    const trial = this.parts.options.trial;
    if (!trial) return;
    this.trial = new Trial(trial.seconds, () => {
      this.rollBackTrial().then(
        () => trial.ended(),
        (err: unknown) => trial.ended(err),
      );
    });
    this.logger.warn(
      { trialSeconds: trial.seconds },
      `trial: the gate is removed again in ${trial.seconds} s (every protected port open, as after knock-port uninstall) unless knock-port confirm is run`,
    );
  }

  /** `knock-port confirm`: the gate stays. Throws when no trial waits. */
  private confirmTrial(): number {
    const trial = this.trial;
    if (!trial) throw new NotInTrialError(NOT_IN_TRIAL);
    const secondsLeft = trial.confirm();
    this.logger.info({ secondsLeft }, 'trial confirmed: the gate stays');
    return secondsLeft;
  }

  /**
   * The trial ran out unconfirmed: the gate is removed exactly as `knock-port uninstall` removes
   * it (knock-port's rules and sets, its accept rules in host chains), deliberately opening
   * every protected port, and the daemon stops. Rejects when the removal failed (the daemon
   * stops all the same, the rules that remain stay closed).
   */
  private rollBackTrial(): Promise<void> {
    this.stopping ??= this.removeGateAndStop();
    return this.stopping;
  }

  private async removeGateAndStop(): Promise<void> {
    clearInterval(this.maintenance);
    // Neither a self-heal nor a reload in flight may install the gate again after its removal.
    await this.maintaining?.catch(() => undefined);
    await this.reloading;
    this.logger.error(
      { trialSeconds: this.trial?.seconds },
      'trial not confirmed in time (knock-port confirm): removing the gate, every protected port is open again; exiting with code 12',
    );
    this.parts.options.notifier?.status('trial not confirmed: gate removed, stopping');
    let removal: unknown;
    try {
      await this.firewall.uninstall();
    } catch (err) {
      removal = err;
      this.logger.error(errorFields(err), 'the gate could not be removed after the unconfirmed trial; remove it with knock-port uninstall');
    }
    await this.shutdown(removal === undefined ? 'knock-port stopped; the gate was removed (trial not confirmed)' : undefined);
    if (removal !== undefined) throw removal instanceof Error ? removal : new Error(describeError(removal));
  }

  /** One line for `systemctl status`: where steps 1 and 2 are served. */
  status(): string {
    const g = this.config.global;
    const numbers = this.workers?.numbers() ?? [];
    const range = numbers.length > 1 ? `${numbers[0]}-${numbers[numbers.length - 1]}` : String(numbers[0] ?? '-');
    const capture = this.parts.captureKind === 'nfqueue' ? `nfqueue ${range}` : `nflog group ${range}`;
    return `step 1 on port ${g.httpPort} (${capture}), step 2 on HTTPS port ${publicHttpsPort(g)}`;
  }

  /** The queue numbers (log groups) step 1 reads under a config: one per worker, consecutive. */
  private captureNumbers(config: Config): number[] {
    const g = config.global;
    const first = this.parts.captureKind === 'nfqueue' ? g.queueNum : g.nflogGroup;
    return Array.from({ length: resolveStep1Workers(g.step1Workers) }, (_, i) => first + i);
  }

  /** Throws when a queue number or log group cannot be bound (e.g. another process holds it). */
  private openWorkers(config: Config): Promise<Step1Workers> {
    const { captureKind, lasting, problems } = this.parts;
    return Step1Workers.start(
      {
        kind: captureKind,
        shared: lasting.shared,
        cookieSecret: lasting.cookieSecret,
        logger: this.logger,
        logRejections: this.logger.isLevelEnabled('debug'),
        onEvents: (events) => this.onWorkerEvents(events),
        onProblem: (problem) => problems.note(problem),
      },
      this.captureNumbers(config),
      config,
    );
  }

  /**
   * What a worker posted after a batch: grants to make (the worker already dropped the packets
   * and sent its SYN-ACKs), and what to log and count. Never blocks a worker.
   */
  private onWorkerEvents(events: WorkerEvents): void {
    const { metrics, lasting } = this.parts;
    for (const grant of events.grants) this.grantStep2(grant, grant.receivedAt - performance.timeOrigin);
    if (events.rejections.length > 0 && this.logger.isLevelEnabled('debug')) {
      for (const r of events.rejections) this.logger.debug({ ip: r.src, sport: r.sport, result: r.result, reason: r.reason }, 'step-1 knock refused');
    }
    for (const event of events.locks) recordLock(this.logger, metrics, event);
    countRefusals(metrics, events.refusals);
    if (events.codes.length > 0) lasting.usedCodes.changed();
    const sync = this.parts.cluster?.sync;
    if (sync) for (const code of events.codes) sync.codeClaimed(code, 'step1');
  }

  /** A worker's grant opens the step-2 window if it still stands under the running config (see currentMatch). */
  private grantStep2(grant: GrantEvent, knockAt: number): void {
    const { ip } = grant;
    const matched = currentMatch(grant, this.config.apps);
    if (!matched) {
      this.logger.info({ ip, app: grant.app, user: grant.user }, 'step-1 knock judged on the config before the reload: not granted');
      return;
    }
    this.parts.granter.openStep2Window(ip, matched.app, matched.user, knockAt).catch((err: unknown) => {
      this.parts.problems.note('a firewall grant failed (see the error log)');
      this.logger.error({ ip, app: matched.app.name, ...errorFields(err) }, 'step-2 window could not be opened');
    });
  }

  /** Self-heal the ruleset (VyOS commits flush chains), count capture drops, look at the interfaces. */
  private async maintain(): Promise<void> {
    await this.selfHeal.run();
    if (this.workers) this.step1Counts.copyDrops(this.workers);
    this.interfaces.refresh(this.config);
  }

  async health(): Promise<HealthReport> {
    const problems = this.parts.problems.recent();
    problems.push(...this.interfaces.problems());
    problems.push(...this.firewall.hostFirewall().problems.map((p) => `host firewall: ${p}`));
    if (!this.workers) problems.push('step-1 capture is not open');
    else problems.push(...this.workers.problems());
    if (!this.https.listening) problems.push('HTTPS server is not listening');
    const sync = this.parts.cluster?.sync;
    if (sync) problems.push(...sync.problems());
    problems.push(...this.served.problems());
    const warnings = this.served.warnings();
    const gate = await this.gateHealth(warnings);
    const trial = this.trial?.health();
    return {
      healthy: problems.length === 0,
      problems,
      ...(warnings.length > 0 ? { warnings } : {}),
      tls: this.served.health(),
      ...(sync ? { cluster: sync.health() } : {}),
      ...(gate ? { gate } : {}),
      ...(trial ? { trial } : {}),
    };
  }

  /** Report mode: what the gate would have dropped, from the kernel; the warning that it protects nothing goes to `warnings`. */
  private async gateHealth(warnings: string[]): Promise<HealthReport['gate']> {
    if (this.config.global.gateMode !== 'report') return undefined;
    warnings.push(`gate_mode ${REPORT_MODE_WARNING}`);
    try {
      return { mode: 'report', wouldDrop: await this.firewall.wouldDrop() };
    } catch (err) {
      warnings.push(`report mode: the kernel counters could not be read: ${describeError(err)}`);
      return { mode: 'report', wouldDrop: [] };
    }
  }

  /**
   * SIGHUP: re-read the config and switch to it, or keep running on the previous one. Never
   * rejects (a failed reload is logged, the daemon keeps serving); reloads run one at a time,
   * each between RELOADING=1 and READY=1 to systemd.
   */
  reload(): Promise<void> {
    const notifier = this.parts.options.notifier;
    const run = this.reloading.then(async () => {
      if (this.stopping) return;
      notifier?.reloading();
      const applied = await this.applyReload().catch((err: unknown) => {
        this.logger.error(errorFields(err), 'config reload failed');
        return false;
      });
      this.reloadTls();
      // Serving again either way: on the new config, or on the running one after a failure.
      notifier?.ready(applied ? this.status() : `${this.status()} (the last reload failed: running on the previous config, see the log)`);
    });
    this.reloading = run;
    return run;
  }

  /**
   * What can fail is prepared next to what runs now, before anything switches: a capture on a
   * new queue number or log group, an HTTPS listener on a new address, then the firewall (one
   * transaction). A failure closes what was opened and leaves the running config, firewall,
   * capture and listener as they were. Live grants and everything in LastingState are kept.
   */
  private async applyReload(): Promise<boolean> {
    if (this.stopping) return false; // a SIGHUP during stop must not open listeners again
    const next = this.readNextConfig();
    if (!next) return false;
    const previous = this.config;
    const g = next.global;
    const before = previous.global;
    const numbers = this.captureNumbers(next);
    const sameNumbers = numbers.join(',') === (this.workers?.numbers() ?? []).join(',');
    const moveHttps = g.httpsPort !== before.httpsPort || g.httpsListenAddress !== before.httpsListenAddress || g.ipv6 !== before.ipv6;
    let capture: PreparedSwitch | undefined;
    let https: PreparedSwitch | undefined;
    let firewall: FirewallBackend;
    let stage = 'opening the step-1 capture';
    try {
      // New queues (log groups) get their workers next to the running ones; the old stop only once all is in place.
      if (!sameNumbers && this.workers) capture = await this.workers.prepare(numbers, next);
      stage = 'opening the HTTPS listener';
      if (moveHttps) https = await this.https.prepareMove(g, before);
      stage = 'installing the firewall';
      firewall = createFirewall(next, { ...this.parts.options.firewall, nft: this.parts.nft });
      await firewall.install(this.parts.captureKind);
    } catch (err) {
      await capture?.cancel();
      await https?.cancel();
      this.logger.error(errorFields(err), `config reload failed while ${stage}; still running on the previous config`);
      return false;
    }
    this.switchFirewall(firewall);
    const gateMode = (config: Config) => config.global.gateMode ?? 'enforce';
    if (gateMode(next) !== gateMode(previous)) {
      this.logger.warn(gateMode(next) === 'report' ? `gate_mode changed to ${REPORT_MODE_WARNING}` : 'gate_mode changed to enforce: the gate drops again');
    }
    this.config = next;
    applyReloadedLimits(this.parts.lasting, next.global);
    this.workers?.reconfigure(next, this.logger.isLevelEnabled('debug'));
    this.interfaces.refresh(next);
    await capture?.apply();
    await https?.apply();
    // Grants of apps and users the new config dropped end now, with their flows.
    await this.parts.granter.revokeVoided(previous.apps, next.apps);
    this.logger.info({ apps: next.apps.map((a: AppConfig) => a.name) }, 'config reloaded');
    return true;
  }

  /**
   * SIGHUP also reads the certificate and key again (a renewal), under the config now running,
   * whether its own reload worked or not; a pair that fails a check leaves the served one.
   */
  private reloadTls(): void {
    const read = this.parts.options.reloadTls;
    if (read)
      this.served.reload(
        () => read(this.config),
        (tls) => this.https.setSecureContext(step2TlsOptions(tls)),
      );
  }

  /** The config to reload to, or undefined (logged) when it cannot be read or needs a restart. */
  private readNextConfig(): Config | undefined {
    let next: Config;
    try {
      next = this.parts.options.reloadConfig();
    } catch (err) {
      this.logger.error(errorFields(err), 'config reload failed; still running on the previous config');
      return undefined;
    }
    const running = this.config.global;
    if (next.global.firewallType !== running.firewallType || next.global.tableName !== running.tableName) {
      this.logger.error('config reload refused: firewall_type and table_name changes need a restart (and `knock-port uninstall` of the old rules)');
      return undefined;
    }
    if (clusterSection(next) !== clusterSection(this.config)) {
      this.logger.warn('global.cluster changed: cluster changes take effect at the next restart; the rest of the config is reloaded');
    }
    return next;
  }

  /** Grants go to the freshly installed backend from now on; the replaced one is closed. */
  private switchFirewall(firewall: FirewallBackend): void {
    const replaced = this.firewall;
    this.firewall = firewall;
    this.parts.granter.useFirewall(firewall);
    replaced.close?.();
  }

  /** Stops listening and saves state; the firewall stays (fail closed). Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(stopped = 'knock-port stopped; firewall left closed, live grants expire in the kernel'): Promise<void> {
    clearInterval(this.maintenance);
    this.trial?.cancel();
    await this.workers?.stop();
    this.workers = undefined;
    await this.https.close();
    await this.control?.close();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
    try {
      await this.parts.sessions.close();
    } catch (err) {
      this.logger.error(errorFields(err), 'session state could not be saved on stop');
    }
    await this.parts.lasting.usedCodes.close();
    if (this.parts.cluster) {
      await this.parts.cluster.sync.idle();
      await this.parts.cluster.store.close();
    }
    this.firewall.close?.();
    this.parts.nft.close?.();
    this.logger.info(stopped);
  }
}

/** `global.cluster` as a comparable text (the key as a digest-free hex: it never leaves this process). */
function clusterSection(config: Config): string {
  const cluster = config.global.cluster;
  return cluster ? JSON.stringify({ ...cluster, key: cluster.key.toString('hex') }) : '';
}

/**
 * Clustered: the sync and its store, connecting in the background (start never waits for it;
 * the snapshot is applied when it comes). This gateway's grants and accepted codes are shared.
 */
function startCluster(
  options: DaemonOptions,
  parts: Pick<LongLivedParts, 'sessions' | 'granter' | 'metrics' | 'lasting'>,
): { sync: ClusterSync; store: RedisClusterStore } {
  const cluster = options.config.global.cluster!;
  const { sessions, granter, metrics, lasting } = parts;
  const logger = options.logger;
  // The gauges read the store and the sync, which need the metrics first.
  const live: { store?: RedisClusterStore; sync?: ClusterSync } = {};
  const clusterMetrics = createClusterMetrics(metrics.registry, {
    connected: () => live.store?.state().connected ?? false,
    synced: () => live.store?.state().synced ?? false,
    lagSeconds: () => {
      const lag = live.store?.state().lagMs;
      return lag === undefined ? undefined : lag / 1000;
    },
    reconnects: () => live.store?.state().reconnects ?? 0,
    snapshots: () => live.store?.state().snapshots ?? 0,
    backlog: () => live.sync?.backlog() ?? 0,
  });
  const sync = new ClusterSync({
    cluster,
    granter,
    sessions,
    markCodeUsed: (code) => lasting.usedCodes.markUsedElsewhere(code),
    apps: () => options.config.apps,
    logger,
    metrics: clusterMetrics,
  });
  const store = RedisClusterStore.connect({
    ...storeOptionsFromConfig(cluster),
    logger,
    onEntry: (kind, id, text) => sync.onEntry(kind, id, text),
    onState: (state) => sync.onState(state),
  });
  Object.assign(live, { store, sync });
  sync.attach(store);
  granter.useCluster(cluster.gateway, (record) => sync.grantedLocally(record));
  lasting.usedCodes.onClaimed((code) => sync.codeClaimed(code, 'step2'));
  return { sync, store };
}
