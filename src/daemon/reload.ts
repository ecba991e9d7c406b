/**
 * SIGHUP: the config read again and switched to, or the running one kept. What can fail is
 * prepared next to what runs now, before anything switches: a capture on a new queue number or
 * log group, an HTTPS listener on a new address, then the firewall (one transaction). A failure
 * closes what was opened and leaves the running config, firewall, capture and listener as they
 * were. Live grants and everything in LastingState are kept.
 */
import { REPORT_MODE_WARNING } from '../config/policy.js';
import type { AppConfig, Config } from '../config/types.js';
import { createFirewall } from '../firewall/index.js';
import type { NftRunner } from '../firewall/nft-runner.js';
import type { FirewallBackend } from '../firewall/types.js';
import type { Granter } from '../sessions/grants.js';
import { errorFields } from '../shared/errors.js';
import type { CaptureKind } from '../shared/kinds.js';
import type { Logger } from '../shared/log.js';
import type { ReloadOutcome } from '../metrics/status-metrics.js';
import type { PreparedSwitch } from '../step2/listener.js';
import { applyReloadedLimits, type LastingState } from './lasting-state.js';
import type { Maintenance } from './maintenance.js';
import type { DaemonOptions } from './options.js';
import type { RunningConfig } from './running.js';
import type { Step1 } from './step1.js';
import type { Step1XdpFront } from './xdp-front.js';
import type { Step2 } from './step2.js';

export interface ReloadParts {
  options: Pick<DaemonOptions, 'reloadConfig' | 'firewall'>;
  running: RunningConfig;
  nft: NftRunner;
  captureKind: CaptureKind;
  lasting: LastingState;
  granter: Granter;
  step1: Step1;
  xdp: Step1XdpFront;
  step2: Step2;
  maintenance: Maintenance;
  logger: Logger;
}

/**
 * The last config reload's outcome and time (the start's, before any reload), for the metrics;
 * a failed one stays a `health` problem until a reload succeeds.
 */
export class ReloadHistory {
  private last: { at: Date; outcome: ReloadOutcome };

  constructor(startedAt = new Date()) {
    this.last = { at: startedAt, outcome: 'applied' };
  }

  record(outcome: ReloadOutcome, at = new Date()): void {
    this.last = { at, outcome };
  }

  lastReload(): { at: Date; outcome: ReloadOutcome } {
    return this.last;
  }

  problems(): string[] {
    if (this.last.outcome === 'applied') return [];
    return [
      `the config reload at ${this.last.at.toISOString()} failed: still running on the previous config; the log says why (knock-port check -c FILE too), fix it and reload`,
    ];
  }
}

/** A reload switched to: the grants it voided (apps or users the new config dropped) and revoked. */
export interface AppliedReload {
  voided: number;
}

/** Switches to the config read again; undefined (logged) when the daemon keeps running on the previous one. */
export async function applyReload(parts: ReloadParts): Promise<AppliedReload | undefined> {
  const { running, logger } = parts;
  const next = readNextConfig(parts);
  if (!next) return undefined;
  const previous = running.config;
  const g = next.global;
  const before = previous.global;
  const moveStep2 = g.step2Port !== before.step2Port || g.step2ListenAddress !== before.step2ListenAddress || g.ipv6 !== before.ipv6;
  let capture: PreparedSwitch | undefined;
  let listenerMove: PreparedSwitch | undefined;
  let firewall: FirewallBackend;
  let stage = 'opening the step-1 capture';
  try {
    // New queues (log groups) get their workers next to the running ones; the old stop only once all is in place.
    capture = await parts.step1.prepare(next);
    stage = 'opening the HTTPS listener';
    if (moveStep2) listenerMove = await parts.step2.listener.prepareMove(g, before);
    stage = 'installing the firewall';
    firewall = createFirewall(next, { ...parts.options.firewall, nft: parts.nft });
    await firewall.install(parts.captureKind);
  } catch (err) {
    await capture?.cancel();
    await listenerMove?.cancel();
    logger.error(errorFields(err), `config reload failed while ${stage}; still running on the previous config`);
    return undefined;
  }
  // Grants go to the freshly installed backend from now on; the replaced one is closed.
  running.swap(next, firewall).close?.();
  const gateMode = (config: Config) => config.global.gateMode ?? 'enforce';
  if (gateMode(next) !== gateMode(previous)) {
    logger.warn(gateMode(next) === 'report' ? `gate_mode changed to ${REPORT_MODE_WARNING}` : 'gate_mode changed to enforce: the gate drops again');
  }
  applyReloadedLimits(parts.lasting, next.global);
  parts.step1.reconfigure(next);
  await parts.xdp.reconfigure(next);
  parts.maintenance.interfaces.refresh(next);
  await capture?.apply();
  await listenerMove?.apply();
  // Grants of apps and users the new config dropped end now, with their flows.
  const voided = await parts.granter.revokeVoided(previous.apps, next.apps);
  logger.info({ apps: next.apps.map((a: AppConfig) => a.name) }, 'config reloaded');
  return { voided };
}

/** The config to reload to, or undefined (logged) when it cannot be read or needs a restart. */
function readNextConfig(parts: ReloadParts): Config | undefined {
  const { running, logger } = parts;
  let next: Config;
  try {
    next = parts.options.reloadConfig();
  } catch (err) {
    logger.error(errorFields(err), 'config reload failed; still running on the previous config');
    return undefined;
  }
  const current = running.config.global;
  if (next.global.firewallType !== current.firewallType || next.global.tableName !== current.tableName) {
    logger.error('config reload refused: firewall_type and table_name changes need a restart (and `knock-port uninstall` of the old rules)');
    return undefined;
  }
  if (clusterSection(next) !== clusterSection(running.config)) {
    logger.warn('global.cluster changed: cluster changes take effect at the next restart; the rest of the config is reloaded');
  }
  if (metricsSection(next) !== metricsSection(running.config)) {
    logger.warn('the metrics endpoint settings (metrics_*) changed: they take effect at the next restart; the rest of the config is reloaded');
  }
  return next;
}

/** `global.cluster` as a comparable text (the key as a digest-free hex: it never leaves this process). */
function clusterSection(config: Config): string {
  const cluster = config.global.cluster;
  return cluster ? JSON.stringify({ ...cluster, key: cluster.key.toString('hex') }) : '';
}

/** `metrics_listen` and what protects it, as a comparable text (the token's digest never leaves this process). */
function metricsSection(config: Config): string {
  const { metricsListen, metricsAuth } = config.global;
  return JSON.stringify({ metricsListen, tls: metricsAuth?.tls, token: metricsAuth?.tokenDigest?.toString('hex') });
}
