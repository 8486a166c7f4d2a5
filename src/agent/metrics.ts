/**
 * The agent's Prometheus series. The data plane's counters are monotonic per
 * loaded object; they are exported as counters per policy, fed by the report
 * loop with the growth since the last report.
 *
 * Each data-plane count has a name of its own (matched, mirrored, ...), so a
 * sum over a label is always meaningful: the one labelled family is
 * `podtap_agent_lost_packets_total{reason}`, whose reasons (LOSS_REASONS)
 * add up to the policy's lost count. A policy's series are removed when its
 * session ends on this node (`forget`): `kubectl podtap capture` makes a new
 * policy name every time, and nothing else would ever drop them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LOSS_REASONS, type Counters, type Reason } from '../datapath/index.ts';

export const AGENT_PREFIX = 'podtap_agent_';

/**
 * Data-plane counts with a series of their own: name (after the prefix),
 * the counter it reads, help, and the name of its bytes series if it has one. The table
 * covers every reason of the data plane but the loss reasons, which share
 * lost_packets_total (a test holds it to REASONS).
 */
export const PER_REASON: readonly { name: string; reason: Reason; bytes: string | undefined; help: string }[] = [
  { name: 'seen_packets_total', reason: 'seen', bytes: undefined, help: 'Packets the tap program saw on the selected interfaces.' },
  { name: 'skipped_own_packets_total', reason: 'skipOwn', bytes: undefined, help: "podtap's own tunnel packets the tap skipped (never captured twice)." },
  { name: 'filtered_packets_total', reason: 'filtered', bytes: undefined, help: "Packets the policy's filter did not select." },
  { name: 'matched_packets_total', reason: 'matched', bytes: 'matched_bytes_total', help: "Packets the policy's filter selected: what the policy captures, before sampling, rate limit and budget." },
  { name: 'sampled_out_packets_total', reason: 'sampledOut', bytes: undefined, help: 'Matched packets skipped by 1-in-N sampling (by choice, not lost).' },
  { name: 'limit_reached_packets_total', reason: 'limitReached', bytes: undefined, help: "Matched packets after the policy's packet or byte budget (by choice, not lost)." },
  { name: 'tunnel_in_packets_total', reason: 'tunnelIn', bytes: undefined, help: 'Copies that reached the tunnel program.' },
  { name: 'mirrored_packets_total', reason: 'mirrored', bytes: 'mirrored_bytes_total', help: 'Packets sent whole to the collector.' },
  { name: 'fragmented_packets_total', reason: 'fragmented', bytes: undefined, help: 'Mirrored packets cut into pieces to fit the MTU.' },
  { name: 'pieces_total', reason: 'pieces', bytes: undefined, help: 'Pieces (outer packets) sent to the collector.' },
  { name: 'truncated_packets_total', reason: 'truncated', bytes: undefined, help: 'Packets cut to the snap length (flagged, not lost).' },
  { name: 'oversize_packets_total', reason: 'oversize', bytes: undefined, help: 'Packets larger than 65535 + L2 bytes (BIG TCP), sent cut and flagged.' },
  { name: 'slot_busy_packets_total', reason: 'slotBusy', bytes: undefined, help: 'Large frames cut at once because every stash slot was waiting (not lost).' },
  { name: 'foreign_packets_total', reason: 'foreign', bytes: undefined, help: 'Untagged packets on the capture device (not captured traffic).' },
  { name: 'checksum_unsupported_packets_total', reason: 'csumUnsupported', bytes: undefined, help: 'Packets whose offloaded checksum kind cannot be steered.' },
  { name: 'segmented_packets_total', reason: 'segmented', bytes: undefined, help: 'TCP super-packets sent whole for the kernel to segment (largeFrames: Segment; also counted in mirrored).' },
  { name: 'stale_carriers_total', reason: 'carrierStale', bytes: undefined, help: 'Carriers refused because their stash slot was reclaimed first (their frame was counted lost as carrierLost then).' },
];

export interface AgentMetrics {
  registry: Registry;
  reconciled(result: 'success' | 'error', seconds: number): void;
  observe(policy: { namespace: string; name: string }, c: Counters): void;
  /** Removes every series of a policy whose session ended on this node. */
  forget(policy: { namespace: string; name: string }): void;
  /** A status report reached the API server. */
  reported(): void;
  /** @n tapped hooks were found without podtap's filter (removed by someone else) and attached again. */
  reattached(n: number): void;
  /** Where the sessions gauge reads the number of active sessions at scrape time. */
  setSessionSource(source: () => number): void;
  /** Where the waiting gauge reads the number of policies refused a session slot (--max-sessions) at scrape time. */
  setWaitingSource(source: () => number): void;
}

