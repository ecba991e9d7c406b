/** `knock-port check`'s work: the config loaded and checked, then a summary or every problem. */
import { exposedKeysWarning } from '../../config/file-exposure.js';
import { ConfigError, type ConfigIssue } from '../../config/load.js';
import { configSummary, summarizeConfig, type ConfigSummary } from '../../config/summary.js';
import type { Config } from '../../config/types.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { sshLockoutWarning } from '../../config/ssh-session.js';
import { ExitCode } from '../../client/exit-codes.js';
import { ERROR_PREFIX, type Terminal } from '../terminal.js';
import { TlsFileError, type CheckedTls } from '../../step2/tls-files.js';
import { checkedTlsIfNamed, tlsSummary, writeTlsSummary, type TlsSummary } from '../tls-options.js';
import type { ConfigOptions, TlsPathOptions } from '../options.js';
import { loadConfigFromOptions } from '../resolve-options.js';
import { verifyXdpProgram } from '../../daemon/xdp-front.js';

export function runCheck(opts: CheckOptions, terminal: Terminal): void {
  if (opts.json !== true) {
    const config = loadConfigFromOptions(opts);
    const tls = checkedTlsIfNamed(config, opts);
    const ssh = sshLockoutWarning(config, process.env.SSH_CONNECTION);
    const xdp = xdpCheck(config);
    terminal.stdout.write(
      summarizeConfig(config, [
        ...hostInterfaceWarnings(config, opts),
        ...(ssh !== undefined ? [ssh] : []),
        ...(xdp?.warning !== undefined ? [xdp.warning] : []),
      ]),
    );
    if (xdp?.program === 'verified') terminal.stdout.write(`${XDP_VERIFIED}\n`);
    if (tls) writeTlsSummary(terminal, tls);
    const exposed = exposedKeysWarning(config);
    if (exposed !== undefined) terminal.stderr.write(`${ERROR_PREFIX}warning: ${exposed}\n`);
    return;
  }
  const { report, exitCode } = checkReport(opts);
  terminal.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (!report.ok) terminal.setExitCode(exitCode);
}

export interface CheckOptions extends ConfigOptions, TlsPathOptions {
  json?: boolean;
  /** False with --no-interface-check. */
  interfaceCheck: boolean;
}

/** The presence check against this host's interfaces (throws on a missing exact name), unless turned off. */
function hostInterfaceWarnings(config: Config, opts: CheckOptions): string[] {
  return opts.interfaceCheck ? requireInterfaces(config) : [];
}

/** The XDP program as check found it in this kernel (`step1_xdp` on only). */
interface XdpCheck {
  program: 'verified' | 'unavailable';
  warning?: string;
}

const XDP_VERIFIED = 'step-1 XDP: the program loads in this kernel and answers a test SYN as the daemon does (check attached it nowhere)';

function xdpCheck(config: Config): XdpCheck | undefined {
  const mode = config.global.step1Xdp;
  if (mode === 'off') return undefined;
  const reason = verifyXdpProgram(config);
  if (reason === undefined) return { program: 'verified' };
  const consequence =
    mode === 'auto' ? 'run falls back to the kernel rules for step 1' : 'run serves step 1 with the kernel rules alone and reports it in health';
  return { program: 'unavailable', warning: `step1_xdp ${mode}: the XDP program cannot run here (${reason}); ${consequence}` };
}

type CheckReport =
  | { ok: true; config: string; summary: ConfigSummary; warnings: string[]; tls?: TlsSummary; xdp?: XdpCheck['program'] }
  | { ok: false; config: string; errors: ConfigIssue[] };

/** What `check --json` prints: the summary and every warning, or every problem (messages never quote a secret). */
function checkReport(opts: CheckOptions): { report: CheckReport; exitCode: number } {
  let config: Config;
  let interfaceWarnings: string[];
  let tls: CheckedTls | undefined;
  try {
    config = loadConfigFromOptions(opts);
    interfaceWarnings = hostInterfaceWarnings(config, opts);
    tls = checkedTlsIfNamed(config, opts);
  } catch (err) {
    if (err instanceof ConfigError) return { report: { ok: false, config: err.source, errors: err.issues }, exitCode: ExitCode.failed };
    if (err instanceof TlsFileError)
      return { report: { ok: false, config: opts.config, errors: [{ path: '', message: err.message }] }, exitCode: err.exitCode };
    throw err;
  }
  const exposed = exposedKeysWarning(config);
  const ssh = sshLockoutWarning(config, process.env.SSH_CONNECTION);
  const xdp = xdpCheck(config);
  const warnings = [
    ...(config.warnings ?? []),
    ...interfaceWarnings,
    ...(exposed !== undefined ? [exposed] : []),
    ...(tls?.warnings ?? []),
    ...(ssh !== undefined ? [ssh] : []),
    ...(xdp?.warning !== undefined ? [xdp.warning] : []),
  ];
  const summary = {
    ok: true as const,
    config: config.source,
    summary: configSummary(config),
    warnings,
    ...(tls ? { tls: tlsSummary(tls) } : {}),
    ...(xdp ? { xdp: xdp.program } : {}),
  };
  return { report: summary, exitCode: ExitCode.ok };
}
