/**
 * `knock-port run`: builds the daemon's parts once, in order, each handed what it needs: the
 * running config (daemon/running.ts, which a reload swaps and every part reads), the firewall
 * installed, the sessions and their Granter, what outlives a reload (daemon/lasting-state.ts),
 * the cluster, step 1's workers, step 2's listener, the control socket, metrics and the
 * maintenance tick. Parts talk through events (the Granter's grants, the used codes' claims),
 * never through setters called later. The decisions live in step1/, step2/, sessions/ and
 * firewall/.
 *
 * Fail closed: stopping (or dying) leaves the firewall installed. With no listener on the
 * queue the kernel drops step-1 packets, HTTPS and service ports stay dropped, and grants
 * already given run out in the kernel on time.
 */
import type { Server } from 'node:http';
import { publicStep2Port } from './config/types.js';
import { createControlHandlers } from './control/handlers.js';
import type { HealthReport } from './control/protocol.js';
import { startControlServer, type ControlServer } from './control/server.js';
import type { Trial } from './control/trial.js';
import { describeError, errorFields } from './shared/errors.js';
import { netnsPrefix } from './firewall/command.js';
import { ConntrackFlowCloser, spawnTool } from './firewall/conntrack.js';
import { chooseCapture, createFirewall } from './firewall/index.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import { createDaemonMetrics, showApps, showGrantFailures, type DaemonMetrics } from './metrics/daemon-metrics.js';
import { registerGateMetrics } from './metrics/gate-metrics.js';
import { registerXdpMetrics } from './metrics/xdp-metrics.js';
import { ProblemMemory } from './metrics/health-problems.js';
import { recordLock } from './metrics/lockouts.js';
import { startMetricsServer } from './metrics/server.js';
import { registerStatusMetrics, type StatusMetrics } from './metrics/status-metrics.js';
import { packageVersion } from './shared/version.js';
import { Granter } from './sessions/grants.js';
import { SessionStore } from './sessions/store.js';
import type { CaptureKind } from './shared/kinds.js';
import { startCluster, type Cluster } from './daemon/cluster.js';
import { healthProblems, healthReport } from './daemon/health.js';
import { openLastingState, type LastingState } from './daemon/lasting-state.js';
import { Maintenance } from './daemon/maintenance.js';
import type { DaemonOptions } from './daemon/options.js';
import { applyReload, ReloadHistory, type AppliedReload } from './daemon/reload.js';
import { RunningConfig } from './daemon/running.js';
import { installAtStart, logHostFirewall } from './daemon/self-heal.js';
import { Step1 } from './daemon/step1.js';
import { Step2 } from './daemon/step2.js';
import { Step1XdpFront } from './daemon/xdp-front.js';
import { confirmTrial, removeGate, startTrial } from './daemon/trial-run.js';

export type { DaemonOptions } from './daemon/options.js';

/** Every part, built once by Daemon.start in this order. */
interface DaemonParts {
  options: DaemonOptions;
  running: RunningConfig;
  nft: NftRunner;
  captureKind: CaptureKind;
  sessions: SessionStore;
  metrics: DaemonMetrics;
  status: StatusMetrics;
  problems: ProblemMemory;
  reloads: ReloadHistory;
  granter: Granter;
  lasting: LastingState;
  /** Present when `global.cluster` is set: the sharing with the other gateways, and its store. */
  cluster?: Cluster;
  step1: Step1;
  /** The XDP front before step 1 (`step1_xdp`), idle when off. */
  xdp: Step1XdpFront;
  step2: Step2;
  maintenance: Maintenance;
}

export class Daemon {
  private control: ControlServer | undefined;
  private metricsServer: Server | undefined;
  /** `run --trial`: waiting for `knock-port confirm`, until confirmed or rolled back. */
  private trial: Trial | undefined;
  private stopping: Promise<void> | undefined;
  /** Reloads run one after the other. */
  private reloading: Promise<unknown> = Promise.resolve();

  private constructor(private readonly parts: DaemonParts) {}

