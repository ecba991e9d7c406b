/**
 * Try before you trust, on nftables + NFLOG and iptables-nft + NFQUEUE (report mode on
 * iptables-legacy + NFLOG too), with the real daemon:
 *
 * - `run --trial SECONDS` installs the gate and, with no `knock-port confirm` in time, removes it
 *   again and exits 12: a protected port that was dropped answers from the client with no knock,
 *   and knock-port's rules are gone. After `confirm` the gate stays past the trial's end, and a
 *   second `confirm` is refused (no trial waits).
 * - `gate_mode: report` drops nothing at the apps' ports (TCP and UDP reachable with no knock),
 *   counts exactly the packets it would have dropped (health and the metrics, per port), not
 *   those of a granted source, and step 1 and step 2 still grant.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { execIn, startServices, tcpProbe, udpEchoes } from '../../helpers/scenario.js';
import { ADDR, CLI, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';
import { callDaemon } from '../../../src/control/client.js';
import type { HealthReport } from '../../../src/control/protocol.js';

const skip = announceSkip(
  'daemon/trial-and-report',
  kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'ipset', 'iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-restore', 'ip6tables-legacy-restore']),
);
const run = promisify(execFile);

const STEP1_PATH = '/knock-trial-8c41e2';
const STEP2_PATH = '/step2-trial-2f7a90';
const KEYS = { tcp: ['trial-tcp-http-0123456', 'trial-tcp-https-0123456'], udp: ['trial-udp-http-0123456', 'trial-udp-https-0123456'] };
const PROBE_MS = scaled(800);
const METRICS_PORT = 9477;
/** Long enough to probe (or confirm, with a CLI that starts slowly on a busy machine) before it ends. */
const TRIAL_SECONDS = 6;
/** Datagrams sent to the UDP app in one burst: the would-drop count must rise by exactly this. */
const BURST = 7;

/** `trial`: the trial tests run on this row too (iptables-legacy differs from iptables-nft only in its rules: report mode). */
const BACKENDS = [
  { name: 'nftables + NFLOG', prefix: 'trn', settings: { firewall_type: 'nftables', capture: 'nflog' }, args: [] as string[], trial: true },
  {
    name: 'iptables-nft + NFQUEUE',
    prefix: 'tri',
    settings: { firewall_type: 'iptables', capture: 'nfqueue' },
    args: ['--iptables-variant', 'nft'],
    trial: true,
  },
  {
    name: 'iptables-legacy + NFLOG',
    prefix: 'trl',
    settings: { firewall_type: 'iptables', capture: 'nflog' },
    args: ['--iptables-variant', 'legacy'],
    trial: false,
  },
];

function configYaml(sandbox: Sandbox, settings: Record<string, string | number>): string {
  const app = (name: string, port: number, protocol: 'tcp' | 'udp') => `${name}:
  port: ${port}
  protocol: ${protocol}
  access_key_http: [${KEYS[protocol][0]}]
  access_key_https: [${KEYS[protocol][1]}]
  duration: 120
  step2_https_duration: 30
`;
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, http_port: 80, https_port: 443, ...settings })}${app('tcpsvc', 8080, 'tcp')}${app('udpsvc', 1194, 'udp')}`;
}

const socketOf = (sandbox: Sandbox): string => `${sandbox.dir}/control.sock`;

/** A `knock-port` client command against the daemon's control socket, as an operator runs it. */
async function cli(sandbox: Sandbox, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args, '--socket', socketOf(sandbox)], { encoding: 'utf8', timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** The daemon's health report, asked in-process over the control socket (what `health --json` prints). */
function health(sandbox: Sandbox): Promise<HealthReport> {
  return callDaemon(socketOf(sandbox), { cmd: 'health' }, 'health');
}

/** Report mode's count for one app port, from health. */
async function wouldDrop(sandbox: Sandbox, protocol: 'tcp' | 'udp', port: number): Promise<number> {
  const gate = (await health(sandbox)).gate;
  if (!gate) throw new Error('health shows no gate: not in report mode?');
  return gate.wouldDrop.find((count) => count.protocol === protocol && count.port === port)?.packets ?? 0;
}

/** Sends `count` datagrams from `from` to the UDP app from one socket, then waits for the echoes to settle. */
async function sendDatagrams(sandbox: Sandbox, from: string, count: number): Promise<void> {
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    s.bind(0, process.argv[1], () => {
      let sent = 0;
      const next = () => (sent++ < ${count} ? s.send('ping', 1194, '${ADDR.gwWan4}', next) : setTimeout(() => process.exit(0), 300));
      next();
    });`;
  const r = await execIn(sandbox.client, process.execPath, ['-e', script, from]);
  if (!r.ok) throw new Error(`datagrams not sent: ${r.err}`);
}

