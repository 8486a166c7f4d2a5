/**
 * The agent's Prometheus series. The data plane's counters are monotonic per
 * loaded object; they are exported as counters per policy and reason, fed by
 * the report loop with the growth since the last report.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { REASONS, type Counters, type Reason } from '../datapath/index.ts';

export interface AgentMetrics {
  registry: Registry;
  reconciled(result: 'success' | 'error', seconds: number): void;
  observe(policy: { namespace: string; name: string }, c: Counters): void;
  sessions(n: number): void;
}

export function createAgentMetrics(opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podtap_agent_' });
  const reconciles = new Counter({ name: 'podtap_agent_reconcile_total', help: 'Assignment reconciles by result.', labelNames: ['result'], registers: [registry] });
  const duration = new Histogram({ name: 'podtap_agent_reconcile_duration_seconds', help: 'Time to reconcile one assignment (compile, load, attach).', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] });
  const packets = new Counter({ name: 'podtap_agent_packets_total', help: 'Packets counted by the data plane, by policy and reason (matched, mirrored, rateLimited, ...).', labelNames: ['namespace', 'policy', 'reason'], registers: [registry] });
  const bytes = new Counter({ name: 'podtap_agent_bytes_total', help: 'Bytes counted by the data plane, by policy and reason.', labelNames: ['namespace', 'policy', 'reason'], registers: [registry] });
  const sessions = new Gauge({ name: 'podtap_agent_sessions', help: 'Capture sessions (policies) active on this node.', registers: [registry] });
  const last = new Map<string, Counters>();
  return {
    registry,
    reconciled(result, seconds) {
      reconciles.inc({ result });
      duration.observe(seconds);
    },
    observe(policy, c) {
      const key = `${policy.namespace}/${policy.name}`;
      const prev = last.get(key);
      for (const r of REASONS as readonly Reason[]) {
        const labels = { namespace: policy.namespace, policy: policy.name, reason: r };
        // a new object (policy changed) starts at zero: count from there
        const dp = c[r].packets - (prev && prev[r].packets <= c[r].packets ? prev[r].packets : 0);
        const db = c[r].bytes - (prev && prev[r].bytes <= c[r].bytes ? prev[r].bytes : 0);
        if (dp > 0) packets.inc(labels, dp);
        if (db > 0) bytes.inc(labels, db);
      }
      last.set(key, c);
    },
    sessions(n) {
      sessions.set(n);
    },
  };
}
