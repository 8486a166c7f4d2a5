/**
 * The collector's counters: one snapshot made of every stage's own stats
 * (ingest, router, store, retention, live streams, the kernel's socket
 * counters). /api/v1/status serves it as JSON and metrics.ts turns it into
 * Prometheus series.
 */
import { MALFORMED_REASONS, type MalformedReason } from '../wire/format.ts';
import type { AdmissionStats } from './admission.ts';
import type { LiveStats } from './live.ts';
import type { RetentionStats } from './retention.ts';
import type { RouterStats } from './router.ts';
import type { StoreStats } from './store.ts';
import type { WorkerStats } from './worker.ts';

export interface CollectorStats extends WorkerStats, StoreStats, RetentionStats {
  /** stream grants in force (authenticated announcements admitted within their time to live) */
  grants: number;
  /** datagrams dropped as malformed or refused, all reasons */
  malformed: number;
  timestampFallback: number;
  truncated: number;
  oversize: number;
  interfaces: number;
  /** rebuilt frames that reached no capture file: handoff, slow disk, full disk, failed writes, files that could not be created */
  writeDropped: number;
  /** datagrams the kernel dropped before we read them (full socket buffers) */
  kernelDropped: number;
  socketQueueBytes: number;
  /** largest receive→writer delay in the last second, ms */
  ingestLagMs: number;
  liveClients: number;
  livePackets: number;
  liveDropped: number;
  workers: number;
  /** datagrams received by each ingest worker */
  workerReceived: number[];
  /** ingest workers that died and were replaced */
  workerRestarts: number;
}

/** Each stage's stats at one moment. */
export interface StageStats {
  ingest: WorkerStats;
  admission: AdmissionStats;
  router: RouterStats;
  store: StoreStats;
  retention: RetentionStats;
  live: LiveStats;
  kernel: { dropped: number; queued: number };
  runner: { workers: number; perWorker: number[]; restarts: number };
  ingestLagMs: number;
}

/**
 * One snapshot from the stages' stats. Announcements admission refused and
 * frames the router refused count with the ingest's refusals; `announcements`
 * are those admitted.
 */
export function collectorStats(s: StageStats): CollectorStats {
  const malformedByReason: Record<MalformedReason, number> = { ...s.ingest.malformedByReason };
  for (const r of MALFORMED_REASONS) malformedByReason[r] += s.admission.refusedByReason[r];
  malformedByReason['too-many'] += s.router.refused;
  let malformed = 0;
  for (const reason of MALFORMED_REASONS) malformed += malformedByReason[reason];
  return {
    ...s.ingest,
    ...s.store,
    ...s.retention,
    announcements: s.admission.admitted,
    grants: s.admission.grants,
    malformedByReason,
    malformed,
    timestampFallback: s.router.timestampFallback,
    truncated: s.router.truncated,
    oversize: s.router.oversize,
    interfaces: s.router.interfaces,
    writeDropped: s.ingest.handoffDropped + s.store.droppedSlow + s.store.droppedDiskFull + s.store.lostInWrite + s.store.droppedCreateFailed,
    kernelDropped: s.kernel.dropped,
    socketQueueBytes: s.kernel.queued,
    ingestLagMs: s.ingestLagMs,
    liveClients: s.live.clients,
    livePackets: s.live.packets,
    liveDropped: s.live.dropped,
    workers: s.runner.workers,
    workerReceived: s.runner.perWorker,
    workerRestarts: s.runner.restarts,
  };
}
