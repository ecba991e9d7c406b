/**
 * knock-port on a gateway whose own firewall drops by default: a hardened nftables table,
 * iptables INPUT DROP (nft and legacy), ufw with `default deny incoming`, and a ruleset of
 * firewalld's shape. In each: a granted client reaches a local and a forwarded service, a
 * non-granted one does not, the host ruleset's own rules behave as before, a reload of the
 * host firewall is healed, and uninstall leaves the host ruleset as it was. Every host ruleset
 * ends its chains in a reject or a drop (test/helpers/host-firewalls.ts), so knock-port's accept
 * only works at the top of a chain, where it must go. "Closed" below is what a client sees when
 * the connection does not complete: dropped or rejected.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createFirewall } from '../../../src/firewall/index.js';
import type { FirewallBackend, IptablesVariant } from '../../../src/firewall/index.js';
import type { HostFirewallMode } from '../../../src/config/types.js';
import { announceSkip, kernelSkipReason, tcpOpen, waitFor, type Netns } from '../../helpers/netns.js';
import { startServices } from '../../helpers/scenario.js';
import { NamespacedUfw, applyIptablesHost, nftablesHostRuleset } from '../../helpers/host-firewalls.js';
import { CLI, IF, createSandbox, curl, globalSection, startDaemon, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { ADDR as SANDBOX_ADDR } from '../../helpers/sandbox.js';
import { ADDR as TOPO_ADDR, Topology } from './topology.js';

const ADDR = { ...TOPO_ADDR, gwWan4: SANDBOX_ADDR.gwWan4, gwWan6: SANDBOX_ADDR.gwWan6 };

const FILE = 'test/kernel/firewall/host-firewall.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(['ip', 'nft', 'ipset', 'iptables-nft-restore', 'iptables-legacy-restore', 'unshare']));
const ufwMissing = skip ? undefined : kernelSkipReason(['ufw']);
if (ufwMissing) announceSkip(`${FILE} [ufw]`, ufwMissing);

/** The hardened nftables table of test/helpers/host-firewalls.ts, for the topology's LAN interface. */
const NFT_HOST = nftablesHostRuleset('int0');

/** What firewalld (nftables backend) builds: a policy-accept chain that ends in a reject, zones jumped to. */
const FIREWALLD_SHAPED = `table inet firewalld {
  chain filter_INPUT_ZONES {
    iifname "int0" tcp dport 22 accept
  }
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    ct state established,related accept
    ct status dnat accept
    iifname "lo" accept
    meta l4proto { icmp, ipv6-icmp } accept
    jump filter_INPUT_ZONES
    reject with icmpx admin-prohibited
  }
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy accept;
    ct state established,related accept
    iifname "int0" accept
    reject with icmpx admin-prohibited
  }
}
`;

interface HostCase {
  name: string;
  /** Installs (or reloads: same call) the host's own ruleset in the gateway namespace. */
  apply(gw: Netns, state: HostState): void;
  firewall: 'nftables' | 'iptables';
  variant?: IptablesVariant;
  /** Text expected in the report of where the accept rule went. */
  inserted: string;
  /** The one problem the report must show (none when undefined). */
  problem?: RegExp;
  unavailable?: string;
}

/** What a case keeps between installing and reloading its host firewall. */
interface HostState {
  ufw?: NamespacedUfw;
}

const iptablesCase = (variant: 'nft' | 'legacy') => (gw: Netns) => applyIptablesHost(gw, variant, 'int0');

