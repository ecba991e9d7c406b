/**
 * The daemon's maintenance tick, every few seconds: self-heal the ruleset (VyOS commits flush
 * chains, host firewall reloads), count capture drops, look at the configured interfaces.
 */
import { InterfaceWatch } from '../firewall/interface-presence.js';
import type { ConntrackFlowCloser } from '../firewall/conntrack.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import type { Granter } from '../sessions/grants.js';
import type { SessionStore } from '../sessions/store.js';
import type { CaptureKind } from '../shared/kinds.js';
import type { Logger } from '../shared/log.js';
import type { RunningConfig } from './running.js';
import { FirewallSelfHeal } from './self-heal.js';
import type { Step1 } from './step1.js';
import type { Step1XdpFront } from './xdp-front.js';

/** How often the daemon checks its ruleset is still there and reads capture drop counters. */
const MAINTENANCE_INTERVAL_MS = 5_000;

export interface MaintenanceParts {
  running: RunningConfig;
  captureKind: CaptureKind;
  granter: Granter;
  sessions: SessionStore;
  /** Ends the flows a gap in the ruleset let in without a grant. */
  flows: ConntrackFlowCloser;
  step1: Step1;
  xdp: Step1XdpFront;
  problems: ProblemMemory;
  logger: Logger;
}

export class Maintenance {
  /** Configured interface names that match no interface right now (a typo fails open). */
  readonly interfaces: InterfaceWatch;
  private readonly selfHeal: FirewallSelfHeal;
  private timer: NodeJS.Timeout | undefined;
  /** The tick in flight, awaited before a trial removes the gate (a self-heal would put it back). */
  private ticking: Promise<void> | undefined;

  constructor(private readonly parts: MaintenanceParts) {
    const { running, captureKind, granter, sessions, flows, problems, logger } = parts;
    this.interfaces = new InterfaceWatch(logger);
    this.interfaces.refresh(running.config);
    this.selfHeal = new FirewallSelfHeal({
      firewall: () => running.firewall,
      capture: captureKind,
      granter,
      apps: () => running.config.apps,
      problems,
      logger,
      // A re-install also ends the flows the gap let in without a grant.
      flows: { ender: flows, scope: running.flowScope, sessions },
    });
  }

  start(): void {
    this.timer = setInterval(() => {
      this.ticking = this.tick();
    }, MAINTENANCE_INTERVAL_MS);
    this.timer.unref();
  }

  /** No tick from now on (one in flight goes on: see settled). */
  stop(): void {
    clearInterval(this.timer);
  }

  /** Resolves once the tick in flight, if any, is over. */
  async settled(): Promise<void> {
    await this.ticking?.catch(() => undefined);
  }

  private async tick(): Promise<void> {
    await this.selfHeal.run();
    this.parts.step1.copyDrops();
    this.interfaces.refresh(this.parts.running.config);
    await this.parts.xdp.refresh();
  }
}
