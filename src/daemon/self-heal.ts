/**
 * The firewall half of the daemon's maintenance tick: re-installs the ruleset when it went
 * missing (VyOS commits flush chains, a host firewall reload), puts the live grants back through
 * the Granter, ends the flows that the gap let in without a grant, and says what the host's own
 * firewall still does to granted connections. Also the firewall's install at start, which keeps
 * the flows already established when knock-port is installed for the first time.
 */
import type { AppConfig } from '../config/types.js';
import { revokedFlowTargets, type FlowAdopter, type FlowScope, type FlowTarget, type MarkedFlowScope, type UngrantedFlowEnder } from '../firewall/conntrack.js';
import type { HostFirewallReport } from '../firewall/host-firewall.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import { errorFields } from '../shared/errors.js';
import type { CaptureKind } from '../shared/kinds.js';
import type { Logger } from '../shared/log.js';
import type { Granter } from '../sessions/grants.js';
import type { SessionRecord } from '../sessions/record.js';
import type { SessionStore } from '../sessions/store.js';

/** The health problem while the last self-heal failed. */
export const SELF_HEAL_FAILED = 'firewall self-heal failed';
/** The health problem when the flows a firewall gap let in could not all be ended. */
export const GAP_FLOWS_NOT_ENDED = 'flows opened while the firewall was missing could not all be ended (see the error log)';

/** What the self-heal needs to end the flows opened without a grant while the ruleset was missing. */
export interface SelfHealFlows {
  ender: UngrantedFlowEnder;
  /** The running config's protected ports and grant mark. */
  scope: () => MarkedFlowScope;
  /** The live grants. */
  sessions: Pick<SessionStore, 'listOf'>;
}

export interface SelfHealParts {
  /** The running backend (a reload replaces it). */
  firewall: () => FirewallBackend;
  capture: CaptureKind;
  granter: Pick<Granter, 'reapplyLive'>;
  /** The running config's apps. */
  apps: () => readonly AppConfig[];
  problems: Pick<ProblemMemory, 'note' | 'clear'>;
  logger: Logger;
  /** Without it a re-install leaves the flows the gap let in to the gate. */
  flows?: SelfHealFlows;
}

export class FirewallSelfHeal {
  /** Host firewall problems already logged (each is logged when it appears, reported by health while it lasts). */
  private reportedHostProblems = new Set<string>();

  constructor(private readonly parts: SelfHealParts) {}

  /** One tick; never rejects (a failure is logged and reported by health until a tick succeeds). */
  async run(): Promise<void> {
    const { firewall, problems, logger } = this.parts;
    try {
      await this.reinstallIfMissing();
      logHostFirewall(logger, firewall().hostFirewall(), 'self-heal', this.reportedHostProblems);
      this.reportedHostProblems = new Set(firewall().hostFirewall().problems);
      problems.clear(SELF_HEAL_FAILED);
    } catch (err) {
      problems.note(SELF_HEAL_FAILED);
      logger.error(errorFields(err), SELF_HEAL_FAILED);
    }
  }

  private async reinstallIfMissing(): Promise<void> {
    const { firewall, capture, granter, apps, logger } = this.parts;
    const backend = firewall();
    if (!backend.ensureInstalled || !(await backend.ensureInstalled(capture))) return;
    logger.warn({ firewall: firewall().type }, 'firewall ruleset was missing and has been re-installed; restoring live grants');
    await granter.reapplyLive(apps());
    await this.endGapFlows();
  }

  /**
   * While the ruleset was missing, anyone could connect to a protected port (unless the host's
   * own firewall stopped them): those flows carry no grant mark. Ended here unless their source
   * holds a grant now; a flow that was granted and outlived its grant keeps its mark and stays.
   */
  private async endGapFlows(): Promise<void> {
    const { flows, problems, logger } = this.parts;
    if (!flows) return;
    const scope = flows.scope();
    try {
      const ended = await flows.ender.endUngranted(revokedFlowTargets(scope), scope.grantMark, (source, target) =>
        holdsGrantFor(flows.sessions.listOf(source), target, scope),
      );
      logger.info({ ended }, 'flows opened without a grant while the firewall ruleset was missing: ended');
    } catch (err) {
      problems.note(GAP_FLOWS_NOT_ENDED);
      logger.error(errorFields(err), GAP_FLOWS_NOT_ENDED);
    }
  }
}

/**
 * Whether an address's live records admit it to a protected port: to HTTPS, a step-2 window or
 * any service grant (step 2 answers a granted client too); to an app's port, a service grant for
 * an app on that port and protocol.
 */
export function holdsGrantFor(records: readonly SessionRecord[], target: FlowTarget, scope: FlowScope): boolean {
  if (target.protocol === 'tcp' && target.port === scope.step2Port) return records.length > 0;
  return records.some(
    (record) => record.step === 'service' && scope.apps.some((a) => a.name === record.app && a.protocol === target.protocol && a.port === target.port),
  );
}

/** How the daemon's start installs the firewall, and adopts flows on a first install. */
export interface StartInstall {
  adopter: FlowAdopter;
  scope: MarkedFlowScope;
  logger: Logger;
}

/**
 * Installs the ruleset at start. On a first install (none of knock-port's rules there yet; not a
 * restart, not a self-heal) the flows already established to protected ports get the grant mark
 * first, so the gate keeps them (the operator's own SSH session); new connections need a grant.
 * A failure to mark is logged and the install goes on.
 */
export async function installAtStart(firewall: FirewallBackend, capture: CaptureKind, { adopter, scope, logger }: StartInstall): Promise<void> {
  const firstInstall = firewall.isInstalled !== undefined && !(await firewall.isInstalled());
  if (firstInstall) {
    try {
      const kept = await adopter.adopt(revokedFlowTargets(scope), scope.grantMark);
      logger.info({ kept }, 'first install: established flows to protected ports kept (they carry the grant mark now)');
    } catch (err) {
      logger.warn(errorFields(err), 'first install: established flows to protected ports could not all be kept; they may be cut');
    }
  }
  await firewall.install(capture);
}

/**
 * Says what knock-port did in the host's own firewall: the accept rule it put at the top of
 * host chains that could drop, and what still drops granted connections (`already`: problems
 * logged before, not repeated every tick).
 */
export function logHostFirewall(logger: Logger, report: HostFirewallReport, phase: 'start' | 'self-heal', already = new Set<string>()): void {
  for (const chain of report.inserted) {
    const message =
      phase === 'start'
        ? 'host firewall: accept rule for granted connections put at the top of'
        : 'host firewall: accept rule for granted connections was missing (host ruleset reloaded?) and is back at the top of';
    logger[phase === 'start' ? 'info' : 'warn'](`${message} ${chain}`);
  }
  for (const problem of report.problems) if (!already.has(problem)) logger.warn(`host firewall: ${problem}`);
}
