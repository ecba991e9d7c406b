/**
 * The in-kernel step-1 prefilter with the real daemon, on every backend this kernel runs
 * (nftables + NFLOG, iptables-nft + NFQUEUE and NFLOG, iptables-legacy + NFQUEUE, the VyOS
 * layout; nftables + NFQUEUE in the stock-kernel VM). What an operator checks: a flood of
 * junk and wrong-path data segments (with and without a real handshake, IPv4 and IPv6) never
 * reaches the daemon (its step-1 counters stay flat) while the firewall's own prefilter
 * counter rises by as many; SYNs still get their cookie SYN-ACK; a correct knock still opens
 * the HTTPS port. With `step1_handshake: none`, SYNs carrying junk are dropped likewise and a
 * SYN carrying the knock still opens it. What a full-speed flood costs the daemon's CPU is
 * measured apart, alone on the machine (prefilter-cost.test.ts). Namespaces are made by the
 * test; traffic stays inside them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { knockStep1 } from '../../helpers/knock.js';
import { announceSkip, kernelSkipReason, leftToTheVm, waitFor } from '../../helpers/netns.js';
import { injectSegments } from '../../helpers/raw-inject.js';
import { ADDR, IF, writeFile } from '../../helpers/sandbox.js';
import { rowsForThisRun, scaled } from '../../helpers/vm.js';
import { bracket, execIn, tcpConnects } from '../attacks/probes.js';
import { BACKENDS, JUNK, KEYS, PREFILTER_TOOLS, STEP1_PATH, startPrefilterGateway, type PrefilterGateway } from './prefilter-rig.js';

const FILE = 'test/kernel/firewall/prefilter.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(PREFILTER_TOOLS));

/** hping3 segments per flood: bounded, and more than the per-source budget would let through. */
const FLOOD = 200;

const ROWS = rowsForThisRun(BACKENDS).filter((backend) => !leftToTheVm(FILE, backend.name, skip ? undefined : backend.unavailable(skip)));

