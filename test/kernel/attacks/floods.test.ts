/**
 * Floods on the step-1 port of the attacked gateway (gateway.ts), IPv4 with hping3 from random
 * sources: SYNs, junk data (dropped by the kernel's prefilter) and spoofed segments that begin
 * with the knock (refused on their cookie). Nothing may leave state behind (no conntrack entry,
 * no socket), memory stays bounded, and a valid knock works during each flood and after.
 * Run alone (the serial kernel group): the figures are about load.
 * No IPv6 floods here: hping3 sends IPv4 only; the IPv6 step-1 budget is flooded in budgets.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { prefilterDrops } from '../../helpers/prefilter.js';
import { ADDR, writeFile, type Daemon, type Sandbox } from '../../helpers/sandbox.js';
import { ALICE, BACKENDS, PORTS, STEP1_PATH, STEP2_PATH, aliceBody, attackerPool, knockRequest, metricValue, scrapeMetrics, startGateway } from './gateway.js';
import { curlFrom, execIn } from './probes.js';

const skip = announceSkip('attacks/floods', kernelSkipReason(['ip', 'nft', 'iptables', 'curl', 'openssl', 'ss', 'hping3', 'conntrack']));

/** How long each flood lasts. */
const FLOOD_SECONDS = 4;

describe.skipIf(skip).each(BACKENDS)('floods: $name', (backend) => {
  let sandbox: Sandbox;
  let daemon: Daemon;
  const fresh = attackerPool();
  const knock = (from: string, gw: string, body: string, timeoutSeconds = 1) =>
    knockStep1({ client: sandbox.client, daemon, from, url: `http://${gw}${STEP1_PATH}`, body, timeoutSeconds });
  const step2 = (from: string, gw: string, body: string) => curlFrom(sandbox.client, from, ['-k', '--data-binary', body, `https://${gw}${STEP2_PATH}`], 3);
  /** Step-1 data segments the kernel's prefilter dropped so far. */
  const kernelDrops = () => prefilterDrops(sandbox.gw, backend.tool);
  const step1Packets = async () => {
    const text = await scrapeMetrics(sandbox);
    const outcome = (o: string) => metricValue(text, `knockport_step1_packets_total{outcome="${o}",reason=""}`);
    const drops = metricValue(text, 'knockport_capture_drops_total{source="kernel"}') + metricValue(text, 'knockport_capture_drops_total{source="enobufs"}');
    return { syn: outcome('syn'), spoofed: outcome('spoofed'), drops };
  };

  beforeAll(async () => {
    ({ sandbox, daemon } = await startGateway(backend));
  });

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    sandbox?.destroy();
  });

  it('IPv4: SYN, junk-data and spoofed-knock floods on the step-1 port leave no state, bounded memory, and a knock still works', async () => {
    const { client, gw } = sandbox;
    const pid = daemon.proc.pid!;
    const rssBefore = rssKb(pid);
    const before = await step1Packets();
    // Spoofed segments that do begin with the knock prefix (a whole valid request, no handshake): these pass the kernel's prefilter.
    const knockBytes = knockRequest(ADDR.gwWan4, aliceBody);
    const knockFile = writeFile(sandbox, 'spoofed-knock.bin', knockBytes.toString('latin1'));
    const FLAGS = {
      syn: ['-S'],
      // 200 bytes of hping3's filler: not the prefix, so dropped in the kernel before the daemon.
      'junk-data': ['-A', '-P', '-d', '200'],
      'spoofed-knock': ['-A', '-P', '-d', String(knockBytes.length), '-E', knockFile],
    } as const;
    const figures: Record<string, unknown> = {};
    const seen: Record<string, { sent: number; kernelDrops: number; syn: number; spoofed: number }> = {};
    for (const kind of ['syn', 'junk-data', 'spoofed-knock'] as const) {
      const kindBefore = { packets: await step1Packets(), drops: kernelDrops() };
      const flood = execIn(
        client,
        'timeout',
        ['-s', 'INT', String(FLOOD_SECONDS), 'hping3', '--flood', '-q', '-n', ...FLAGS[kind], '-p', String(PORTS.step1), '--rand-source', ADDR.gwWan4],
        (FLOOD_SECONDS + 5) * 1000,
      );
      await sleep(1_000);
      // A valid knock during the flood: the client retries as a user would (curl's own retransmissions, then knocks again).
      const from = fresh('IPv4');
      let attempts = 0;
      let status = '000';
      while (status !== '200' && attempts < 3) {
        attempts++;
        // 3 s, not 1: under flood the first SYN may be lost, and curl must live to retransmit it (at 1 s).
        await knock(from, ADDR.gwWan4, aliceBody, 3);
        status = (await curlFrom(client, from, ['-k', '--data-binary', `app=tcpsvc&access_key=${ALICE.https}`, `https://${ADDR.gwWan4}${STEP2_PATH}`], 1))
          .status;
      }
      const during = {
        conntrack80: conntrackEntries(gw, PORTS.step1),
        sockets80: gw.exec('ss', ['-Htan', `sport = :${PORTS.step1}`]).trim(),
        rssKb: rssKb(pid),
      };
      const done = await flood;
      const sent = Number(/(\d+) packets transmitted/.exec(done.out + done.err)?.[1] ?? NaN);
      // Segments hping3 queued before it stopped are still being counted: wait until the counters hold still.
      await settled(kernelDrops);
      const kindAfter = { packets: await step1Packets(), drops: kernelDrops() };
      seen[kind] = {
        sent,
        kernelDrops: kindAfter.drops - kindBefore.drops,
        syn: kindAfter.packets.syn - kindBefore.packets.syn,
        spoofed: kindAfter.packets.spoofed - kindBefore.packets.spoofed,
      };
      figures[kind] = { ...seen[kind], knockAttempts: attempts, ...during, sockets80: during.sockets80.split('\n').filter(Boolean).length };
      expect(status, `valid knock during the ${kind} flood`).toBe('200');
      expect(during.conntrack80).toBe(0);
      expect(during.sockets80).toBe('');
    }
    // conntrack is live (the HTTPS connections above are tracked) and still holds nothing for the step-1 port.
    expect(conntrackEntries(gw, PORTS.https)).toBeGreaterThan(0);
    expect(conntrackEntries(gw, PORTS.step1)).toBe(0);
    const rssAfter = rssKb(pid);
    const after = await step1Packets();
    figures.rssKb = { before: rssBefore, after: rssAfter };
    figures.inspected = { syn: after.syn - before.syn, spoofed: after.spoofed - before.spoofed, captureDrops: after.drops - before.drops };
    console.log(`[attacks] ${backend.name} flood figures (${FLOOD_SECONDS} s each): ${JSON.stringify(figures)}`);
    expect(rssAfter).toBeLessThan(150 * 1024);
    // Once the flood is over, a knock works at the first attempt.
    const afterFlood = fresh('IPv4');
    await knock(afterFlood, ADDR.gwWan4, aliceBody);
    expect((await step2(afterFlood, ADDR.gwWan4, `app=tcpsvc&access_key=${ALICE.https}`)).status, 'valid knock after the floods').toBe('200');
    const { syn, 'junk-data': junk, 'spoofed-knock': spoofedKnock } = seen as Record<keyof typeof FLAGS, (typeof seen)[string]>;
    // SYNs reach the daemon (it answers them).
    expect(syn.syn).toBeGreaterThan(0);
    // Junk data ends on the kernel's prefilter rule (most of what the veth's backlog let through), none of it in the daemon.
    expect(junk.sent).toBeGreaterThan(1000);
    expect(junk.kernelDrops).toBeGreaterThan(junk.sent * 0.5);
    expect(junk.spoofed).toBe(0);
    // Spoofed segments with the knock prefix pass the prefilter and the daemon refuses them on their cookie.
    expect(spoofedKnock.sent).toBeGreaterThan(1000);
    expect(spoofedKnock.kernelDrops).toBe(0);
    expect(spoofedKnock.spoofed).toBeGreaterThan(0);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (at most 3 s) until `read` returns the same value twice 200 ms apart. */
async function settled(read: () => number): Promise<void> {
  let last = read();
  for (let i = 0; i < 15; i++) {
    await sleep(200);
    const now = read();
    if (now === last) return;
    last = now;
  }
}

function rssKb(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

/** Tracked connections to `dport` in the namespace (conntrack prints one per line on stdout). */
function conntrackEntries(ns: Sandbox['gw'], dport: number): number {
  const r = ns.tryExec('conntrack', ['-L', '-p', 'tcp', '--dport', String(dport)]);
  return r.out.split('\n').filter((l) => l.includes(`dport=${dport}`)).length;
}