const CASES: HostCase[] = [
  {
    name: 'nftables table with policy drop',
    apply: (gw) => gw.exec('nft', ['-f', '-'], NFT_HOST),
    firewall: 'nftables',
    inserted: 'nftables chain inet filter input',
  },
  {
    name: 'firewalld-shaped nftables table (reject at the end)',
    apply: (gw) => gw.exec('nft', ['-f', '-'], FIREWALLD_SHAPED),
    firewall: 'nftables',
    inserted: 'nftables chain inet firewalld filter_INPUT',
  },
  { name: 'iptables-nft INPUT DROP', apply: iptablesCase('nft'), firewall: 'nftables', inserted: 'iptables-nft chain INPUT (IPv4)' },
  { name: 'iptables-legacy INPUT DROP', apply: iptablesCase('legacy'), firewall: 'nftables', inserted: 'iptables-legacy chain INPUT (IPv6)' },
  {
    name: 'iptables-nft INPUT DROP, iptables backend',
    apply: iptablesCase('nft'),
    firewall: 'iptables',
    variant: 'nft',
    inserted: 'iptables-nft chain FORWARD (IPv4)',
  },
  {
    name: 'iptables-legacy INPUT DROP, iptables-legacy backend',
    apply: iptablesCase('legacy'),
    firewall: 'iptables',
    variant: 'legacy',
    inserted: 'iptables-legacy chain INPUT (IPv4)',
  },
  {
    name: 'nftables table with policy drop, iptables backend',
    apply: (gw) => gw.exec('nft', ['-f', '-'], NFT_HOST),
    firewall: 'iptables',
    variant: 'nft',
    // Step 1 is judged in prerouting, before the host's input chain at iptables' own priority: no problem to report.
    inserted: 'nftables chain inet filter forward',
  },
  {
    name: 'ufw, default deny incoming and routed',
    apply: (gw, state) => (state.ufw ??= new NamespacedUfw(gw)).enableHardened('int0'),
    firewall: 'nftables',
    inserted: 'iptables-nft chain INPUT (IPv4)',
    ...(ufwMissing ? { unavailable: ufwMissing } : {}),
  },
];

function withMode(topo: Topology, mode: HostFirewallMode) {
  return { ...topo.config, global: { ...topo.config.global, hostFirewall: mode } };
}

describe.skipIf(skip).each(CASES)('host firewall: $name', (c) => {
  let topo: Topology;
  let fw: FirewallBackend;
  const state: HostState = {};
  const app = (name: string) => topo.config.apps.find((a) => a.name === name)!;
  const fromLan = (port: number) => topo.tcpFrom(topo.lan, ADDR.gwLan4, port);
  const expectProblems = (problems: string[]) => {
    if (c.problem) expect(problems).toEqual([expect.stringMatching(c.problem)]);
    else expect(problems).toEqual([]);
  };

  beforeAll(async () => {
    if (c.unavailable) return;
    topo = Topology.create(`hf${CASES.indexOf(c)}`);
    await topo.startListeners();
    await topo.listenTcp(22);
    c.apply(topo.gw, state);
    fw = createFirewall(withMode(topo, 'insert'), { type: c.firewall, netns: topo.gw.name, ...(c.variant ? { iptablesVariant: c.variant } : {}) });
  });
  afterAll(() => {
    topo?.destroy();
    state.ufw?.destroy();
  });

  it.skipIf(c.unavailable !== undefined)('grants pass the host ruleset; everything else is as the host ruleset says', async () => {
    // The host ruleset alone: SSH from the LAN only, everything else from outside dropped.
    expect(fromLan(22)).toBe('open');
    expect(await topo.openAmong({ [ADDR.gw4]: [22, 2223] })).toEqual([]);

    await fw.install('nflog');
    const report = fw.hostFirewall();
    expectProblems(report.problems);
    expect(report.inserted.join('\n')).toContain(c.inserted);

    expect(await topo.openAmong({ [ADDR.gw4]: [2222, 3389], [ADDR.gw6]: [443] })).toEqual([]);
    await fw.grantService(ADDR.client4, app('ssh'), 60);
    await fw.grantService(ADDR.client4, app('rdp'), 60);
    await fw.grantService(ADDR.client6, app('web6'), 60);
    await fw.grantStep2(ADDR.client6, 60);
    await fw.grantService(ADDR.client4, app('openvpn'), 60);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 8443)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 443)).toBe('open');
    expect(topo.udp(ADDR.gw4, 1194)).toBe('reply');
    // Not granted: this address for this port, or another port; and the host's own rules are
    // unchanged for everything knock-port does not grant.
    expect(await topo.openAmong({ [ADDR.gw6]: [2222], [ADDR.gw4]: [443, 22, 2223] })).toEqual([]);
    expect(fromLan(22)).toBe('open');
  });

  it.skipIf(c.unavailable !== undefined)('a reload of the host firewall drops granted connections until the self-heal puts the accept back', async () => {
    c.apply(topo.gw, state);
    await fw.ensureInstalled!('nflog');
    expectProblems(fw.hostFirewall().problems);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    expect(topo.tcp(ADDR.gw4, 3389)).toBe('open');
    expect(topo.tcp(ADDR.gw6, 2222)).not.toBe('open');
    // Nothing is inserted twice.
    await fw.ensureInstalled!('nflog');
    expect(fw.hostFirewall().inserted).toEqual([]);
  });

  it.skipIf(c.unavailable !== undefined)('uninstall takes its rules out of the host chains and leaves them otherwise as they were', async () => {
    await fw.uninstall();
    const ruleset = topo.gw.exec('nft', ['list', 'ruleset']) + topo.gw.tryExec('iptables-legacy-save').out + topo.gw.tryExec('ip6tables-legacy-save').out;
    expect(ruleset).not.toContain('knock-port');
    expect(ruleset.toLowerCase()).not.toContain('knockport');
    expect(topo.tcp(ADDR.gw4, 2222)).not.toBe('open');
    expect(fromLan(22)).toBe('open');
  });
});

