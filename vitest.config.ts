import { defineConfig } from 'vitest/config';

// Two projects: pure unit tests run in parallel; kernel tests (network namespaces,
// real nftables/iptables, real daemons) run one file at a time so they never
// compete for the queue numbers, CPU and timing they measure.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
