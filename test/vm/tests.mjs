/**
 * The kernel test files `npm run test:vm` runs by default inside Debian's stock kernel.
 * Add a file here when it covers a path the host kernel cannot run (see docs/testing.md, "The VM tier");
 * `npm run test:vm -- FILE...` runs any other selection.
 */
export const VM_TESTS = [
  'test/kernel/daemon/e2e.test.ts',
  'test/kernel/scenarios/scenarios.test.ts',
  'test/kernel/firewall/prefilter.test.ts',
  'test/kernel/step1/fanout.test.ts',
  // nftables + NFQUEUE rows of the admission matrix only (host nftables-drop; steady and flush-heal).
  'test/kernel/firewall/admission.test.ts',
];