describe.skipIf(skip)('host firewall: report mode', () => {
  let topo: Topology;
  let fw: FirewallBackend;

  beforeAll(async () => {
    topo = Topology.create('hfr');
    await topo.startListeners();
    topo.gw.exec('nft', ['-f', '-'], NFT_HOST);
    fw = createFirewall(withMode(topo, 'report'), { type: 'nftables', netns: topo.gw.name });
  });
  afterAll(() => topo?.destroy());

  it('changes nothing in the host ruleset, says which chain drops granted connections and what to add', async () => {
    const before = topo.gw.exec('nft', ['list', 'table', 'inet', 'filter']);
    await fw.install('nflog');
    expect(topo.gw.exec('nft', ['list', 'table', 'inet', 'filter'])).toBe(before);
    const { problems, inserted } = fw.hostFirewall();
    expect(inserted).toEqual([]);
    expect(problems.join('\n')).toContain(
      "nftables chain inet filter input (hook input, policy drop) can drop connections knock-port grants: add at its top 'ct mark & 0x10000000 == 0x10000000 accept'",
    );
    expect(problems.join('\n')).toContain('inet filter forward');
    // What the report warns about: the grant is in knock-port's set, the host drops it.
    await fw.grantService(
      ADDR.client4,
      topo.config.apps.find((a) => a.name === 'ssh')!,
      60,
    );
    expect(topo.tcp(ADDR.gw4, 2222)).not.toBe('open');
    // The operator adds the rule the report gives: the grant passes, the problem is gone.
    for (const chain of ['input', 'forward', 'output'])
      topo.gw.exec('nft', ['insert', 'rule', 'inet', 'filter', chain, 'ct', 'mark', '&', '0x10000000', '==', '0x10000000', 'accept']);
    topo.gw.exec('nft', ['insert', 'rule', 'inet', 'filter', 'output', 'meta', 'mark', '0x00004b50', 'tcp', 'sport', '80', 'accept']);
    expect(topo.tcp(ADDR.gw4, 2222)).toBe('open');
    await fw.ensureInstalled!('nflog');
    expect(fw.hostFirewall().problems).toEqual([]);
  });
});

