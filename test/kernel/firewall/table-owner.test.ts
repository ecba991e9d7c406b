/**
 * knock-port's own table against other processes (the real daemon in the gateway namespace).
 * On kernels with the table flag persist (Linux 6.9+): the daemon owns its table, so another
 * process's `nft flush ruleset` (the first line of Debian's /etc/nftables.conf) leaves the gate
 * in place (a protected port stays closed, a granted source still gets in) and its
 * `nft delete table` is refused; after kill -9 the table stays, a restarted daemon adopts it,
 * and after SIGTERM `knock-port uninstall` removes it. Older kernels (Debian 12's 6.1, in the
 * VM tier): the table is not owned, another process can delete it, and the self-heal puts it
 * back, as before. Which of the two the kernel gives is probed here, apart from the daemon.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { release } from 'node:os';
import { join } from 'node:path';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { Prober } from '../../helpers/prober.js';
import { startServices } from '../../helpers/scenario.js';
import { ADDR, CLI, REPO_ROOT, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { IN_VM, scaled } from '../../helpers/vm.js';

const FILE = 'test/kernel/firewall/table-owner.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'curl', 'openssl']));

const STEP1_PATH = '/to-knock-2c7e91';
const STEP2_PATH = '/to-open-b84d06';
const HTTP_KEY = 'owner-http-key-5a0e3c';
const HTTPS_KEY = 'owner-https-key-d7194b';
const PORT = 8080;
const TABLE = 'inet knockport';
/** A first start in a fresh VM also loads the nftables kernel modules: about 80 s there. */
const START_MS = scaled(30_000);
/** A self-heal tick is 5 s: time for one, scaled. */
const HEAL_MS = scaled(15_000);

/** The kernel's own answer in `ns`, asked through the addon's probe: can a table be owned and persist? */
function ownershipProbe(sandbox: Sandbox): number {
  const addon = join(REPO_ROOT, 'build/Release/knockport_native.node');
  const out = sandbox.gw.exec(process.execPath, ['-e', `console.log(require(${JSON.stringify(addon)}).NftContext.probeTableOwnership())`]);
  return Number(out.trim());
}

function kernelAtLeast(major: number, minor: number): boolean {
  const [a = 0, b = 0] = release()
    .split('.')
    .map((part) => Number.parseInt(part, 10));
  return a > major || (a === major && b >= minor);
}

describe.skipIf(skip)('knock-port table against other processes', () => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  let prober: Prober;
  let configPath: string;
  /** Whether this kernel keeps owned tables (owner + persist), probed in beforeAll. */
  let owned = false;

  const start = async (): Promise<Daemon> => {
    const d = startDaemon(sandbox, ['-c', configPath, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await d.waitForLog(/knock-port ready/, START_MS))) throw new Error(`daemon did not start:\n${d.output.join('\n')}`);
    return d;
  };
  const nft = (...args: string[]) => sandbox.gw.tryExec('nft', args);
  const tableListing = () => nft('list', 'table', ...TABLE.split(' '));
  /** Step 1 from `from`, ended as soon as the daemon opened the step-2 window (false: it did not). */
  const knockOnce = (from: string): Promise<boolean> =>
    knockStep1({
      client: sandbox.client,
      daemon,
      url: `http://${ADDR.gwWan4}${STEP1_PATH}`,
      body: `app=svc&access_key=${HTTP_KEY}`,
      from,
      timeoutSeconds: scaled(5),
    });
  /** Both steps from `from` (a knock that a busy machine lost is sent again once, as a user would); the step-2 status. */
  const knock = async (from: string): Promise<string> => {
    if (!(await knockOnce(from)) && !(await knockOnce(from))) return 'no step-2 window';
    return curl(sandbox.client, ['-k', '-d', `app=svc&access_key=${HTTPS_KEY}`, '--interface', from, `https://${ADDR.gwWan4}${STEP2_PATH}`], scaled(2)).status;
  };
  const reaches = async (from: string) => (await prober.tcp(from, ADDR.gwWan4, PORT, scaled(800))).kind === 'open';
  /** The gate as a client sees it: the granted source gets in, the other one does not. */
  const gateHolds = async () => {
    const [granted, other] = await Promise.all([reaches(ADDR.client4), reaches(ADDR.client4b)]);
    return { granted, other };
  };

  beforeAll(async () => {
    sandbox = createSandbox('tow');
    await startServices(sandbox.gw, { tcp: { [PORT]: 'hello\n' } });
    prober = await Prober.start(sandbox.client);
    configPath = writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: 'nftables', capture: 'nflog' })}svc:
  port: ${PORT}
  access_key_http: [${HTTP_KEY}]
  access_key_https: [${HTTPS_KEY}]
  destination: local
  duration: 600
  step2_https_duration: 30
