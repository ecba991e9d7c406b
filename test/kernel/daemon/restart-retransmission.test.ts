/**
 * A knock that got no answer keeps coming: the client's kernel retransmits the request for
 * minutes after curl gave up. A restarted daemon does not know what its predecessor decided
 * about that segment, so it must not judge it again: every start has a new cookie secret, and
 * the retransmission no longer proves its source. Here a revoked client's retransmissions reach
 * the restarted daemon (it logs them as spoofed) and open nothing, after SIGTERM and after kill -9.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { ADDR, CLI, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/restart-retransmission', kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/knock-rtx-4c2a9e';
const HTTP_KEY = 'rtx-http-key-0123456789';

describe.skipIf(skip).each(['SIGTERM', 'SIGKILL'] as const)('a knock retransmitted across a restart (%s)', (signal) => {
  let sandbox: Sandbox;
  let daemon: Daemon | undefined;
  let args: string[];

  beforeAll(async () => {
    sandbox = createSandbox(signal === 'SIGTERM' ? 'rtt' : 'rtk');
    const config = writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: '/step2-rtx-7b1d3f', http_port: 80, https_port: 443, firewall_type: 'nftables', capture: 'nflog' })}svc:
  port: 8080
  access_key_http: [${HTTP_KEY}]
  access_key_https: [rtx-https-key-0123456789]
  duration: 60
  step2_https_duration: 60
`,
    );
    args = ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug'];
    daemon = startDaemon(sandbox, args);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  const windowOpen = () => sandbox.gw.exec('nft', ['list', 'set', 'inet', 'knockport', 'step2_v4']).includes(ADDR.client4);

  it('opens nothing again after a revoke', async () => {
    curl(sandbox.client, ['-d', `app=svc&access_key=${HTTP_KEY}`, `http://${ADDR.gwWan4}${STEP1_PATH}`], 1);
    expect(await daemon!.waitForLog(/"step":"step2".*"msg":"granted"/, scaled(5_000))).toBe(true);
    sandbox.gw.exec(process.execPath, [CLI, 'revoke', ADDR.client4, '--socket', join(sandbox.dir, 'control.sock')]);
    expect(windowOpen()).toBe(false);

    await daemon!.stop(signal);
    daemon = startDaemon(sandbox, args);
    expect(await daemon.waitForLog(/knock-port ready/)).toBe(true);
    // The client's kernel retransmits the request with a doubling timeout (about 1, 3, 7, 15 s).
    const seen = await daemon.waitForLog(new RegExp(`"ip":"${ADDR.client4.replace(/\./g, '\\.')}".*"reason":"bad-cookie"`), scaled(25_000));
    expect(seen, 'a retransmission reached the restarted daemon').toBe(true);
    expect(daemon.output.some((line) => line.includes('"msg":"granted"'))).toBe(false);
    expect(windowOpen()).toBe(false);
  });
});
