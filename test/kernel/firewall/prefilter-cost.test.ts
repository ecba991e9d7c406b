/**
 * What a full-speed junk flood costs the daemon when the step-1 prefilter drops it in the
 * kernel: no packet, and less CPU than inspecting the same flood would, measured against a
 * flood the daemon must inspect in the same run. It measures CPU, so it runs alone
 * (SERIAL_KERNEL_FILES); what reaches the daemon, packet by packet, is counted in
 * prefilter.test.ts. The host's backends only: CPU figures under emulation (the stock-kernel VM's
 * nftables + NFQUEUE row) would measure the emulator. Namespaces are made by the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, kernelSkipReason } from '../../helpers/netns.js';
import { ADDR, writeFile } from '../../helpers/sandbox.js';
import { scaled } from '../../helpers/vm.js';
import { execIn } from '../attacks/probes.js';
import { BACKENDS, PREFILTER_TOOLS, STEP1_PATH, cpuSeconds, startPrefilterGateway, type PrefilterGateway } from './prefilter-rig.js';

const FILE = 'test/kernel/firewall/prefilter-cost.test.ts';
const skip = announceSkip(FILE, kernelSkipReason(PREFILTER_TOOLS));

/** The full-speed junk flood, bounded in time. */
const FLOOD_SECONDS = 2;

/**
 * The junk flood may cost the daemon at most this share of what a flood it must inspect costs,
 * per packet, in the same run. Inspecting the junk would cost about as much (the same capture
 * and cookie check); half leaves room for a busy machine charging interrupt work to the daemon.
 */
const MAX_SHARE_OF_INSPECTION = 0.5;

describe.skipIf(skip).each(BACKENDS.filter((backend) => !backend.vm))('step-1 prefilter, daemon CPU: $name', (backend) => {
  let gate: PrefilterGateway;

  beforeAll(async () => {
    gate = await startPrefilterGateway(backend);
  });

  afterAll(async () => {
    await gate?.stop();
  });

  /** A FLOOD_SECONDS hping3 flood of ACK+PSH segments (random sources) carrying `payload`: packets sent and daemon CPU seconds used. */
  const flood = async (payload: Buffer): Promise<{ sent: number; cpu: number }> => {
    const file = writeFile(gate.sandbox, 'flood.bin', payload.toString('latin1'));
    const pid = gate.daemon.proc.pid!;
    const cpuBefore = cpuSeconds(pid);
    const hping = await execIn(
      gate.sandbox.client,
      'timeout',
      [
        '-s',
        'INT',
        String(FLOOD_SECONDS),
        'hping3',
        '--flood',
        '-q',
        '-n',
        '-A',
        '-P',
        '-d',
        String(payload.length),
        '-E',
        file,
        '-p',
        '80',
        '--rand-source',
        ADDR.gwWan4,
      ],
      (FLOOD_SECONDS + 5) * 1000,
    );
    // Let the daemon finish what its queue still holds before reading its CPU.
    await new Promise((resolve) => setTimeout(resolve, scaled(300)));
    return {
      sent: Number(/(\d+) packets transmitted/.exec(hping.out + hping.err)?.[1] ?? NaN),
      cpu: cpuSeconds(pid) - cpuBefore,
    };
  };
  /** Daemon CPU seconds over `ms` without traffic. */
  const idleCpu = async (ms: number): Promise<number> => {
    const pid = gate.daemon.proc.pid!;
    const cpuBefore = cpuSeconds(pid);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return cpuSeconds(pid) - cpuBefore;
  };

  it(`a ${FLOOD_SECONDS} s junk flood at full speed costs the daemon nothing: no packet, and less CPU than inspecting it would`, async () => {
    // What the daemon spends anyway over a flood's time (timers, self-heal, scrapes) is nobody's
    // packets: measured first, while nothing else runs, and taken off both floods.
    const idle = await idleCpu(FLOOD_SECONDS * 1000 + scaled(300));
    const before = await gate.outcomes();
    const dropsBefore = gate.kernelDrops();
    const junk = await flood(Buffer.alloc(200, 'x'));
    const dropped = gate.kernelDrops() - dropsBefore;
    const after = await gate.outcomes();
    expect(junk.sent).toBeGreaterThan(1000);
    // What the veth's backlog let through ended on the prefilter rule, none in the daemon. How much
    // the backlog lets through depends on the machine (45-90 % of what hping3 wrote, the first flood
    // after a daemon's start the least): a quarter is a flood the comparison below can use.
    expect(dropped).toBeGreaterThan(junk.sent * 0.25);
    expect(after).toEqual(before);

    // The reference, same run and machine: segments that pass the prefilter (the knock's request
    // line) without a cookie, which the daemon must capture, check and judge spoofed.
    const inspect = await flood(Buffer.from(`POST ${STEP1_PATH} HTTP/1.1\r\n${'x'.repeat(200)}`.slice(0, 200), 'latin1'));
    const judged = ((await gate.outcomes()).spoofed ?? 0) - (after.spoofed ?? 0);
    const cpuPerInspected = (inspect.cpu - idle) / judged;
    const junkCpu = junk.cpu - idle;
    console.log(
      `[prefilter] ${backend.name}: junk flood of ${junk.sent} segments in ${FLOOD_SECONDS} s, kernel prefilter dropped ${dropped}, daemon CPU ${junk.cpu.toFixed(3)} s (idle ${idle.toFixed(3)} s); ` +
        `reference flood of ${inspect.sent}, daemon judged ${judged} for ${inspect.cpu.toFixed(3)} s CPU (${(cpuPerInspected * 1e6).toFixed(1)} µs each beyond idle): ` +
        `inspecting the junk would have cost ${(dropped * cpuPerInspected).toFixed(3)} s`,
    );
    expect(judged).toBeGreaterThan(1000);
    expect(junkCpu).toBeLessThan(MAX_SHARE_OF_INSPECTION * dropped * cpuPerInspected);
  });
});
