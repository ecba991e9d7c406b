/**
 * Kernel tests on this machine's kernel or inside the stock-kernel VM (`npm run test:vm`,
 * test/vm/run.mjs). Under emulation everything runs several times slower, so the durations a
 * test configures or waits on (grant durations, step-2 windows, client timeouts, expiry waits)
 * are multiplied by one factor: the same checks then hold in both places. On the host it is 1.
 */
import { it, type TestFunction } from 'vitest';
import { Netns } from '../../src/demo/netns.js';

/** Set by the VM runner: the tests run in Debian's stock kernel under qemu. */
export const IN_VM = process.env.KNOCKPORT_VM === '1';

function parseScale(text: string | undefined): number | undefined {
  const value = Number(text);
  return text !== undefined && Number.isFinite(value) && value >= 1 ? value : undefined;
}

/** How much slower this run is allowed to be than the host (KNOCKPORT_TIME_SCALE; 5 in the VM by default). */
export const TIME_SCALE = parseScale(process.env.KNOCKPORT_TIME_SCALE) ?? (IN_VM ? 5 : 1);

/** A duration in seconds or milliseconds, scaled (for client timeouts, which take fractions). */
export function scaled(amount: number): number {
  return amount * TIME_SCALE;
}

/** Whole seconds, scaled and rounded up: config durations are integers. */
export function scaledSeconds(seconds: number): number {
  return Math.ceil(seconds * TIME_SCALE);
}

/**
 * The rows of a backend matrix this run covers: every row on the host (rows its kernel cannot
 * run skip with a reason); in the VM only rows marked `vm`, since the host covers the others.
 * KNOCKPORT_VM_ALL_ROWS=1 runs every row in the VM too.
 */
export function rowsForThisRun<T extends { vm: boolean }>(rows: readonly T[]): T[] {
  return IN_VM && process.env.KNOCKPORT_VM_ALL_ROWS !== '1' ? rows.filter((row) => row.vm) : [...rows];
}

/**
 * Registers a test that neither how step 1 is captured nor the kernel's version decides (step 2,
 * a revoke, the metrics, a DNAT): every backend row on the host runs it, so the VM tier, which
 * runs only what the host cannot (test/vm/tests.mjs), leaves it out. KNOCKPORT_VM_ALL_ROWS=1
 * registers it in the VM too.
 */
export function itOnHost(name: string, fn: TestFunction, timeoutMs?: number): void {
  if (IN_VM && process.env.KNOCKPORT_VM_ALL_ROWS !== '1') return;
  it(name, fn, timeoutMs);
}

/**
 * `it` when the VM tier needs this test too, `itOnHost` when not: for a test whose one variant
 * (an address family, say) proves what the VM must prove, while the host runs every variant.
 */
export function itInVmWhen(inVm: boolean): (name: string, fn: TestFunction, timeoutMs?: number) => void {
  return inVm ? (name, fn, timeoutMs) => it(name, fn, timeoutMs) : itOnHost;
}

let nftQueueProbe: string | undefined | null = null;

/**
 * Why this kernel cannot run the nft `queue` expression (CONFIG_NFT_QUEUE unset), or undefined
 * when it can. Probed once, in a throwaway namespace (needs root).
 */
export function nftQueueMissing(): string | undefined {
  if (nftQueueProbe !== null) return nftQueueProbe;
  const ns = Netns.create('q');
  try {
    const probe = ns.tryExec('nft', ['-f', '-'], 'table inet probe {\n chain c {\n type filter hook input priority 0;\n tcp dport 80 queue num 0\n }\n}\n');
    nftQueueProbe = probe.ok ? undefined : 'this kernel has no nft `queue` expression (CONFIG_NFT_QUEUE unset); `npm run test:vm` runs this in a stock kernel';
  } finally {
    ns.destroy();
  }
  return nftQueueProbe;
}

/** What `capture: auto` resolves to with the nftables-based backends on this kernel. */
export function autoCapture(): 'nfqueue' | 'nflog' {
  return nftQueueMissing() === undefined ? 'nfqueue' : 'nflog';
}
