/**
 * The controller's Prometheus metrics, in a registry of its own (two
 * controllers in one process — tests, the demo — do not collide).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueMetrics } from '../k8s/index.ts';

export type ReconcileOutcome = 'success' | 'error' | 'terminal' | 'requeue';

export interface ControllerMetrics {
  registry: Registry;
  reconciles: Counter<'result'>;
  reconcileDuration: Histogram;
  writes: Counter<'operation' | 'result'>;
  leader: Gauge;
  queue: QueueMetrics;
  /** Count policies by Ready status at scrape time. */
  setPolicySource(source: () => Iterable<{ status?: Record<string, unknown> }>): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): ControllerMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podtap_controller_' });
  const registers = [registry];
  const reconciles = new Counter({
    name: 'podtap_controller_reconcile_total',
    help: 'Policy reconciles by result: success, error (retried with backoff), terminal (not retried), requeue (scheduled again).',
    labelNames: ['result'] as const,
    registers,
  });
  for (const r of ['success', 'error', 'terminal', 'requeue']) reconciles.inc({ result: r }, 0);
  const reconcileDuration = new Histogram({
    name: 'podtap_controller_reconcile_duration_seconds',
    help: 'Time to reconcile one policy, API writes included.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const writes = new Counter({
    name: 'podtap_controller_assignment_writes_total',
    help: 'API writes of SniffNodeAssignments and policy status, by operation (create, update, delete, status) and result (ok, error).',
    labelNames: ['operation', 'result'] as const,
    registers,
  });
  const depth = new Gauge({ name: 'podtap_controller_workqueue_depth', help: 'Policy keys waiting to be reconciled.', registers });
  const adds = new Counter({ name: 'podtap_controller_workqueue_adds_total', help: 'Keys added to the work queue.', registers });
  const retries = new Counter({ name: 'podtap_controller_workqueue_retries_total', help: 'Rate-limited re-adds after a failed reconcile.', registers });
  const latency = new Histogram({
    name: 'podtap_controller_workqueue_queue_duration_seconds',
    help: 'Time a key waits in the work queue before a worker takes it.',
    buckets: [0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    registers,
  });
  const leader = new Gauge({ name: 'podtap_controller_leader', help: '1 while this replica holds the leader lease (or runs without leader election).', registers });
  let policySource: (() => Iterable<{ status?: Record<string, unknown> }>) | undefined;
  new Gauge({
    name: 'podtap_controller_policies',
    help: 'SniffPolicies by the status of their Ready condition (true, false, unknown).',
    labelNames: ['ready'] as const,
    registers,
    collect() {
      const counts = { true: 0, false: 0, unknown: 0 };
      for (const p of policySource?.() ?? []) {
        const conds = (p.status?.conditions ?? []) as { type?: string; status?: string }[];
        const s = conds.find((c) => c.type === 'Ready')?.status;
        counts[s === 'True' ? 'true' : s === 'False' ? 'false' : 'unknown']++;
      }
      for (const [k, v] of Object.entries(counts)) this.set({ ready: k }, v);
    },
  });
  return {
    registry,
    reconciles,
    reconcileDuration,
    writes,
    leader,
    queue: {
      adds: () => adds.inc(),
      retries: () => retries.inc(),
      depth: (n) => depth.set(n),
      latency: (s) => latency.observe(s),
    },
    setPolicySource(source) {
      policySource = source;
    },
  };
}
