import { defineConfig } from 'vitest/config';
import { IN_VM, TIME_SCALE } from './test/helpers/vm.js';

/**
 * Kernel test files that measure CPU, rates or timing (floods, per-CPU fanout, queue overflow,
 * revoke latency): they run one at a time, after the others, so that no other test competes
 * with what they measure. Every other kernel file builds its own namespaces and daemon and
 * mostly waits on timeouts and windows, so those run side by side.
 */
export const SERIAL_KERNEL_FILES = [
  'test/kernel/attacks/floods.test.ts',
  'test/kernel/attacks/budgets.test.ts',
  'test/kernel/firewall/prefilter-cost.test.ts',
  'test/kernel/firewall/step1-budget-oracle.test.ts',
  'test/kernel/step1/fanout.test.ts',
  'test/kernel/capture/overflow.test.ts',
  'test/kernel/daemon/revoke-flows.test.ts',
];

/** How many kernel files run at once in the parallel group (KNOCKPORT_KERNEL_WORKERS; 3 by default, 1 in the VM). */
const KERNEL_WORKERS = Number(process.env.KNOCKPORT_KERNEL_WORKERS ?? (IN_VM ? 1 : 3));

const kernelTimeouts = { testTimeout: 120_000 * TIME_SCALE, hookTimeout: 120_000 * TIME_SCALE };

// Three projects, run as groups one after another (sequence.groupOrder): the pure unit tests in
// parallel; the kernel tests that only wait, several files at a time; then the kernel tests that
// measure, one file at a time. In the stock-kernel VM (`npm run test:vm`) everything is slower
// by the tests' time scale, and the repository is read-only there, so vite's cache goes to /tmp.
export default defineConfig({
  ...(IN_VM ? { cacheDir: '/tmp/knock-port-vite-cache' } : {}),
  test: {
    // The count of tests run, and in CI a failure for any kernel test skipped (test/helpers/run-summary.ts).
    reporters: ['default', './test/helpers/run-summary.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 60_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          exclude: SERIAL_KERNEL_FILES,
          maxWorkers: KERNEL_WORKERS,
          ...kernelTimeouts,
          globalSetup: ['./test/helpers/fresh-build.ts'],
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'kernel-serial',
          include: SERIAL_KERNEL_FILES,
          fileParallelism: false,
          ...kernelTimeouts,
          globalSetup: ['./test/helpers/fresh-build.ts'],
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
