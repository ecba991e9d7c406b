/** `knock-port check`: validates a config file and prints a summary without secrets. */
import type { Command } from 'commander';
import { exposedKeysWarning } from '../../config/file-exposure.js';
import { ConfigError, type ConfigIssue } from '../../config/load.js';
import { configSummary, summarizeConfig, type ConfigSummary } from '../../config/summary.js';
import type { Config } from '../../config/types.js';
import { interfaceWarnings } from '../../firewall/interface-presence.js';
import { ExitCode } from '../../client/exit-codes.js';
import { ERROR_PREFIX, processTerminal, type Terminal } from '../terminal.js';
import { addConfigOptions, FIREWALL_OVERRIDES, loadConfigFromOptions, type ConfigOptions } from '../options.js';

/**
 * Exit 0 with a summary, or exit 1 with every problem found. Interface names that match nothing
 * on this host are warnings (the interface may come later: ppp, wg), and so is a file that holds
 * keys in clear and every user can read (on stderr). `--json` prints one object instead: the
 * summary and every warning, or the errors; never a path, key or TOTP secret.
 */
export function registerCheck(program: Command, terminal: Terminal = processTerminal()): void {
  addConfigOptions(program.command('check').description('validate a config file and print a summary (no secrets)'), FIREWALL_OVERRIDES)
    .option('--json', 'print one JSON object: {ok, config, summary, warnings} or {ok: false, config, errors}')
    .action((opts: ConfigOptions & { json?: boolean }) => {
      if (opts.json !== true) {
        const config = loadConfigFromOptions(opts);
        terminal.stdout.write(summarizeConfig(config, interfaceWarnings(config)));
        const exposed = exposedKeysWarning(config);
        if (exposed !== undefined) terminal.stderr.write(`${ERROR_PREFIX}warning: ${exposed}\n`);
        return;
      }
      const report = checkReport(opts);
      terminal.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      if (!report.ok) terminal.setExitCode(ExitCode.failed);
    });
}

type CheckReport = { ok: true; config: string; summary: ConfigSummary; warnings: string[] } | { ok: false; config: string; errors: ConfigIssue[] };

/** What `check --json` prints: the summary and every warning, or every problem (messages never quote a secret). */
function checkReport(opts: ConfigOptions): CheckReport {
  let config: Config;
  try {
    config = loadConfigFromOptions(opts);
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, config: err.source, errors: err.issues };
    throw err;
  }
  const exposed = exposedKeysWarning(config);
  const warnings = [...(config.warnings ?? []), ...interfaceWarnings(config), ...(exposed !== undefined ? [exposed] : [])];
  return { ok: true, config: config.source, summary: configSummary(config), warnings };
}
