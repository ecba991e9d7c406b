/** `knock-port health`: the daemon's problems and warnings, from every part, in one report. */
import { REPORT_MODE_WARNING } from '../config/policy.js';
import type { Cluster } from './cluster.js';
import type { HealthReport } from '../control/protocol.js';
import type { Trial } from '../control/trial.js';
import type { ProblemMemory } from '../metrics/health-problems.js';
import { describeError } from '../shared/errors.js';
import type { Maintenance } from './maintenance.js';
import type { ReloadHistory } from './reload.js';
import type { RunningConfig } from './running.js';
import type { Step1 } from './step1.js';
import type { Step2 } from './step2.js';
import type { Step1XdpFront } from './xdp-front.js';

export interface HealthParts {
  running: RunningConfig;
  problems: ProblemMemory;
  maintenance: Maintenance;
  step1: Step1;
  xdp: Step1XdpFront;
  step2: Step2;
  cluster?: Cluster;
  reloads: ReloadHistory;
}

/** What `health` reports as problems now, from every part (the metrics count them too). */
export function healthProblems(parts: HealthParts): string[] {
  const { running, step2 } = parts;
  const problems = parts.problems.recent();
  problems.push(...parts.reloads.problems());
  problems.push(...parts.maintenance.interfaces.problems());
  problems.push(...running.firewall.hostFirewall().problems.map((p) => `host firewall: ${p}`));
  problems.push(...parts.step1.problems());
  if (!step2.listener.listening) problems.push('HTTPS server is not listening');
  if (parts.cluster) problems.push(...parts.cluster.sync.problems());
  problems.push(...step2.served.problems());
  return problems;
}

export async function healthReport(parts: HealthParts, trial: Trial | undefined): Promise<HealthReport> {
  const { running, step2 } = parts;
  const sync = parts.cluster?.sync;
  const problems = healthProblems(parts);
  const warnings = step2.served.warnings();
  const gate = await gateHealth(running, warnings);
  const trialHealth = trial?.health();
  const xdp = parts.xdp.health();
  return {
    healthy: problems.length === 0,
    problems,
    ...(warnings.length > 0 ? { warnings } : {}),
    tls: step2.served.health(),
    ...(sync ? { cluster: sync.health() } : {}),
    ...(gate ? { gate } : {}),
    ...(trialHealth ? { trial: trialHealth } : {}),
    ...(xdp ? { xdp } : {}),
  };
}

/** Report mode: what the gate would have dropped, from the kernel; the warning that it protects nothing goes to `warnings`. */
async function gateHealth(running: RunningConfig, warnings: string[]): Promise<HealthReport['gate']> {
  if (running.config.global.gateMode !== 'report') return undefined;
  warnings.push(`gate_mode ${REPORT_MODE_WARNING}`);
  try {
    return { mode: 'report', wouldDrop: await running.firewall.wouldDrop() };
  } catch (err) {
    warnings.push(`report mode: the kernel counters could not be read: ${describeError(err)}`);
    return { mode: 'report', wouldDrop: [] };
  }
}
