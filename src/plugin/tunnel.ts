/**
 * The tunnel check, end to end: what the agents mirrored for a policy (its
 * status.packets, summed from their reports) against what the collector
 * rebuilt for it (the collector's per-policy count). Rebuilt is counted up
 * to now and mirrored as of the agents' last reports, so with nothing lost
 * rebuilt ≥ mirrored; fewer rebuilt means packets left the nodes and never
 * came out of the collector whole: a NetworkPolicy or firewall on the tunnel's
 * port, an MTU on the way that drops the pieces, a collector refusing the
 * sender (docs/troubleshooting.md, "A NetworkPolicy blocks the tunnel").
 */
import type { SniffPolicy } from '../api/index.ts';

export interface CollectorCounts {
  /** when the collector process started counting (RFC 3339) */
  startTime?: string | undefined;
  policies?: { namespace: string; name: string; packets: number }[] | undefined;
  /** the collector counts a bounded number of policies: true when some went uncounted */
  policiesTruncated?: boolean | undefined;
}

export type TunnelVerdict = 'ok' | 'losing' | 'not compared';

/** The verdict and its line for one policy, @collector being the one the plugin found (namespace/service). */
export function tunnelCheck(p: SniffPolicy, collector: { namespace: string; service: string }, counts: CollectorCounts): { verdict: TunnelVerdict; line: string } {
  const ns = p.metadata.namespace ?? '';
  const svc = p.spec.collector.service;
  const notCompared = (why: string) => ({ verdict: 'not compared' as const, line: `tunnel: not compared (${why})` });
  if (!svc || (svc.namespace ?? ns) !== collector.namespace || svc.name !== collector.service) {
    return notCompared(`the policy sends to ${svc ? `${svc.namespace ?? ns}/${svc.name}` : p.status?.collector ?? p.spec.collector.address}, not to ${collector.namespace}/${collector.service}`);
  }
  const mirrored = p.status?.packets ?? 0;
  const started = p.status?.startTime;
  if (!started) return notCompared('the capture has not started');
  if (!Array.isArray(counts.policies) || !counts.startTime) return notCompared('the collector does not count per policy (an older version)');
  if (Date.parse(counts.startTime) > Date.parse(started)) {
    return notCompared(`the collector started at ${counts.startTime}, after the capture (${started}): it did not see the packets before`);
  }
  const entry = counts.policies.find((c) => c.namespace === ns && c.name === p.metadata.name);
  if (!entry && counts.policiesTruncated) return notCompared('the collector counts a bounded number of policies, and not this one');
  const rebuilt = entry?.packets ?? 0;
  if (rebuilt >= mirrored) return { verdict: 'ok', line: `tunnel: ok — the agents mirrored ${mirrored} packets, the collector rebuilt ${rebuilt}` };
  return {
    verdict: 'losing',
    line:
      `tunnel: LOSING — the agents mirrored ${mirrored} packets, the collector rebuilt ${rebuilt}: ${mirrored - rebuilt} left the nodes and never arrived whole ` +
      '(a NetworkPolicy or firewall on the tunnel port, an MTU that drops the pieces; see docs/troubleshooting.md)',
  };
}