export function createAgentMetrics(opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: AGENT_PREFIX });
  const reconciles = new Counter({ name: `${AGENT_PREFIX}reconcile_total`, help: 'Assignment reconciles by result.', labelNames: ['result'], registers });
  const duration = new Histogram({ name: `${AGENT_PREFIX}reconcile_duration_seconds`, help: 'Time to reconcile one assignment (compile, load, attach).', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
  const labelNames = ['namespace', 'policy'] as const;
  const series = PER_REASON.map((s) => ({
    ...s,
    packets: new Counter({ name: `${AGENT_PREFIX}${s.name}`, help: s.help, labelNames, registers }),
    bytesCounter: s.bytes ? new Counter({ name: `${AGENT_PREFIX}${s.bytes}`, help: `Bytes of the packets in ${AGENT_PREFIX}${s.name}.`, labelNames, registers }) : undefined,
  }));
  const lostPackets = new Counter({
    name: `${AGENT_PREFIX}lost_packets_total`,
    help: 'Matched packets that did not reach the collector whole, by reason; the reasons add up to the policy\'s lost count (docs/datapath.md#counters).',
    labelNames: [...labelNames, 'reason'],
    registers,
  });
  const lostBytes = new Counter({ name: `${AGENT_PREFIX}lost_bytes_total`, help: 'Bytes of matched packets that did not reach the collector whole, by reason.', labelNames: [...labelNames, 'reason'], registers });
  const lastReport = new Gauge({ name: `${AGENT_PREFIX}last_report_timestamp_seconds`, help: 'When a status report last reached the API server (Unix time); 0 before the first.', registers });
  lastReport.set(0);
  const reattached = new Counter({
    name: `${AGENT_PREFIX}taps_reattached_total`,
    help: "Tapped hooks found without podtap's filter (someone removed it, or the interface's clsact qdisc) and attached again; each is a gap in the capture.",
    registers,
  });
  /** A gauge read from @source at scrape time; returns the setter of its source. */
  const sourced = (name: string, help: string) => {
    let source: (() => number) | undefined;
    new Gauge({
      name: `${AGENT_PREFIX}${name}`,
      help,
      registers,
      collect() {
        this.set(source?.() ?? 0);
      },
    });
    return (s: () => number) => {
      source = s;
    };
  };
  const setSessions = sourced('sessions', 'Capture sessions (policies) active on this node.');
  const setWaiting = sourced('sessions_waiting', 'Policies refused a capture session on this node by its --max-sessions (NodeSessionLimit), waiting for one to end.');
  const last = new Map<string, Counters>();
  /** growth of one count since the last report; a new object (policy changed) starts at zero: count from there */
  const growth = (prev: number | undefined, now: number): number => now - (prev !== undefined && prev <= now ? prev : 0);
  return {
    registry,
    reconciled(result, seconds) {
      reconciles.inc({ result });
      duration.observe(seconds);
    },
    observe(policy, c) {
      const key = `${policy.namespace}/${policy.name}`;
      const prev = last.get(key);
      const labels = { namespace: policy.namespace, policy: policy.name };
      for (const s of series) {
        // inc(0) too: a policy's series exist from its first report, so rate() has a start
        s.packets.inc(labels, Math.max(0, growth(prev?.[s.reason].packets, c[s.reason].packets)));
        s.bytesCounter?.inc(labels, Math.max(0, growth(prev?.[s.reason].bytes, c[s.reason].bytes)));
      }
      for (const reason of LOSS_REASONS) {
        lostPackets.inc({ ...labels, reason }, Math.max(0, growth(prev?.[reason].packets, c[reason].packets)));
        lostBytes.inc({ ...labels, reason }, Math.max(0, growth(prev?.[reason].bytes, c[reason].bytes)));
      }
      last.set(key, c);
    },
    forget(policy) {
      const labels = { namespace: policy.namespace, policy: policy.name };
      last.delete(`${policy.namespace}/${policy.name}`);
      for (const s of series) {
        s.packets.remove(labels);
        s.bytesCounter?.remove(labels);
      }
      for (const reason of LOSS_REASONS) {
        lostPackets.remove({ ...labels, reason });
        lostBytes.remove({ ...labels, reason });
      }
    },
    reported() {
      lastReport.set(Date.now() / 1000);
    },
    reattached(n) {
      reattached.inc(n);
    },
    setSessionSource: setSessions,
    setWaitingSource: setWaiting,
  };
}
