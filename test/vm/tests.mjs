/**
 * The kernel test files `npm run test:vm` runs by default inside each of Debian's stock kernels.
 * Only what the host kernel cannot run belongs here (see docs/testing.md, "The VM tier"): rows
 * that need the nft `queue` expression (nftables + NFQUEUE, `capture: auto` resolving to it) and
 * behaviour that depends on the kernel's version. Inside, each file runs only its rows marked
 * `vm` (rowsForThisRun in test/helpers/vm.ts). Rows that only need nft `queue` run on one kernel
 * (the files are shared out so that the two VMs, which run at once, take about as long);
 * version-specific ones on each. `npm run test:vm -- FILE...` runs any selection on both.
 */
export const VM_TESTS = [
  // nftables + NFQUEUE rows, and which capture `auto` picks.
  { file: 'test/kernel/daemon/e2e.test.ts', kernels: ['6.12'] },
  // nftables + NFQUEUE, and the VyOS layout with `capture: auto` (NFQUEUE there).
  { file: 'test/kernel/scenarios/scenarios.test.ts', kernels: ['6.1'] },
  // nftables + NFQUEUE behind a drop-policy nftables host; steady and flush-heal.
  { file: 'test/kernel/firewall/admission.test.ts', kernels: ['6.1'] },
  // nftables + NFQUEUE: the step-1 prefilter in front of the queue.
  { file: 'test/kernel/firewall/prefilter.test.ts', kernels: ['6.12'] },
  // nftables + NFQUEUE with queue fanout over workers.
  { file: 'test/kernel/step1/fanout.test.ts', kernels: ['6.12'] },
  // nftables + NFQUEUE in invisible mode (step1_handshake: none, the knock in a Fast Open SYN).
  { file: 'test/kernel/step1/invisible.test.ts', kernels: ['6.12'] },
  // Table flags owner, persist (Linux 6.9+): owned on 6.12, the fallback on 6.1.
  { file: 'test/kernel/firewall/table-owner.test.ts', kernels: ['6.1', '6.12'] },
  // The step-1 XDP front end to end in native mode on Debian 12's kernel: curl knocks, junk, kill -9.
  { file: 'test/kernel/step1/xdp.test.ts', kernels: ['6.1'] },
  // The step-1 XDP program loads and answers with the daemon's SYN-ACK (BPF_PROG_TEST_RUN) on each.
  { file: 'test/kernel/step1/xdp-program.test.ts', kernels: ['6.1', '6.12'] },
];

/** The files one kernel series runs by default. */
export function vmTestsFor(series) {
  return VM_TESTS.filter((t) => t.kernels.includes(series)).map((t) => t.file);
}
