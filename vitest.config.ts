import { defineConfig } from 'vitest/config';
import { IN_VM, TIME_SCALE } from './test/helpers/vm.js';

// Two projects: pure unit tests run in parallel; kernel tests (network namespaces,
// real nftables/iptables, real daemons) run one file at a time so they never
// compete for the queue numbers, CPU and timing they measure. In the stock-kernel VM
// (`npm run test:vm`) everything is slower by the tests' time scale, and the repository is
// read-only there, so vite's cache goes to /tmp.
export default defineConfig({
  ...(IN_VM ? { cacheDir: '/tmp/knock-port-vite-cache' } : {}),
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
          testTimeout: 120_000 * TIME_SCALE,
          hookTimeout: 120_000 * TIME_SCALE,
        },
      },
    ],
  },
});
