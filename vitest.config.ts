import { defineConfig } from 'vitest/config';

// Three projects: `unit` runs anywhere (the product's unit tests and the
// workspace packages' tests); `k8s` runs against a real API server; `kernel`
// needs root, BPF, tc and network namespaces and runs its files one at a time
// (they share bpffs and devices).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
          testTimeout: 30_000,
          // hooks start collectors with worker threads, API servers and Go
          // builds: vitest's 10 s default was outlasted on a busy 2-core machine
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          // A real etcd and kube-apiserver per file (test/helpers/apiserver.ts),
          // built by scripts/cluster/build.sh; one file at a time on 2 cores.
          name: 'k8s',
          include: ['test/k8s/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          // a pin root of its own per file, not the host's /sys/fs/bpf/podtap
          setupFiles: ['test/kernel/setup-pin-root.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