  /** Installs the firewall, restores sessions and starts every listener; throws on failure. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config, logger } = options;
    for (const warning of config.warnings ?? []) logger.warn({ config: config.source }, warning);
    const nft = createNftRunner();
    const firewall = createFirewall(config, { ...options.firewall, nft });
    const capabilities = await firewall.capabilities();
    // The probes' nft errors are for debugging: every start on a host without nfqueue has them.
    for (const note of capabilities.notes) logger.debug(note);
    const { capture: captureKind, reason } = chooseCapture(config.global.capture, { ...capabilities, notes: [] });
    logger.info({ firewall: firewall.type, capture: captureKind, nft: nft.kind }, reason);
    const running = new RunningConfig(config, firewall);
    // Revoke means closed: revokes (and re-installs) also end the address's flows, over the running config's ports.
    const flows = new ConntrackFlowCloser(spawnTool(netnsPrefix(options.firewall?.netns)));
    // A first install keeps the flows already established to protected ports (the operator's SSH session).
    await installAtStart(firewall, captureKind, { adopter: flows, scope: running.flowScope(), logger });
    logHostFirewall(logger, firewall.hostFirewall(), 'start');
    const ownership = firewall.tableOwnership?.();
    if (ownership) logger.info({ tableOwned: ownership.owned }, ownership.summary);

    const sessions = await SessionStore.open({ stateDir: config.global.stateDir, logger }, await firewall.list());
    const metrics = createDaemonMetrics(() => sessions.size);
    showApps(
      metrics,
      config.apps.map((app) => app.name),
    );
    showGrantFailures(metrics, firewall.type);
    const problems = new ProblemMemory(logger);
    const reloads = new ReloadHistory();
    const onProblem = (problem: string) => problems.note(problem);
    const scope = { closer: flows, scope: running.flowScope };
    const gateway = config.global.cluster?.gateway;
    const granter = new Granter({
      firewall: running.granting,
      backend: firewall.type,
      sessions,
      logger,
      metrics,
      flows: scope,
      onProblem,
      ...(gateway ? { gateway } : {}),
    });
    // A user removed while the daemon was stopped keeps no grant it had.
    await granter.revokeVoidedAtStart(config.apps);
    const lasting = await openLastingState(config.global, {
      logger,
      onLock: (event) => recordLock(logger, metrics, event),
      onRefused: (factor) => metrics.lockoutRefusals.inc({ factor }),
      onProblem,
    });
    const cluster = config.global.cluster ? startCluster(config.global.cluster, { running, sessions, granter, metrics, lasting, logger }) : undefined;
    const sync = cluster ? { sync: cluster.sync } : {};
    const step1 = new Step1({ running, captureKind, lasting, granter, metrics, problems, logger, ...sync });
    const xdp = new Step1XdpFront({ cookieSecret: lasting.cookieSecret, problems, logger });
    registerXdpMetrics(metrics.registry, xdp);
    const maintenance = new Maintenance({ running, captureKind, granter, sessions, flows, step1, xdp, problems, logger });
    const step2 = new Step2({ running, tls: options.tls, sessions, granter, lasting, metrics, logger, ...sync });
    registerGateMetrics(metrics.registry, {
      reportMode: () => running.config.global.gateMode === 'report',
      wouldDrop: () => running.firewall.wouldDrop(),
      onReadError: (err) => logger.warn(errorFields(err), 'report mode: the kernel counters could not be read'),
    });
    const build = { version: packageVersion(), backend: firewall.type, capture: captureKind, xdp: running.config.global.step1Xdp };
    // The health parts are all built by now; the gauges read them at scrape time.
    const healthParts = { running, problems, reloads, maintenance, step1, xdp, step2, ...(cluster ? { cluster } : {}) };
    const status = registerStatusMetrics(metrics.registry, build, {
      problemCount: () => healthProblems(healthParts).length,
      lastReload: () => reloads.lastReload(),
    });
    const parts = { options, running, nft, captureKind, sessions, metrics, status, problems, reloads, granter, lasting, step1, xdp, step2, maintenance };
    const daemon = new Daemon({ ...parts, ...(cluster ? { cluster } : {}) });
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
    const { options, running, sessions, granter, metrics, cluster, step1, step2, captureKind } = this.parts;
    const g = running.config.global;
    const logger = options.logger;
    await step1.open();
    // After the workers: a knock XDP passes on finds its queue (log group) read.
    await this.parts.xdp.start(running.config);
    await step2.listener.listen(g);
    const handlers = createControlHandlers({
      sessions,
      // Clustered, an operator's revoke is also told to the other gateways.
      granter: cluster ? { revoke: (ip, app) => cluster.sync.revoke(ip, app) } : granter,
      config: () => running.config,
      health: () => this.health(),
      reload: () => this.reload(),
      ...(options.trial ? { trial: { confirm: () => confirmTrial(this.trial, logger) } } : {}),
    });
    this.control = await startControlServer(g.controlSocket, handlers, logger);
    if (g.metricsListen) {
      const onUnauthorized = () => metrics.metricsUnauthorized.inc();
      this.metricsServer = await startMetricsServer(
        { listen: g.metricsListen, ...(g.metricsAuth ? { auth: g.metricsAuth } : {}), onUnauthorized },
        metrics.registry,
      );
    }
    this.parts.maintenance.start();
    if (options.trial) this.trial = startTrial(options.trial, logger, () => this.rollBackTrial());
    const numbers = step1.numbers();
    // The start line's field names (httpsPort, httpsBehindProxy) stay as log readers know them.
    const behindProxy = publicStep2Port(g) !== g.step2Port ? { httpsBehindProxy: `${g.step2ListenAddress ?? '*'}:${g.step2Port}` } : {};
    logger.info(
      {
        step1Port: g.step1Port,
        httpsPort: publicStep2Port(g),
        ...behindProxy,
        capture: captureKind,
        queue: numbers[0],
        step1Workers: numbers.length,
        apps: running.config.apps.map((a) => a.name),
        controlSocket: g.controlSocket,
        metrics: g.metricsListen ?? null,
        gateMode: g.gateMode ?? 'enforce',
        step1Xdp: this.parts.xdp.summary(),
        ...(this.trial ? { trialSeconds: this.trial.seconds } : {}),
      },
      'knock-port ready',
    );
  }

  /** The trial ran out unconfirmed: the gate is removed and the daemon stops (see daemon/trial-run.ts). */
  private rollBackTrial(): Promise<void> {
    this.stopping ??= this.removeGateAndStop();
    return this.stopping;
  }

