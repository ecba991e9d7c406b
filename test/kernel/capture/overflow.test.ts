/**
 * A capture socket that overflows keeps capturing: a flood that fills the netlink receive
 * buffer (ENOBUFS) must not stop NFLOG or NFQUEUE for good. The child holds its first batch
 * while a burst overflows a deliberately small buffer; packets sent afterwards must still
 * reach JS, and the overrun must be counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, destroyAll, kernelSkipReason, Netns, requiredInCi, wire } from '../../helpers/netns.js';
import { CaptureChild, prepareBuild, udpBurst, type ChildEvent } from './child.js';

const skipReason = kernelSkipReason(['ip', 'nft', 'iptables', 'node']) ?? requiredInCi(prepareBuild());
const skip = announceSkip('test/kernel/capture/overflow.test.ts', skipReason);

const SERVER = '10.233.0.1';
/** The child blocks its event loop this long on the first batch. */
const HOLD_MS = 1500;
/** Bytes asked for the receive buffer: room for a few dozen small packets. */
const SMALL_BUFFER = 16 * 1024;
const BURST = 600;

const hasDport = (port: number) => (e: ChildEvent) => e.event === 'batch' && (e.dports as number[]).includes(port);

describe.skipIf(skip)('capture after a receive-buffer overflow', () => {
  let server: Netns | undefined;
  let client: Netns | undefined;
  const children: CaptureChild[] = [];

  beforeAll(() => {
    server = Netns.create('ovf-s');
    client = Netns.create('ovf-c');
    wire(server, client, { ifA: 'srv0', ifB: 'cli0', a4: SERVER, b4: '10.233.0.2' });
    server.exec('nft', ['-f', '-'], 'table inet kpovf {\n chain input { type filter hook input priority 0; udp dport { 7010, 7011 } log group 6 drop; }\n}\n');
    server.exec('iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '7020:7021', '-j', 'NFQUEUE', '--queue-num', '7']);
  });

  afterAll(() => {
    children.forEach((child) => child.kill());
    destroyAll([server, client]);
  });

  /** Overflows the child's socket on `floodPort`, then checks packets to `afterPort` still arrive. */
  async function overflowThenReceive(mode: string, number: string, floodPort: number, afterPort: number): Promise<ChildEvent> {
    const child = CaptureChild.start(server!, mode, number, String(HOLD_MS), String(SMALL_BUFFER));
    children.push(child);
    await child.next('ready');
    udpBurst(client!, SERVER, floodPort, 1);
    await child.next('batch'); // the child now holds its event loop
    const started = Date.now();
    udpBurst(client!, SERVER, floodPort, BURST);
    expect(Date.now() - started).toBeLessThan(HOLD_MS); // the burst landed while the child could not read
    await new Promise((r) => setTimeout(r, HOLD_MS - (Date.now() - started) + 100));

    for (let attempt = 0; attempt < 10 && !child.events.some(hasDport(afterPort)); attempt++) {
      udpBurst(client!, SERVER, afterPort, 5);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(child.events.some(hasDport(afterPort))).toBe(true);
    return child.stop();
  }

  it('NFLOG keeps delivering after ENOBUFS, and counts it', async () => {
    const done = await overflowThenReceive('nflog', '6', 7010, 7011);
    const stats = done.stats as Record<string, number>;
    expect(stats.enobufs).toBeGreaterThan(0);
    expect(stats.pollRestarts).toBeGreaterThan(0);
    expect(stats.received).toBeLessThan(BURST + 1 + 50); // the overflow really dropped packets
  });

  it('NFQUEUE keeps delivering after ENOBUFS, and counts it', async () => {
    const done = await overflowThenReceive('nfqueue', '7', 7020, 7021);
    const stats = done.stats as Record<string, number>;
    expect(stats.enobufs).toBeGreaterThan(0);
    expect(stats.pollRestarts).toBeGreaterThan(0);
    expect(stats.kernelErrors).toBe(0);
    expect(done.kernel).toMatchObject({ queue: 7, waiting: 0 });
    expect((done.kernel as Record<string, number>).userDropped).toBeGreaterThan(0); // the kernel could not deliver them
    expect(stats.verdicts).toBe(stats.received);
  });
});
