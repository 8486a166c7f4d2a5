/**
 * Every Prometheus series name the code exports, per component, read from the
 * real registries (process metrics included, as the CLIs enable them): what
 * docs/metrics.md, the chart's alert rules and its dashboard may name.
 */
import { createAgentMetrics } from '../../src/agent/metrics.ts';
import { collectorMetrics } from '../../src/collector/metrics.ts';
import type { CollectorStats } from '../../src/collector/stats.ts';
import { createMetrics } from '../../src/controller/metrics.ts';

export type Component = 'controller' | 'agent' | 'collector';

export interface ExportedMetric {
  component: Component;
  /** the family's name, as in # HELP */
  name: string;
  type: string;
  help: string;
  /** the names of its series (a histogram's _bucket, _sum and _count) */
  series: string[];
  /** label names its series carry (le aside) */
  labels: string[];
  /** a process metric of prom-client's defaults */
  process: boolean;
}

/** A stats snapshot in which every count is 1 (the collector's metrics read it at collection). */
function anyStats(): CollectorStats {
  const one = (): unknown => new Proxy({}, { get: () => 1 });
  return new Proxy({} as CollectorStats, { get: (_, key) => (key === 'workerReceived' ? [1] : key === 'malformedByReason' ? one() : 1) });
}

export async function exportedMetrics(): Promise<ExportedMetric[]> {
  const registries = {
    controller: createMetrics({ defaultMetrics: true }).registry,
    agent: createAgentMetrics({ defaultMetrics: true }).registry,
    collector: collectorMetrics(anyStats, { processMetrics: true }),
  };
  const out: ExportedMetric[] = [];
  for (const [component, registry] of Object.entries(registries) as [Component, (typeof registries)[Component]][]) {
    for (const m of await registry.getMetricsAsJSON()) {
      const type = String(m.type);
      const series = type === 'histogram' ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : type === 'summary' ? [m.name, `${m.name}_sum`, `${m.name}_count`] : [m.name];
      const process = /^podtap_[a-z]+_(process_|nodejs_)/.test(m.name);
      const declared = (registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] } | undefined)?.labelNames ?? [];
      const labels = [...new Set([...declared, ...m.values.flatMap((v) => Object.keys(v.labels))])].filter((l) => l !== 'le').sort();
      out.push({ component, name: m.name, type, help: m.help, series, labels, process });
    }
  }
  return out;
}
