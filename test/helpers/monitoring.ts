/**
 * The monitoring kit (packaging/monitoring/): its alert rules and dashboard, the metric names
 * their queries read, and the check that a scrape declares each of them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from './sandbox.js';

export const MONITORING_DIR = join(REPO_ROOT, 'packaging/monitoring');
export const ALERT_RULES = join(MONITORING_DIR, 'knock-port-alerts.yml');
export const ALERT_TESTS = join(MONITORING_DIR, 'knock-port-alerts.test.yml');
export const DASHBOARD = join(MONITORING_DIR, 'knock-port-dashboard.json');

interface RuleFile {
  groups: Array<{ rules: Array<{ alert: string; expr: string; for?: string }> }>;
}

interface DashboardPanel {
  targets?: Array<{ expr: string }>;
  panels?: DashboardPanel[];
}

export function alertRules(): RuleFile {
  return parse(readFileSync(ALERT_RULES, 'utf8')) as RuleFile;
}

/** Every PromQL expression of the alert rules and of the dashboard's panels and variables. */
export function monitoringQueries(): string[] {
  const rules = alertRules().groups.flatMap((group) => group.rules.map((rule) => rule.expr));
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: DashboardPanel[]; templating: { list: Array<{ definition?: string }> } };
  const panels = (list: DashboardPanel[]): string[] => list.flatMap((panel) => [...(panel.targets ?? []).map((t) => t.expr), ...panels(panel.panels ?? [])]);
  const variables = dashboard.templating.list.flatMap((variable) => (variable.definition ? [variable.definition] : []));
  return [...rules, ...panels(dashboard.panels), ...variables];
}

/** The daemon's metric names the queries read (`up` is Prometheus's own), sorted. */
export function queriedMetricNames(queries = monitoringQueries()): string[] {
  const names = queries.flatMap((query) => [...query.matchAll(/\b(?:knockport|process|nodejs)_[a-z0-9_]+\b/g)].map((m) => m[0]));
  return [...new Set(names)].sort();
}

/**
 * The names of `names` that the scrape `text` (Prometheus text format) does not declare: a
 * histogram's `_bucket`, `_sum` and `_count` belong to its declared family.
 */
export function undeclaredIn(text: string, names: readonly string[]): string[] {
  const families = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const declared = (name: string): boolean => {
    if (families.has(name)) return true;
    const family = /^(.*)_(?:bucket|sum|count)$/.exec(name)?.[1];
    return family !== undefined && ['histogram', 'summary'].includes(families.get(family) ?? '');
  };
  return names.filter((name) => !declared(name));
}