`,
    );
    owned = ownershipProbe(sandbox) === 0;
    process.stderr.write(
      `\n*** ${FILE}: kernel ${release()} ${owned ? 'keeps owned tables (owner, persist)' : 'lacks the table flag persist: fallback expected'}\n\n`,
    );
    daemon = await start();
  });

  afterAll(async () => {
    prober?.stop();
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('the probe agrees with the kernel version, and the daemon says which it uses', () => {
    if (kernelAtLeast(6, 9)) expect(owned).toBe(true);
    const log = daemon.output.join('\n');
    if (owned) {
      expect(log).toContain(`table ${TABLE} owned by this daemon (table flags owner, persist)`);
      expect(tableListing().out).toMatch(/flags owner/);
    } else {
      expect(log).toMatch(new RegExp(`table ${TABLE} not owned \\(kernel .* lacks the table flag persist`));
      expect(tableListing().out).not.toMatch(/flags owner/);
    }
  });

  it('a knock opens the port for its source only', async () => {
    expect(await gateHolds()).toEqual({ granted: false, other: false });
    expect(await knock(ADDR.client4)).toBe('200');
    expect(await gateHolds()).toEqual({ granted: true, other: false });
  });

  it("another process's `nft flush ruleset` and `nft delete table`", async () => {
    expect(nft('flush', 'ruleset').ok).toBe(true);
    if (owned) {
      // Right after the flush, before any self-heal: the gate never left.
      expect(tableListing().ok).toBe(true);
      expect(await gateHolds()).toEqual({ granted: true, other: false });
      const deleted = nft('delete', 'table', ...TABLE.split(' '));
      expect(deleted.ok).toBe(false);
      expect(deleted.err).toMatch(/Operation not permitted/);
      expect(await gateHolds()).toEqual({ granted: true, other: false });
    } else {
      // As before: the flush removed the table, and the self-heal puts it and the live grants back.
      expect(await waitFor(() => tableListing().ok && tableListing().out.includes('step1'), HEAL_MS, 250)).toBe(true);
      expect(nft('delete', 'table', ...TABLE.split(' ')).ok).toBe(true);
      expect(await waitFor(() => tableListing().ok && tableListing().out.includes('step1'), HEAL_MS, 250)).toBe(true);
      expect(await waitFor(async () => (await gateHolds()).granted, HEAL_MS, 500)).toBe(true);
      expect(await gateHolds()).toEqual({ granted: true, other: false });
    }
  });

  // Restarts and uninstall behave as before on a kernel without owned tables: there the fallback
  // is proven above (`npm run test:vm -- test/kernel/firewall/table-owner.test.ts`).
  if (IN_VM) return;

  it('kill -9 leaves the table and its gate; a restarted daemon adopts it and keeps working', async () => {
    await daemon.stop('SIGKILL');
    expect(tableListing().ok).toBe(true);
    // No owner any more (an orphan), still persisting.
    expect(tableListing().out).not.toMatch(/flags owner/);
    expect(await gateHolds()).toEqual({ granted: true, other: false });

    daemon = await start();
    if (owned) {
      expect(daemon.output.join('\n')).toContain(`table ${TABLE} owned by this daemon`);
      expect(tableListing().out).toMatch(/flags owner/);
      expect(nft('delete', 'table', ...TABLE.split(' ')).ok).toBe(false);
    }
    expect(await gateHolds()).toEqual({ granted: true, other: false });
    // Grants still land in the adopted table.
    expect(await knock(ADDR.client4b)).toBe('200');
    expect(await gateHolds()).toEqual({ granted: true, other: true });
  });

  it('SIGTERM leaves the table; `knock-port uninstall` then removes it', async () => {
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(tableListing().ok).toBe(true);
    const uninstall = sandbox.gw.tryExec(process.execPath, [CLI, 'uninstall', '-c', configPath]);
    expect(uninstall.err).toBe('');
    expect(uninstall.ok).toBe(true);
    expect(tableListing().ok).toBe(false);
    expect(nft('list', 'tables').out).not.toContain('knockport');
  });
});
