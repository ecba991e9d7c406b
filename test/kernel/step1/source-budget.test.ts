/**
 * The running daemon's per-source step-1 budget (`step1_2_rate_limit_per_minute`) counts an
 * IPv6 client's whole /64 (`source_prefix_v6`, default 64), not each address: a client holds
 * 2^64 addresses, so a budget per address would be no budget at all. Real knocks from several
 * addresses of one /64 and from another /64, with curl, against the daemon's worker threads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { knockStep1 } from '../../helpers/knock.js';
import { curlFrom } from '../../helpers/scenario.js';
import { ADDR, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';

const skip = announceSkip('step1/source-budget', kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/knock-src-4be19a';
const STEP2_PATH = '/step2-src-0c7d53';
const KEYS = { http: 'source-http-key-28f1c0', https: 'source-https-key-6a93e4' };
const LIMIT_PER_MINUTE = 2;
/** Three addresses of the client link's /64, and one of another /64 routed over the same link. */
const SAME_64 = ['2001:db8:1::a1', '2001:db8:1::b2', '2001:db8:1::c3'] as const;
const OTHER_64 = '2001:db8:9::d4';

function configYaml(sandbox: Sandbox): string {
  return `${globalSection(sandbox, {
    http_post_path: STEP1_PATH,
    https_post_path: STEP2_PATH,
    firewall_type: 'nftables',
    capture: 'nflog',
    step1_2_rate_limit_per_minute: LIMIT_PER_MINUTE,
    source_prefix_v6: 64,
  })}svc:
  port: 8080
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  destination: local
  protocol: tcp
  duration: 30
  step2_https_duration: 30
`;
}

describe.skipIf(skip)('the daemon counts step-1 knocks per IPv6 /64', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;

  /** Step 1 from `from` (never answered), then step 2: "200" when step 1 opened HTTPS for it, "000" when it stayed dropped. */
  const knock = async (from: string): Promise<string> => {
    await knockStep1({
      client: sandbox.client,
      daemon,
      from,
      url: `http://[${ADDR.gwWan6}]${STEP1_PATH}`,
      body: `app=svc&access_key=${KEYS.http}`,
      timeoutSeconds: scaled(1),
    });
    const step2 = await curlFrom(sandbox.client, from, ['-k', '-d', `app=svc&access_key=${KEYS.https}`, `https://[${ADDR.gwWan6}]${STEP2_PATH}`], scaled(2));
    return step2.status;
  };

  beforeAll(async () => {
    sandbox = createSandbox('sbu');
    for (const address of [...SAME_64, OTHER_64]) sandbox.client.ip('addr', 'add', `${address}/64`, 'dev', IF.clientWan, 'nodad');
    sandbox.gw.ip('-6', 'route', 'add', '2001:db8:9::/64', 'via', ADDR.client6);
    const config = writeFile(sandbox, 'config.yaml', configYaml(sandbox));
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it(`${LIMIT_PER_MINUTE} knocks a minute for the whole /64, whichever of its addresses sends them; another /64 has its own`, async () => {
    const [first, second, third] = SAME_64;
    expect(await knock(first)).toBe('200');
    expect(await knock(second)).toBe('200');
    // A new address of the same /64 is no new budget: its knock is ignored and HTTPS stays closed to it.
    expect(await knock(third)).toBe('000');
    expect(await knock(OTHER_64)).toBe('200');
  });
});
