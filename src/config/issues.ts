/**
 * Config problems located by file, line, column and key path, and ConfigError, which lists every
 * problem at once, in file order, so that the operator fixes them all in one pass.
 */
import { KnockPortError } from '../shared/errors.js';

/** One problem found in a config file, located as precisely as the YAML allows. */
export interface ConfigIssue {
  /** Key path, e.g. `openvpn.access_key_http[1]`; empty for the file as a whole. */
  path: string;
  line?: number;
  column?: number;
  message: string;
  /** The drop-in file the problem is in; absent for the config file itself. */
  file?: string;
}

export type KeyPath = readonly (string | number)[];

/** `openvpn.access_key_http[1]` from `['openvpn', 'access_key_http', 1]`. */
export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? segment : `.${segment}`;
  }
  return text;
}

/** `FILE:LINE:COL: PATH: message`, dropping the parts that are unknown. */
export function formatIssue(source: string, issue: ConfigIssue): string {
  const file = issue.file ?? source;
  const where = issue.line === undefined ? file : `${file}:${issue.line}:${issue.column ?? 1}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

/** Issues in file order (the config file's first, then each drop-in's), so the operator can fix them top to bottom. */
export function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const fileOrder = (issue: ConfigIssue) => issue.file ?? '';
  return [...issues].sort((a, b) => fileOrder(a).localeCompare(fileOrder(b)) || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

/** The config cannot be used; the message lists every problem found, not only the first. */
export class ConfigError extends KnockPortError {
  readonly issues: ConfigIssue[];

  constructor(
    readonly source: string,
    issues: readonly ConfigIssue[],
  ) {
    const sorted = sortIssues(issues);
    const count = sorted.length === 1 ? '1 problem' : `${sorted.length} problems`;
    super(`invalid config ${source} (${count}):\n${sorted.map((issue) => `  ${formatIssue(source, issue)}`).join('\n')}`);
    this.issues = sorted;
  }
}

/** An issue before it is located in the YAML text. */
export interface PathIssue {
  path: KeyPath;
  message: string;
  /** Point at the key itself rather than its value (unknown keys, bad names). */
  atKey?: boolean;
}
