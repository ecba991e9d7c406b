/** `knock-port check`: validates a config file and prints a summary without secrets. */
import type { Command } from 'commander';
import { exposedKeysWarning } from '../../config/file-exposure.js';
import { ConfigError, type ConfigIssue } from '../../config/load.js';
import { configSummary, summarizeConfig, type ConfigSummary } from '../../config/summary.js';
import type { Config } from '../../config/types.js';
import { requireInterfaces } from '../../firewall/interface-presence.js';
import { sshLockoutWarning } from '../../config/ssh-session.js';
import { ExitCode } from '../../client/exit-codes.js';
import { ERROR_PREFIX, processTerminal, type Terminal } from '../terminal.js';
import { TlsFileError, type CheckedTls } from '../../step2/tls-files.js';
import { addTlsOptions, checkedTlsIfNamed, tlsSummary, writeTlsSummary, type TlsPathOptions, type TlsSummary } from '../tls-options.js';
import { addConfigOptions, FIREWALL_OVERRIDES, loadConfigFromOptions, type ConfigOptions } from '../options.js';
import { addExamples } from '../help.js';
import { verifyXdpProgram } from '../../daemon/xdp-front.js';

/**
 * Exit 0 with a summary, or exit 1 with every problem found. An exact interface name that
 * matches no interface of this host is an error, as in `run`; a wildcard or optional one
 * (`ppp+`, `wg0?`: the interface may come later) is a warning, and so is a file that holds
 * keys in clear and every user can read (on stderr). With `step1_xdp` on, the XDP program is
 * loaded into this kernel and run once on a test SYN, never attached: a program this kernel or
 * this user cannot run is a warning (run would fall back to the kernel rules). `--json` prints
 * one object instead: the summary and every warning, or the errors; never a path, key or TOTP secret.
 */
export function registerCheck(program: Command, terminal: Terminal = processTerminal()): void {
  const check = addTlsOptions(
    addConfigOptions(program.command('check').description('validate a config file and print a summary (no secrets)'), FIREWALL_OVERRIDES),
    'checked as run checks it',
  )
    .option('--json', 'print one JSON object: {ok, config, summary, warnings, xdp} or {ok: false, config, errors}')
    .option('--no-interface-check', "do not compare the interface names with this host's interfaces (a config written for another host; run still does)");
  addExamples(check, [
    { command: 'knock-port check -c /etc/knock-port/config.yaml', what: 'check the config (and the TLS files it names) before a restart' },
    { command: 'knock-port check --json --no-interface-check -c gw-b.yaml', what: 'check a config written for another host, for a script' },
  ]).action((opts: CheckOptions) => {
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
  });
}

interface CheckOptions extends ConfigOptions, TlsPathOptions {
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
