/**
 * Where the step-1 XDP front attaches, and what it leaves alone, with the real daemon (nftables +
 * NFLOG) in the sandbox, read as an operator reads it (`ip link`, the start log, `health`, the
 * metrics, `check`):
 * - `auto` on an interface that already carries someone else's XDP program falls back to the
 *   kernel rules there, says so, and curl knocks still work (the daemon itself answers the SYNs);
 * - a wildcard `interface_ext` attaches to a matching interface that appears after the start, not
 *   to one that does not match;
 * - stopping the daemon (SIGTERM) detaches its own program and no one else's, and so does
 *   `uninstall` after it;
 * - on a bridge (no native XDP in its driver): `off` attaches nothing; `native` cannot attach and
 *   is a health problem; `auto` takes generic mode;
 * - `check` loads and verifies the program without attaching it, and warns where it cannot load.
 * Someone else's programs are a plain XDP_PASS program compiled here and attached with `ip link`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { knockStep1 } from '../../helpers/knock.js';
import { metricByLabel } from '../../helpers/metrics-scrape.js';
import { announceSkip, kernelSkipReason, waitFor } from '../../helpers/netns.js';
import { startServices } from '../../helpers/scenario.js';
import { ADDR, CLI, IF, createSandbox, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';
import type { Netns } from '../../helpers/netns.js';
import { bracket, execIn } from '../attacks/probes.js';

const FILE = 'test/kernel/step1/xdp-attach.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'curl', 'openssl', 'clang', 'gcc', 'setpriv']));

const STEP1_PATH = '/knock-xdpa-4b1e90';
const STEP2_PATH = '/step2-xdpa-c7d2e1';
const KEYS = { http: 'xdpa-http-key-3f81c2', https: 'xdpa-https-key-9a07d4' };
const METRICS_PORT = 9466;
const OUR_PROGRAM = 'knockport_step1';
const THEIR_PROGRAM = 'other_pass';
const PASS_C = `#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int ${THEIR_PROGRAM}(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] __attribute__((section("license"), used)) = "GPL";
`;
/** Interfaces the tests add to the gateway: WIDE matches `kpw+`, NARROW does not; BRIDGE has no native XDP. */
const ADDED = { wide: 'kpwb1', narrow: 'kpqb1', bridge: 'kpxb0' } as const;

interface XdpOnLink {
  mode: 'native' | 'generic';
  id: number;
  name: string;
}

/** Every XDP program on the namespace's interfaces, by interface, as `ip -d -j link` reports it. */
function xdpPrograms(ns: Netns): Record<string, XdpOnLink> {
  const links = JSON.parse(ns.ip('-d', '-j', 'link', 'show')) as { ifname: string; xdp?: { mode: number; prog?: { id: number; name: string } } }[];
  const found: Record<string, XdpOnLink> = {};
  // XDP_ATTACHED_DRV = 1, XDP_ATTACHED_SKB = 2
  for (const link of links)
    if (link.xdp?.prog) found[link.ifname] = { mode: link.xdp.mode === 1 ? 'native' : 'generic', id: link.xdp.prog.id, name: link.xdp.prog.name };
  return found;
}

function appSection(): string {
  return `svc:
  port: 8080
  access_key_http: [${KEYS.http}]
  access_key_https: [${KEYS.https}]
  duration: 30
  step2_https_duration: 20
`;
}

interface HealthJson {
  healthy: boolean;
  problems: string[];
  xdp?: { attached: { interface: string; mode: string }[]; notes: string[]; counters: Record<string, number> };
}