/** knock-port's rules in the gateway: the nft table, or the iptables chains of both families. */
function gateInstalled(sandbox: Sandbox, firewall: string): boolean {
  if (firewall === 'nftables') return sandbox.gw.tryExec('nft', ['list', 'table', 'inet', 'knockport']).ok;
  const saved = sandbox.gw.exec('iptables-nft-save', []) + sandbox.gw.exec('ip6tables-nft-save', []);
  return saved.includes('KNOCKPORT');
}

const ready = async (daemon: Daemon): Promise<void> => {
  if (!(await daemon.waitForLog(/knock-port ready/, scaled(20_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
};

describe.skipIf(skip).each(BACKENDS)('trial and report mode: $name', (backend) => {
  let sandbox: Sandbox;
  let config: string;
  let daemon: Daemon | undefined;
  const start = async (extra: string[]): Promise<Daemon> => {
    // A daemon a failed test left running would hold the control socket.
    await daemon?.stop('SIGKILL');
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, ...backend.args, ...extra]);
    await ready(daemon);
    return daemon;
  };

  beforeAll(async () => {
    sandbox = createSandbox(backend.prefix);
    config = writeFile(sandbox, 'config.yaml', configYaml(sandbox, backend.settings));
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' }, udp: [1194] });
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  if (backend.trial) registerTrialTests();

  function registerTrialTests(): void {
    it('--trial removes the gate when nobody confirms: exit 12, the dropped port answers with no knock, the rules are gone', async () => {
      const trial = await start(['--trial', String(TRIAL_SECONDS)]);
      expect(await tcpProbe(sandbox.client, ADDR.client4, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'timeout' });

      // The removal forks the firewall tools once per jump and chain (about a hundred with iptables): slow on a loaded machine.
      const exited = await waitFor(() => trial.proc.exitCode !== null, scaled(60_000));
      expect(exited, trial.output.slice(-8).join('\n')).toBe(true);
      expect(trial.proc.exitCode).toBe(12);
      expect(trial.output.some((line) => /trial not confirmed in time/.test(line) && /"level":50/.test(line))).toBe(true);
      expect(gateInstalled(sandbox, backend.settings.firewall_type)).toBe(false);
      expect(await tcpProbe(sandbox.client, ADDR.client4, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'open', banner: 'hello' });
      expect(await udpEchoes(sandbox.client, ADDR.client4, ADDR.gwWan4, 1194, PROBE_MS)).toBe(true);
    });

    it('confirm keeps the gate past the end of the trial; a second confirm is refused', async () => {
      const trial = await start(['--trial', String(TRIAL_SECONDS)]);
      // The clock started just before the ready line.
      const pastTheEnd = Date.now() + TRIAL_SECONDS * 1000 + 1_000;
      const during = await health(sandbox);
      expect(during.trial?.seconds).toBe(TRIAL_SECONDS);
      expect(during.trial?.secondsLeft).toBeGreaterThan(0);
      // The confirm request `knock-port confirm` sends, in-process: a CLI starting on a busy machine
      // can take longer than the trial (its output is the unit tests'); the CLI then gets the refusal.
      const confirmed = await callDaemon(socketOf(sandbox), { cmd: 'confirm' }, 'confirmed');
      expect(confirmed.secondsLeft).toBeGreaterThan(0);
      const again = await cli(sandbox, ['confirm']);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/^knock-port: this daemon is not in a trial/);
      expect((await health(sandbox)).trial).toBeUndefined();

      // Past the trial's end: still running, still dropping.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, pastTheEnd - Date.now())));
      expect(trial.proc.exitCode).toBeNull();
      expect(gateInstalled(sandbox, backend.settings.firewall_type)).toBe(true);
      expect(await tcpProbe(sandbox.client, ADDR.client4, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'timeout' });
      expect(await udpEchoes(sandbox.client, ADDR.client4, ADDR.gwWan4, 1194, PROBE_MS)).toBe(false);
      expect(await trial.stop('SIGTERM')).toBe(0);
    });
  }

  it('report mode drops nothing, counts exactly what it would drop per port, and a knock still grants', async () => {
    writeFile(sandbox, 'config.yaml', configYaml(sandbox, { ...backend.settings, gate_mode: 'report', metrics_listen: `127.0.0.1:${METRICS_PORT}` }));
    const report = await start([]);
    expect(report.output.some((line) => /"level":40/.test(line) && /gate_mode: report: the gate protects nothing/.test(line))).toBe(true);

    // No knock: both apps answer a source that never knocked.
    expect(await tcpProbe(sandbox.client, ADDR.client4b, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'open', banner: 'hello' });
    expect(await udpEchoes(sandbox.client, ADDR.client4b, ADDR.gwWan4, 1194, PROBE_MS)).toBe(true);
    // SYN, ACK, FIN and the ACKs of the banner at least: each would have been dropped.
    expect(await wouldDrop(sandbox, 'tcp', 8080)).toBeGreaterThanOrEqual(3);

    // Step 1 and step 2 work as in enforce mode: the knocking address gets its UDP grant.
    const knocked = await knockStep1({
      client: sandbox.client,
      daemon: report,
      url: `http://${ADDR.gwWan4}${STEP1_PATH}`,
      body: `app=udpsvc&access_key=${KEYS.udp[0]}`,
      from: ADDR.client4,
      timeoutSeconds: scaled(2),
    });
    expect(knocked).toBe(true);
    const step2 = curl(
      sandbox.client,
      ['-k', '--interface', ADDR.client4, '-d', `app=udpsvc&access_key=${KEYS.udp[1]}`, `https://${ADDR.gwWan4}${STEP2_PATH}`],
      scaled(3),
    );
    expect(step2.status).toBe('200');

    // A source without a grant: every datagram counted. The granted source: none.
    const before = await wouldDrop(sandbox, 'udp', 1194);
    await sendDatagrams(sandbox, ADDR.client4b, BURST);
    const afterUngranted = await wouldDrop(sandbox, 'udp', 1194);
    expect(afterUngranted - before).toBe(BURST);
    await sendDatagrams(sandbox, ADDR.client4, BURST);
    expect(await wouldDrop(sandbox, 'udp', 1194)).toBe(afterUngranted);

    // The same counts in the metrics, per port and protocol.
    const scrape = sandbox.gw.exec('curl', ['-sS', '-m', '5', `http://127.0.0.1:${METRICS_PORT}/metrics`]);
    expect(scrape).toContain(`knockport_gate_would_drop_packets_total{port="1194",protocol="udp"} ${afterUngranted}`);
    expect(scrape).toMatch(/knockport_gate_would_drop_packets_total\{port="8080",protocol="tcp"\} [1-9]/);
    expect(scrape).toContain('knockport_gate_report_mode 1');
    expect(await report.stop('SIGTERM')).toBe(0);
  });
});