describe.skipIf(skip).each(ROWS)('step-1 prefilter in the kernel: $name', (backend) => {
  let gate: PrefilterGateway;
  const outcomes = () => gate.outcomes();
  const kernelDrops = () => gate.kernelDrops();

  beforeAll(async () => {
    gate = await startPrefilterGateway(backend);
  });

  afterAll(async () => {
    await gate?.stop();
  });

  it('a junk and wrong-path flood never reaches the daemon; the prefilter counter rises by as many', async () => {
    const before = await outcomes();
    const dropsBefore = kernelDrops();
    // Without a handshake: ACK+PSH segments with 64 bytes of junk, at a rate far over the per-source budget.
    const hping = await execIn(
      gate.sandbox.client,
      'hping3',
      ['-q', '-c', String(FLOOD), '-i', 'u2000', '-A', '-P', '-d', '64', '-p', '80', ADDR.gwWan4],
      30_000,
    );
    expect(hping.out + hping.err).toMatch(new RegExp(`${FLOOD} packets transmitted`));
    let sent = FLOOD;
    let synAcks = 0;
    for (const [src, dst] of [
      [ADDR.client4, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const) {
      // Spoofed: no handshake, random acknowledgement.
      sent += injectSegments(gate.sandbox.client, { iface: IF.clientWan, src, dst, dport: 80, segments: JUNK }).sent;
      // A real handshake (the SYN reaches the daemon and is answered), then wrong payloads with a valid cookie.
      const real = injectSegments(gate.sandbox.client, { iface: IF.clientWan, src, dst, dport: 80, handshake: true, segments: JUNK });
      if (real.synAck) synAcks++;
      sent += real.sent;
    }
    expect(sent).toBe(FLOOD + 4 * JUNK.length);
    // SYNs still reach the daemon and get their cookie SYN-ACK.
    expect(synAcks).toBe(2);
    expect(await waitFor(() => kernelDrops() - dropsBefore >= sent, scaled(3000), 100)).toBe(true);
    const after = await outcomes();
    console.log(
      `[prefilter] ${backend.name}: ${sent} junk data segments sent, kernel prefilter dropped ${kernelDrops() - dropsBefore}, daemon outcomes before ${JSON.stringify(before)} after ${JSON.stringify(after)}`,
    );
    expect(kernelDrops() - dropsBefore).toBe(sent);
    // Only the two handshakes' SYNs reached the daemon.
    const count = (counts: Record<string, number>, outcome: string) => counts[outcome] ?? 0;
    expect(count(after, 'syn') - count(before, 'syn')).toBe(2);
    for (const outcome of ['ignored', 'spoofed', 'granted', 'rejected', 'retransmission']) expect(count(after, outcome), outcome).toBe(count(before, outcome));
  });

  it('a correct knock still passes and opens the HTTPS port, IPv4 and IPv6', async () => {
    const families = [
      [ADDR.client4, ADDR.gwWan4],
      [ADDR.client6, ADDR.gwWan6],
    ] as const;
    expect(await Promise.all(families.map(([from, gw]) => tcpConnects(gate.sandbox.client, from, gw, 443, scaled(800))))).toEqual([false, false]);
    const body = `app=svc&access_key=${KEYS.http}`;
    const knockThenConnect = async ([from, gw]: (typeof families)[number]) => ({
      knocked: await knockStep1({
        client: gate.sandbox.client,
        daemon: gate.daemon,
        url: `http://${bracket(gw)}${STEP1_PATH}`,
        body,
        from,
        timeoutSeconds: scaled(3),
      }),
      opened: await waitFor(async () => tcpConnects(gate.sandbox.client, from, gw, 443, scaled(800)), scaled(4000), 200),
    });
    expect(await Promise.all(families.map(knockThenConnect))).toEqual(families.map(() => ({ knocked: true, opened: true })));
    expect((await outcomes()).granted).toBe(2);
  });
});

/** The step-1 request, whole, as a client without a handshake sends it inside its SYN. */
function knockInSyn(body: string): Buffer {
  return Buffer.from(
    `POST ${STEP1_PATH} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    'latin1',
  );
}

/** The rows without a handshake: the nftables captures and one iptables row. */
const INVISIBLE = rowsForThisRun(BACKENDS)
  .filter((backend) => ['nftables + NFLOG', 'nftables + NFQUEUE', 'iptables-nft + NFQUEUE'].includes(backend.name))
  .filter((backend) => !leftToTheVm(FILE, `handshake none, ${backend.name}`, skip ? undefined : backend.unavailable(skip)));

describe.skipIf(skip).each(INVISIBLE)('step-1 prefilter without a handshake (data in the SYN): $name', (backend) => {
  let gate: PrefilterGateway;
  const scrape = () => gate.scrape();
  const granted = async () => Number(/^knockport_step1_packets_total\{outcome="granted",reason=""\} (\d+)$/m.exec(await scrape())?.[1] ?? 0);
  const judged = async () =>
    [...(await scrape()).matchAll(/^knockport_step1_packets_total\{outcome="[a-z]+",reason=""\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  /** One SYN from the client carrying `payload` (hping3 reads it from a file). */
  const synWith = async (name: string, payload: Buffer, count = 1) => {
    const file = writeFile(gate.sandbox, name, payload.toString('latin1'));
    const r = await execIn(
      gate.sandbox.client,
      'hping3',
      ['-q', '-c', String(count), '-i', 'u5000', '-S', '-d', String(payload.length), '-E', file, '-p', '80', ADDR.gwWan4],
      30_000,
    );
    expect(r.out + r.err).toMatch(new RegExp(`${count} packets transmitted`));
  };

  beforeAll(async () => {
    // Its own namespaces beside the handshake rows' (labels are unique per sandbox).
    gate = await startPrefilterGateway(backend, `${backend.label}n`, 'none');
  });

  afterAll(async () => {
    await gate?.stop();
  });

  it('SYNs carrying junk or a wrong path are dropped in the kernel; a SYN carrying the knock opens HTTPS', async () => {
    const before = await judged();
    await synWith('junk.bin', Buffer.from(`POST ${STEP1_PATH}x HTTP/1.1\r\n\r\n`, 'latin1'), 20);
    await synWith('get.bin', Buffer.from(`GET ${STEP1_PATH} HTTP/1.1\r\n\r\n`, 'latin1'), 20);
    // Give any packet that slipped through the time to be judged.
    await new Promise((resolve) => setTimeout(resolve, scaled(300)));
    expect(await judged()).toBe(before);
    expect(await tcpConnects(gate.sandbox.client, ADDR.client4, ADDR.gwWan4, 443, scaled(800))).toBe(false);
    await synWith('knock.bin', knockInSyn(`app=svc&access_key=${KEYS.http}`));
    expect(await waitFor(async () => (await granted()) === 1, scaled(3000), 100)).toBe(true);
    expect(await waitFor(async () => tcpConnects(gate.sandbox.client, ADDR.client4, ADDR.gwWan4, 443, scaled(800)), scaled(4000), 200)).toBe(true);
  });
});
