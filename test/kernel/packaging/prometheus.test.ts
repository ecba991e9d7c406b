/**
 * The monitoring kit with a real Prometheus (Debian's binary), run in the gateway namespace with
 * the shipped alert rules: it scrapes the real daemon, and the "health problem" alert fires once
 * the gate matches no interface (the interface the config names goes away). The rules' `for`
 * durations are cut to 0 in the copy Prometheus reads: their timing is promtool's to test
 * (test/unit/packaging/monitoring.test.ts), their expressions against real scrapes are this
 * test's. Every metric the rules and the dashboard query (but the cluster's, which a lone
 * gateway does not register) is in the real daemon's scrape.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALERT_RULES, queriedMetricNames, undeclaredIn } from '../../helpers/monitoring.js';
import { selfSigned } from '../../helpers/tls-certs.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { CLI, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('packaging/prometheus', kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'prometheus']));

const METRICS = '127.0.0.1:9464';
const PROMETHEUS = '127.0.0.1:9090';
/** A link the gate is written for (`kpmon+`), which the test takes away. */
const LINK = 'kpmon0';

interface Alert {
  labels: { alertname: string };
  state: 'pending' | 'firing';
}

describe.skipIf(skip)('Prometheus with the shipped alert rules, scraping the daemon', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let prometheus: ChildProcess | undefined;
  const prometheusLog: string[] = [];

  const get = (url: string): string => {
    const result = sandbox.gw.tryExec('curl', ['-sS', '-m', '2', url]);
    return result.ok ? result.out : '';
  };
  const api = <T>(path: string): T | undefined => {
    const text = get(`http://${PROMETHEUS}${path}`);
    return text ? ((JSON.parse(text) as { data: T }).data ?? undefined) : undefined;
  };
  const alerts = (): Alert[] => api<{ alerts: Alert[] }>('/api/v1/alerts')?.alerts ?? [];
  const firing = (name: string) => alerts().some((alert) => alert.labels.alertname === name && alert.state === 'firing');
  /** The value Prometheus has for an instant query of one series, or undefined. */
  const query = (expr: string): string | undefined =>
    api<{ result: Array<{ value: [number, string] }> }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)?.result[0]?.value[1];

  beforeAll(async () => {
    sandbox = createSandbox('pmx');
    sandbox.gw.ip('link', 'add', LINK, 'type', 'veth', 'peer', 'name', 'pmxpeer0');
    sandbox.gw.ip('link', 'set', LINK, 'up');
    const configPath = writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: '/knock-pmx-7d1e', https_post_path: '/step2-pmx-2b9c', interface_ext: 'kpmon+', interface_int: IF.gwLan, capture: 'nflog', metrics_listen: METRICS })}svc:
  port: 8080
  access_key_http: [pmx-http-key-0123456789]
  access_key_https: [pmx-https-key-0123456789]
  destination: local
  duration: 30
  step2_https_duration: 20
`,
    );
    // A certificate far from its notAfter: the expiry alerts stay quiet (the sandbox's lasts days).
    const tls = selfSigned(sandbox.dir, 'pmx', 90);
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', tls.cert, '--key', tls.key]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);

    const dir = join(sandbox.dir, 'prometheus');
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'rules.yml'), readFileSync(ALERT_RULES, 'utf8').replace(/^(\s+)for: \S+$/gm, '$1for: 0s'));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: knock-port
    static_configs:
      - targets: ['${METRICS}']
`,
    );
    prometheus = sandbox.gw.spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${PROMETHEUS}`,
    ]);
    prometheus.stderr?.on('data', (chunk: Buffer) => prometheusLog.push(chunk.toString()));
  });

  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('scrapes a healthy daemon, then fires the health-problem alert once the gate matches no interface', async () => {
    const scraped = await waitFor(() => query('knockport_healthy{job="knock-port"}') === '1', scaled(20_000), 200);
    expect(scraped, `Prometheus never scraped a healthy daemon:\n${prometheusLog.join('').slice(-2000)}\n${daemon.output.slice(-10).join('\n')}`).toBe(true);
    expect(query('up{job="knock-port"}')).toBe('1');
    expect(alerts()).toEqual([]);

    sandbox.gw.ip('link', 'del', LINK);
    expect(await waitFor(() => firing('KnockPortHealthProblem'), scaled(20_000), 200), JSON.stringify(alerts())).toBe(true);
    expect(query('knockport_health_problems')).toBe('1');
    expect(alerts().map((alert) => alert.labels.alertname)).toEqual(['KnockPortHealthProblem']);
    // What the alert sends the operator to: `health` names the problem.
    const health = sandbox.gw.tryExec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')]);
    expect(health.ok).toBe(false);
    expect(health.out + health.err).toContain("gate matches no interface: interface_ext 'kpmon*'");
  });

  it('every metric the rules and the dashboard query, but the cluster ones, is in the real scrape', () => {
    const names = queriedMetricNames().filter((name) => !name.startsWith('knockport_cluster_'));
    expect(undeclaredIn(get(`http://${METRICS}/metrics`), names)).toEqual([]);
  });
});