describe.skipIf(skip)('step-1 XDP front: where it attaches and what it leaves alone', () => {
  let sandbox: Sandbox;
  let passObject: string;

  const series = (name: string, label: string) => metricByLabel(sandbox.gw, METRICS_PORT, name, label);
  const interfaceModes = () => series('knockport_step1_xdp_interfaces', 'mode');
  const health = async (): Promise<HealthJson> =>
    JSON.parse((await execIn(sandbox.gw, 'node', [CLI, 'health', '--json', '--socket', `${sandbox.dir}/control.sock`])).out) as HealthJson;
  const configFile = (settings: Record<string, string | number>) =>
    writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: STEP1_PATH, https_post_path: STEP2_PATH, firewall_type: 'nftables', capture: 'nflog', step1_workers: 1, metrics_listen: `127.0.0.1:${METRICS_PORT}`, ...settings })}${appSection()}`,
    );
  const start = async (config: string): Promise<Daemon> => {
    const daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/, scaled(15_000)))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
    return daemon;
  };

  beforeAll(() => {
    sandbox = createSandbox('xat');
    passObject = `${sandbox.dir}/pass.o`;
    const source = writeFile(sandbox, 'pass.c', PASS_C);
    const multiarch = sandbox.gw.exec('gcc', ['-print-multiarch']).trim();
    sandbox.gw.exec('clang', ['-O2', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', source, '-o', passObject]);
  });

  afterAll(() => sandbox?.destroy());

  describe('auto beside programs of others, a wildcard interface_ext, then stop', () => {
    let daemon: Daemon | undefined;
    let config: string;
    let theirs: Record<string, XdpOnLink>;

    beforeAll(async () => {
      // Someone else's programs: on the interface knock-port would use (generic) and on another one (native).
      sandbox.gw.ip('link', 'set', 'dev', IF.gwWan, 'xdpgeneric', 'obj', passObject, 'sec', 'xdp');
      sandbox.gw.ip('link', 'set', 'dev', IF.gwLan, 'xdpdrv', 'obj', passObject, 'sec', 'xdp');
      theirs = xdpPrograms(sandbox.gw);
      expect(Object.keys(theirs).sort()).toEqual([IF.gwLan, IF.gwWan].sort());
      await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
      config = configFile({ step1_xdp: 'auto', interface_ext: 'kpw+' });
      daemon = await start(config);
    });

    afterAll(async () => {
      await daemon?.stop('SIGKILL');
    });

    it(`falls back to the kernel rules on ${IF.gwWan}, which has another program, and says so: start log, health, metrics`, async () => {
      expect(daemon!.output.join('\n')).toMatch(
        new RegExp(`step-1 XDP is not attached to ${IF.gwWan}: generic: .*Device or resource busy.*; the kernel rules serve step 1 there`),
      );
      expect(daemon!.output.find((line) => line.includes('knock-port ready'))).toMatch(/"step1Xdp":"none"/);
      const report = await health();
      expect(report.xdp?.attached).toEqual([]);
      expect(report.xdp?.notes).toEqual([expect.stringMatching(new RegExp(`^${IF.gwWan}: generic: `))]);
      expect(report.problems.filter((p) => /XDP/.test(p))).toEqual([]); // auto falling back is no problem
      expect(await interfaceModes()).toEqual({ native: 0, generic: 0, none: 1 });
      expect(xdpPrograms(sandbox.gw)).toEqual(theirs);
    });

    it('curl knocks still work there, IPv4 and IPv6: the daemon answers the SYNs, XDP answers none', async () => {
      const daemonSyns = async () => (await series('knockport_step1_packets_total', 'outcome')).syn ?? 0;
      const before = await daemonSyns();
      const body = `app=svc&access_key=${KEYS.http}`;
      const knocks = [
        [ADDR.client4, ADDR.gwWan4],
        [ADDR.client6, ADDR.gwWan6],
      ].map(([from, gw]) =>
        knockStep1({ client: sandbox.client, daemon: daemon!, url: `http://${bracket(gw!)}${STEP1_PATH}`, body, from, timeoutSeconds: scaled(2) }),
      );
      expect(await Promise.all(knocks)).toEqual([true, true]);
      expect((await daemonSyns()) - before).toBeGreaterThanOrEqual(2);
      expect((await health()).xdp?.counters.syn_answered).toBe(0);
    });

    it('attaches to a matching interface that appears later, not to one that does not match', async () => {
      sandbox.gw.ip('link', 'add', ADDED.wide, 'type', 'veth', 'peer', 'name', ADDED.narrow);
      for (const name of [ADDED.wide, ADDED.narrow]) sandbox.gw.ip('link', 'set', 'dev', name, 'up');
      const attachedTo = async () => (await health()).xdp?.attached ?? [];
      // The daemon looks at its interfaces every 5 s.
      expect(await waitFor(async () => (await attachedTo()).length > 0, scaled(8_000), 250)).toBe(true);
      expect(await attachedTo()).toEqual([{ interface: ADDED.wide, mode: 'generic' }]);
      const programs = xdpPrograms(sandbox.gw);
      expect(programs[ADDED.wide]).toMatchObject({ mode: 'generic', name: OUR_PROGRAM });
      expect(programs[ADDED.narrow]).toBeUndefined();
      expect(await interfaceModes()).toEqual({ native: 0, generic: 1, none: 1 });
    });

    it("stop (SIGTERM) detaches its program and leaves the others' in place; so does uninstall", async () => {
      expect(await daemon!.stop('SIGTERM')).toBe(0);
      daemon = undefined;
      expect(xdpPrograms(sandbox.gw)).toEqual(theirs);
      const uninstall = await execIn(sandbox.gw, 'node', [CLI, 'uninstall', '-c', config]);
      expect(uninstall.code, uninstall.err).toBe(0);
      expect(xdpPrograms(sandbox.gw)).toEqual(theirs);
    });
  });

  describe(`a bridge (${ADDED.bridge}), whose driver has no native XDP: off, native, auto; check`, () => {
    let daemon: Daemon | undefined;
    const bridgeConfig = (mode: string) => configFile({ step1_xdp: mode, interface_ext: ADDED.bridge });

    beforeAll(() => {
      sandbox.gw.ip('link', 'add', ADDED.bridge, 'type', 'bridge');
      sandbox.gw.ip('link', 'set', 'dev', ADDED.bridge, 'up');
    });

    afterAll(async () => {
      await daemon?.stop('SIGKILL');
    });

    const ours = () => Object.entries(xdpPrograms(sandbox.gw)).filter(([, p]) => p.name === OUR_PROGRAM);

    it('check loads and verifies the program without attaching it; without CAP_BPF it warns instead; with off it loads nothing', async () => {
      const check = (mode: string, launcher: string[] = []) => {
        const config = writeFile(
          sandbox,
          `check-${mode}-${launcher.length}.yaml`,
          `${globalSection(sandbox, { step1_xdp: mode, interface_ext: ADDED.bridge, http_post_path: STEP1_PATH, https_post_path: STEP2_PATH })}${appSection()}`,
        );
        const [cmd, ...args] = [...launcher, 'node', CLI, 'check', '--json', '-c', config];
        return execIn(sandbox.gw, cmd, args);
      };
      const noBpf = ['setpriv', '--bounding-set', '-bpf,-sys_admin'];
      const [verified, refused, off] = await Promise.all([check('native'), check('auto', noBpf), check('off', noBpf)]);
      expect(JSON.parse(verified.out)).toMatchObject({ ok: true, xdp: 'verified', warnings: [] });
      const warned = JSON.parse(refused.out) as { ok: boolean; xdp: string; warnings: string[] };
      expect(warned).toMatchObject({ ok: true, xdp: 'unavailable' });
      expect(warned.warnings).toEqual([
        expect.stringMatching(
          /^step1_xdp auto: the XDP program cannot run here \(cannot load the step-1 XDP program: Operation not permitted.*run falls back to the kernel rules/,
        ),
      ]);
      expect(JSON.parse(off.out)).toMatchObject({ ok: true, warnings: [] });
      expect(JSON.parse(off.out)).not.toHaveProperty('xdp');
      expect(ours()).toEqual([]);
    });

    it('off attaches nothing: no program, no xdp in health, every interface count 0', async () => {
      daemon = await start(bridgeConfig('off'));
      expect(daemon.output.find((line) => line.includes('knock-port ready'))).toMatch(/"step1Xdp":"off"/);
      expect(ours()).toEqual([]);
      expect(await health()).not.toHaveProperty('xdp');
      expect(await interfaceModes()).toEqual({ native: 0, generic: 0, none: 0 });
    });

    const reloadTo = async (mode: string) => {
      const from = daemon!.output.length;
      bridgeConfig(mode);
      daemon!.proc.kill('SIGHUP');
      expect(await waitFor(() => daemon!.output.slice(from).some((line) => line.includes('"config reloaded"')), scaled(10_000))).toBe(true);
      return daemon!.output.slice(from);
    };

    it('native cannot attach there: an error in the log, a problem in health, none in the metrics; the daemon runs on', async () => {
      const logged = await reloadTo('native');
      expect(logged.join('\n')).toMatch(new RegExp(`"level":50.*step-1 XDP is not attached to ${ADDED.bridge}: native: .*not supported`));
      const report = await health();
      expect(report.healthy).toBe(false);
      expect(report.problems).toContainEqual(expect.stringMatching(new RegExp(`step-1 XDP is not attached to ${ADDED.bridge}: native`)));
      expect(report.xdp?.attached).toEqual([]);
      expect(await interfaceModes()).toEqual({ native: 0, generic: 0, none: 1 });
      expect(ours()).toEqual([]);
    });

    it('auto tries native, then takes generic mode; the problem native had is over', async () => {
      await reloadTo('auto');
      const report = await health();
      expect(report.xdp?.attached).toEqual([{ interface: ADDED.bridge, mode: 'generic' }]);
      expect(report.problems.filter((p) => /XDP/.test(p))).toEqual([]); // native's problem ended with it
      expect(ours()).toEqual([[ADDED.bridge, expect.objectContaining({ mode: 'generic' })]]);
      expect(await interfaceModes()).toEqual({ native: 0, generic: 1, none: 0 });
    });
  });
});
