/**
 * The firewall half of the daemon's maintenance tick: re-installs the ruleset when it went
 * missing (VyOS commits flush chains), puts the live grants back through the Granter, and says
 * what the host's own firewall still does to granted connections.
 */
import type { AppConfig } from '../config/types.js';
import type { HostFirewallReport } from '../firewall/host-firewall.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import { describeError } from '../shared/errors.js';
import type { CaptureKind } from '../shared/kinds.js';
import type { Logger } from '../shared/log.js';
import type { Granter } from './grants.js';

/** The health problem while the last self-heal failed. */
export const SELF_HEAL_FAILED = 'firewall self-heal failed';

export interface SelfHealParts {
  /** The running backend (a reload replaces it). */
  firewall: () => FirewallBackend;
  capture: CaptureKind;
  granter: Pick<Granter, 'reapplyLive'>;
  /** The running config's apps. */
  apps: () => readonly AppConfig[];
  problems: Pick<ProblemMemory, 'note' | 'clear'>;
  logger: Logger;
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
      logger.error({ err: describeError(err) }, SELF_HEAL_FAILED);
    }
  }

  private async reinstallIfMissing(): Promise<void> {
    const { firewall, capture, granter, apps, logger } = this.parts;
    const backend = firewall();
    if (!backend.ensureInstalled || !(await backend.ensureInstalled(capture))) return;
    logger.warn({ firewall: firewall().type }, 'firewall ruleset was missing and has been re-installed; restoring live grants');
    await granter.reapplyLive(apps());
  }
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
