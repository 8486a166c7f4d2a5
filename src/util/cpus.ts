/**
 * How many CPUs this process may really use: the smaller of its CPU affinity
 * (what os.availableParallelism() reports) and its cgroup v2 CPU limit. In a
 * container with `resources.limits.cpu: 2` on a 32-core node, Node reports 32;
 * sizing thread pools by that oversubscribes the quota and gets throttled.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** The CPU limit in a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), rounded up; undefined for none. */
export function cpuLimitFromCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || quota === 'max') return undefined;
  const q = Number(quota);
  const p = Number(period ?? 100_000);
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return undefined;
  return Math.max(1, Math.ceil(q / p));
}

export function usableCpus(cpuMaxFile = '/sys/fs/cgroup/cpu.max'): number {
  const cpus = availableParallelism();
  let limit: number | undefined;
  try {
    limit = cpuLimitFromCpuMax(readFileSync(cpuMaxFile, 'utf8'));
  } catch {
    // no cgroup v2 limit visible (not in a container, or cgroup v1)
  }
  return limit === undefined ? cpus : Math.min(cpus, limit);
}