/** The real daemon behind a hardened nftables ruleset (output policy drop too): a knock with curl, end to end. */
describe.skipIf(skip).each(['insert', 'report'] as const)('host firewall: the daemon behind a drop-policy nftables ruleset (host_firewall: %s)', (mode) => {
  const STEP1 = '/knock-host-fw-51c2e0';
  const STEP2 = '/step2-host-fw-9ad4f7';
  let sandbox: Sandbox;
  let daemon: Daemon;
  const health = () => sandbox.gw.tryExec(process.execPath, [CLI, 'health', '--socket', join(sandbox.dir, 'control.sock')]);

  beforeAll(async () => {
    sandbox = createSandbox(`hd${mode.slice(0, 1)}`);
    await startServices(sandbox.gw, { tcp: { 8080: 'hello\n' } });
    sandbox.gw.exec('nft', ['-f', '-'], nftablesHostRuleset(IF.gwLan));
    const config = writeFile(
      sandbox,
      'config.yaml',
      `${globalSection(sandbox, { http_post_path: STEP1, https_post_path: STEP2, firewall_type: 'nftables', capture: 'nflog', host_firewall: mode })}svc:
  port: 8080
  access_key_http: [host-fw-http-key-0123456789]
  access_key_https: [host-fw-https-key-0123456789]
  destination: local
  duration: 60
  step2_https_duration: 30
`,
    );
    daemon = startDaemon(sandbox, ['-c', config, '--cert', sandbox.cert, '--key', sandbox.key]);
    if (!(await daemon.waitForLog(/knock-port ready/))) throw new Error(`daemon did not start:\n${daemon.output.join('\n')}`);
  });
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  const knock = (gw: string) => {
    const host = gw.includes(':') ? `[${gw}]` : gw;
    expect(curl(sandbox.client, ['-d', 'app=svc&access_key=host-fw-http-key-0123456789', `http://${host}${STEP1}`], 1).status).toBe('000');
    return curl(sandbox.client, ['-k', '-d', 'app=svc&access_key=host-fw-https-key-0123456789', `https://${host}${STEP2}`], 3);
  };

  if (mode === 'insert') {
    it('says where it put its accept rule, and a knock opens the service through the host ruleset, IPv4 and IPv6', async () => {
      expect(daemon.output.join('\n')).toContain(
        'host firewall: accept rule for granted connections put at the top of nftables chain inet filter input (hook input, policy drop)',
      );
      expect(tcpOpen(sandbox.client, ADDR.gwWan4, 8080, 800)).toBe(false);
      for (const gw of [ADDR.gwWan4, ADDR.gwWan6]) {
        expect(knock(gw)).toEqual({ status: '200', body: 'OK\n' });
        expect(tcpOpen(sandbox.client, gw, 8080, 1000)).toBe(true);
      }
      expect(health().ok).toBe(true);
    });

    it('a host firewall reload that flushes the whole ruleset is healed: gate, accept rule and live grants come back', async () => {
      sandbox.gw.exec('nft', ['-f', '-'], `flush ruleset\n${nftablesHostRuleset(IF.gwLan)}`);
      expect(tcpOpen(sandbox.client, ADDR.gwWan4, 8080, 800)).toBe(false);
      expect(await waitFor(() => tcpOpen(sandbox.client, ADDR.gwWan4, 8080, 800), 15_000, 500)).toBe(true);
      expect(await daemon.waitForLog(/accept rule for granted connections was missing/)).toBe(true);
      expect(tcpOpen(sandbox.client, ADDR.gwWan6, 8080, 800)).toBe(true);
      expect(health().ok).toBe(true);
    });
  } else {
    it('changes nothing, warns at start and in health, and the granted connection is dropped as it warns', async () => {
      expect(daemon.output.join('\n')).toMatch(
        /host firewall: nftables chain inet filter input \(hook input, policy drop\) can drop connections knock-port grants/,
      );
      const r = health();
      expect(r.ok).toBe(false);
      expect(r.err).toContain('host firewall: nftables chain inet filter input');
      expect(sandbox.gw.exec('nft', ['list', 'table', 'inet', 'filter'])).not.toContain('knock-port');
      // Step 1 reaches knock-port's gate before the host's chain; step 2 is dropped by the host.
      expect(knock(ADDR.gwWan4).status).toBe('000');
    });
  }
});