  private async removeGateAndStop(): Promise<void> {
    const { maintenance, running, options } = this.parts;
    maintenance.stop();
    // Neither a self-heal nor a reload in flight may install the gate again after its removal.
    await maintenance.settled();
    await this.reloading;
    const removal = await removeGate(running.firewall, this.trial?.seconds, options.logger, options.notifier);
    await this.shutdown(removal === undefined ? 'knock-port stopped; the gate was removed (trial not confirmed)' : undefined);
    if (removal !== undefined) throw removal instanceof Error ? removal : new Error(describeError(removal));
  }

  /** One line for `systemctl status`: where steps 1 and 2 are served. */
  status(): string {
    const g = this.parts.running.config.global;
    return `step 1 on port ${g.step1Port} (${this.parts.step1.describe()}), step 2 on HTTPS port ${publicStep2Port(g)}`;
  }

  health(): Promise<HealthReport> {
    return healthReport(this.parts, this.trial);
  }

  /**
   * SIGHUP: re-read the config and switch to it, or keep running on the previous one (see
   * daemon/reload.ts); SIGHUP and the control socket's `reload` come here. Never rejects (a
   * failed reload is logged, the daemon keeps serving; it resolves to undefined then); reloads
   * run one at a time, each between RELOADING=1 and READY=1 to systemd.
   */
  reload(): Promise<AppliedReload | undefined> {
    const { options, step2, running, metrics, status, reloads } = this.parts;
    const run = this.reloading.then(async (): Promise<AppliedReload | undefined> => {
      if (this.stopping) return undefined;
      options.notifier?.reloading();
      const appNames = () => running.config.apps.map((app) => app.name);
      const before = appNames();
      const applied = await applyReload({ ...this.parts, logger: options.logger }).catch((err: unknown) => {
        options.logger.error(errorFields(err), 'config reload failed');
        return undefined;
      });
      const outcome = applied ? 'applied' : 'failed';
      reloads.record(outcome);
      status.reloads.inc({ outcome });
      if (applied) showApps(metrics, appNames(), before);
      step2.reloadTls(options.reloadTls);
      // Serving again either way: on the new config, or on the running one after a failure.
      options.notifier?.ready(applied ? this.status() : `${this.status()} (the last reload failed: running on the previous config, see the log)`);
      return applied;
    });
    this.reloading = run;
    return run;
  }

  /** Stops listening and saves state; the firewall stays (fail closed). Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(stopped = 'knock-port stopped; firewall left closed, live grants expire in the kernel'): Promise<void> {
    const { options, maintenance, step1, xdp, step2, sessions, lasting, cluster, running, nft } = this.parts;
    maintenance.stop();
    await maintenance.settled();
    xdp.stop();
    this.trial?.cancel();
    await step1.stop();
    await step2.listener.close();
    await this.control?.close();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
    try {
      await sessions.close();
    } catch (err) {
      options.logger.error(errorFields(err), 'session state could not be saved on stop');
    }
    await lasting.usedCodes.close();
    if (cluster) {
      cluster.sync.stop();
      await cluster.sync.idle();
      await cluster.store.close();
    }
    running.firewall.close?.();
    nft.close?.();
    options.logger.info(stopped);
  }
}
