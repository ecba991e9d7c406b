/**
 * One time means one time: a step-1 knock carrying a valid one-time `otp`, captured and
 * replayed with real curl from another client address, must not open the step-2 window,
 * neither after a SIGHUP (which rebuilds the inspector) nor after the daemon is killed and
 * started again; and a step-2 `token` already used must not work again after a restart. The
 * real daemon in namespaces this test creates, nftables with NFLOG capture.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { totpAt } from '../../../src/auth/totp.js';
import { USED_CODES_FILE_NAME } from '../../../src/daemon/used-codes-file.js';
import { announceSkip, kernelSkipReason, type Netns } from '../../helpers/netns.js';
import { ADDR, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('daemon/one-time-codes', kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/otc-knock-3b9e57';
const STEP2_PATH = '/otc-open-d81f04';
const ALICE = {
  http: 'alice-otc-http-0f3a91',
  https: 'alice-otc-https-7c2e58',
  otp: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
  totp: 'MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U',
};
const BOB = { http: 'bob-otc-http-5d7b20', https: 'bob-otc-https-e94c13', totp: 'ONSWG4TFOQYTEMZUGU3DOOBZGAYTEMZU' };
/** Long enough that no window this test relies on closes while it runs. */
const WINDOW = 60;
const STEP1_SECONDS = scaled(1);
const STEP2_SECONDS = scaled(2);
const PERIOD = 30;

function configYaml(sandbox: Sandbox): string {
  return `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: 'nftables', capture: 'nflog' })}svc:
  port: 8080
  destination: local
  duration: 60
  step2_https_duration: ${WINDOW}
  users:
    - name: alice
      access_key_http: ${ALICE.http}
      access_key_https: ${ALICE.https}
      step1_otp_secret: ${ALICE.otp}
      totp_secret: ${ALICE.totp}
    - name: bob
      access_key_http: ${BOB.http}
      access_key_https: ${BOB.https}
      totp_secret: ${BOB.totp}
`;
}

/** The same curl request each time: only the source address differs. */
function step1(client: Netns, body: string, from: string): void {
  const host = from.includes(':') ? `[${ADDR.gwWan6}]` : ADDR.gwWan4;
  curl(client, ['-d', body, '--interface', from, `http://${host}${STEP1_PATH}`], STEP1_SECONDS);
}

function step2(client: Netns, body: string, from: string): string {
  const host = from.includes(':') ? `[${ADDR.gwWan6}]` : ADDR.gwWan4;
  return curl(client, ['-k', '-d', body, '--interface', from, `https://${host}${STEP2_PATH}`], STEP2_SECONDS).status;
}

describe.skipIf(skip)('one-time codes across SIGHUP and restart', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let configPath: string;
  const start = async () => {
    daemon = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key, '--log-level', 'debug']);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  };

  beforeAll(async () => {
    sandbox = createSandbox('otc');
    configPath = writeFile(sandbox, 'config.yaml', configYaml(sandbox));
    await start();
  });

  afterEach((ctx) => {
    if (process.env.KP_DEBUG && ctx.task.result?.state === 'fail') console.log(daemon.output.slice(-30).join('\n'));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('a captured otp knock replayed from another address opens nothing, after a SIGHUP and after kill -9 and a restart', async () => {
    const { client } = sandbox;
    // Start early in a 30 s time step: the replays must all fall inside the codes' window (this step and the next).
    const into = (Date.now() / 1000) % PERIOD;
    if (into > 15) await new Promise((resolve) => setTimeout(resolve, (PERIOD - into) * 1000 + 100));
    const issuedAt = Date.now() / 1000;
    const acceptedUntil = (Math.floor(issuedAt / PERIOD) + 2) * PERIOD * 1000;
    const inWindow = (what: string) => expect(Date.now(), `${what} must happen while the code is still valid`).toBeLessThan(acceptedUntil - 2000);

    const knock = `app=svc&access_key=${ALICE.http}&otp=${totpAt(ALICE.otp, issuedAt)}`;
    const aliceStep2 = `app=svc&access_key=${ALICE.https}&token=${totpAt(ALICE.totp, issuedAt)}`;
    const bobToken = totpAt(BOB.totp, issuedAt);

    // The genuine knocks: alice (otp, then token) and bob (token) from the first address.
    step1(client, knock, ADDR.client4);
    expect(step2(client, aliceStep2, ADDR.client4)).toBe('200');
    step1(client, `app=svc&access_key=${BOB.http}`, ADDR.client4);
    expect(step2(client, `app=svc&access_key=${BOB.https}&token=${bobToken}`, ADDR.client4)).toBe('200');

    // The same request from a second address: refused, so its HTTPS port stays dropped.
    inWindow('the first replay');
    step1(client, knock, ADDR.client4b);
    expect(step2(client, `app=svc&access_key=${ALICE.https}`, ADDR.client4b)).toBe('000');

    daemon.proc.kill('SIGHUP');
    expect(await daemon.waitForLog(/config reloaded/, scaled(5000))).toBe(true);
    inWindow('the replay after SIGHUP');
    step1(client, knock, ADDR.client4b);
    expect(step2(client, `app=svc&access_key=${ALICE.https}`, ADDR.client4b)).toBe('000');

    expect(existsSync(join(sandbox.dir, 'state', USED_CODES_FILE_NAME))).toBe(true);
    await daemon.stop('SIGKILL');
    await start();
    inWindow('the replay after the restart');
    step1(client, knock, ADDR.client4b);
    expect(step2(client, `app=svc&access_key=${ALICE.https}`, ADDR.client4b)).toBe('000');

    // Bob's used step-2 token: refused after the restart (403: the window is open, the token is not accepted).
    step1(client, `app=svc&access_key=${BOB.http}`, ADDR.client4b);
    inWindow('the token replay after the restart');
    expect(step2(client, `app=svc&access_key=${BOB.https}&token=${bobToken}`, ADDR.client4b)).toBe('403');

    // The restarted daemon does accept codes nobody used yet (the next time step's, inside the window).
    const later = Date.now() / 1000 + PERIOD;
    expect(step2(client, `app=svc&access_key=${BOB.https}&token=${totpAt(BOB.totp, later)}`, ADDR.client4b)).toBe('200');
    step1(client, `app=svc&access_key=${ALICE.http}&otp=${totpAt(ALICE.otp, later)}`, ADDR.client6);
    expect(step2(client, `app=svc&access_key=${ALICE.https}&token=${totpAt(ALICE.totp, later)}`, ADDR.client6)).toBe('200');
  });
});
