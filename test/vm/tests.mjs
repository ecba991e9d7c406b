/**
 * The kernel test files `npm run test:vm` runs by default inside each of Debian's stock kernels.
 * Only what the host kernel cannot run belongs here (see docs/testing.md, "The VM tier"): rows
 * that need the nft `queue` expression (nftables + NFQUEUE, `capture: auto` resolving to it) and
 * behaviour that depends on the kernel's version. Inside, each file runs only its rows marked
 * `vm` (rowsForThisRun in test/helpers/vm.ts). `npm run test:vm -- FILE...` runs any other selection.
 */
export const VM_TESTS = [
  // nftables + NFQUEUE rows, and which capture `auto` picks.
  'test/kernel/daemon/e2e.test.ts',
  // nftables + NFQUEUE, and the VyOS layout with `capture: auto` (NFQUEUE there).
  'test/kernel/scenarios/scenarios.test.ts',
  // nftables + NFQUEUE: the step-1 prefilter in front of the queue.
  'test/kernel/firewall/prefilter.test.ts',
  // nftables + NFQUEUE with queue fanout over workers.
  'test/kernel/step1/fanout.test.ts',
  // nftables + NFQUEUE behind a drop-policy nftables host; steady and flush-heal.
  'test/kernel/firewall/admission.test.ts',
  // nftables + NFQUEUE in invisible mode (step1_handshake: none, the knock in a Fast Open SYN).
  'test/kernel/step1/invisible.test.ts',
  // Table flags owner, persist (Linux 6.9+): owned on 6.12, the fallback on 6.1.
  'test/kernel/firewall/table-owner.test.ts',
];
