export default { test: { include: ['test/vm/*.test.ts'], testTimeout: 600000, hookTimeout: 600000 } };
