import { defineConfig } from 'vitest/config';

// Two projects: `unit` runs anywhere; `kernel` needs root, BPF, tc and network
// namespaces and runs its files one at a time (they share bpffs and devices).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
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
