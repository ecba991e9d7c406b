/**
 * A stopped daemon leaves the gate closed (fail closed): after SIGTERM every protected port is
 * dropped, not refused and not open, for every address without a grant, while a live grant
 * still lets its address in until it expires in the kernel. A port with a listener behind it is
 * what tells "dropped" from "nothing listens": were the rules removed on stop, the listener would
 * answer, and the HTTPS and step-1 ports, with nothing listening, would answer with a reset.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { startServices, tcpProbe } from '../../helpers/scenario.js';
import { ADDR, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/stop-fail-closed', kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/knock-stop-5d1e07';
const STEP2_PATH = '/step2-stop-93ab4c';
const HTTP_KEY = 'stop-http-key-0123456';
const HTTPS_KEY = 'stop-https-key-0123456';
/** The grant outlives every check below. */
const DURATION = 120;
const PROBE_MS = scaled(800);

function configYaml(sandbox: Sandbox): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    http_port: 80,
    https_port: 443,
    firewall_type: 'nftables',
    capture: 'nflog',
  })}tcpsvc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  protocol: tcp
  duration: ${DURATION}
  step2_https_duration: 30
`;
}

const host = (addr: string): string => (addr.includes(':') ? `[${addr}]` : addr);

describe.skipIf(skip)('the daemon stopped with SIGTERM leaves the gate closed', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  beforeAll(async () => {
    sandbox = createSandbox('stc');
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox));
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('every protected port stays dropped for addresses without a grant; the granted address keeps its service', async () => {
    const { client } = sandbox;
    curl(client, ['-d', `app=tcpsvc&access_key=${HTTP_KEY}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], scaled(1));
    expect(curl(client, ['-k', '-d', `app=tcpsvc&access_key=${HTTPS_KEY}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], scaled(2)).status).toBe('200');
    expect(await tcpProbe(client, ADDR.client4, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'open', banner: 'hello' });

    expect(await daemon.stop('SIGTERM')).toBe(0);

    const silent = { kind: 'timeout' };
    for (const [from, gw] of [
      [ADDR.client4b, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const) {
      expect(await tcpProbe(client, from, gw, 8080, PROBE_MS), `${from} to ${host(gw)}:8080`).toEqual(silent);
      expect(await tcpProbe(client, from, gw, 443, PROBE_MS), `${from} to ${host(gw)}:443`).toEqual(silent);
      expect(await tcpProbe(client, from, gw, 80, PROBE_MS), `${from} to ${host(gw)}:80`).toEqual(silent);
    }
    expect(await tcpProbe(client, ADDR.client4, ADDR.gwWan4, 8080, PROBE_MS)).toEqual({ kind: 'open', banner: 'hello' });
  });
});
