/**
 * The collector's Prometheus metrics, read from one stats snapshot per scrape.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { MALFORMED_REASONS } from '../wire/format.ts';
import type { CollectorStats } from './stats.ts';

export const COLLECTOR_PREFIX = 'podtap_collector_';

export function collectorMetrics(stats: () => CollectorStats, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: COLLECTOR_PREFIX });
  // one snapshot serves every metric of a scrape
  let snap: CollectorStats | undefined;
  let at = 0;
  const s = (): CollectorStats => {
    const now = performance.now();
    if (!snap || now - at > 50) {
      snap = stats();
      at = now;
    }
    return snap;
  };
  const counter = (name: string, help: string, pick: (s: CollectorStats) => number): void => {
    new Counter({
      name: `${COLLECTOR_PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(pick(s()));
      },
    });
  };
  const labelled = (name: string, help: string, label: string, values: Record<string, (s: CollectorStats) => number>): void => {
    new Counter({
      name: `${COLLECTOR_PREFIX}${name}`,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        const v = s();
        for (const [k, pick] of Object.entries(values)) this.inc({ [label]: k }, pick(v));
      },
    });
  };
  const gauge = (name: string, help: string, pick: (s: CollectorStats) => number): void => {
    new Gauge({
      name: `${COLLECTOR_PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(pick(s()));
      },
    });
  };

  counter('received_total', 'Datagrams received on the tunnel port.', (v) => v.received);
  counter('received_bytes_total', 'Bytes of datagrams received on the tunnel port.', (v) => v.receivedBytes);
  counter('kernel_dropped_total', 'Datagrams the kernel dropped before the collector read them (full socket buffers, /proc/net/udp).', (v) => v.kernelDropped);
  counter('pieces_total', 'Well-formed data pieces received.', (v) => v.pieces);
  counter('announcements_total', 'Announcements admitted (authenticated, not replayed, assigned here).', (v) => v.announcements);
  counter('rebuilt_total', 'Frames rebuilt from their pieces.', (v) => v.rebuilt);
  counter('written_total', 'Packets written to capture files (on disk).', (v) => v.written);
  counter('bytes_written_total', 'Bytes of pcapng written to capture files (on disk).', (v) => v.bytesWritten);
  counter('lost_total', 'Frames the senders numbered that never arrived (sequence gaps).', (v) => v.lost);
  counter('incomplete_total', 'Frames dropped with pieces missing (timeout, memory limit, restart).', (v) => v.incomplete);
  counter('duplicates_total', 'Pieces received twice or after their frame was done.', (v) => v.duplicates);
  counter('overlaps_total', 'Pieces overlapping what their frame already had.', (v) => v.overlaps);
  counter('late_total', 'Frames arriving after the sequence window had passed them.', (v) => v.late);
  counter('stream_restarts_total', 'Sender streams whose numbering restarted.', (v) => v.restarts);
  counter('timestamp_fallback_total', 'Frames stamped with the receive time (no clock announced).', (v) => v.timestampFallback);
  counter('truncated_total', 'Frames written shorter than on the wire.', (v) => v.truncated);
  new Counter({
    name: 'podtap_collector_malformed_total',
    help: 'Datagrams dropped as malformed or refused, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const v = s();
      for (const r of MALFORMED_REASONS) this.inc({ reason: r }, v.malformedByReason[r]);
    },
  });
  labelled('write_dropped_total', 'Rebuilt frames that did not reach a capture file, by reason.', 'reason', {
    handoff: (v) => v.handoffDropped,
    'disk-slow': (v) => v.droppedSlow,
    'disk-full': (v) => v.droppedDiskFull,
    'write-failed': (v) => v.lostInWrite,
    'create-failed': (v) => v.droppedCreateFailed,
  });
  labelled('files_deleted_total', 'Capture files deleted by retention, by reason.', 'reason', {
    size: (v) => v.deletedBySize,
    age: (v) => v.deletedByAge,
  });
  counter('capture_errors_total', 'Times a capture file could not be created for a reason other than a full disk (that capture only; see the log).', (v) => v.captureErrors);
  counter('files_repaired_total', 'Capture files whose torn tail was cut (or that held nothing) on start.', (v) => v.repaired);
  counter('live_packets_total', 'Packets sent to live-stream readers.', (v) => v.livePackets);
  counter('live_dropped_total', 'Packets dropped for live-stream readers that did not keep up.', (v) => v.liveDropped);
  gauge('files', 'Capture files in the capture directory.', (v) => v.files);
  gauge('open_files', 'Capture files being written.', (v) => v.openFiles);
  gauge('disk_usage_bytes', 'Bytes of capture files in the capture directory.', (v) => v.diskUsage);
  gauge('disk_free_bytes', 'Free bytes on the capture file system.', (v) => v.diskFree);
  gauge('disk_full', '1 while writing is stopped by a failed write (disk full).', (v) => (v.diskFull ? 1 : 0));
  gauge('ingest_lag_seconds', 'Largest delay from receiving a frame to handing it to the writer, last second.', (v) => v.ingestLagMs / 1000);
  gauge('socket_queue_bytes', 'Bytes waiting in the tunnel sockets’ receive buffers.', (v) => v.socketQueueBytes);
  gauge('pending_frames', 'Frames waiting for more pieces.', (v) => v.pendingFrames);
  gauge('pending_bytes', 'Bytes of frames waiting for more pieces.', (v) => v.pendingBytes);
  gauge('sources', 'Senders known.', (v) => v.sources);
  gauge('streams', 'Sequence streams tracked.', (v) => v.streams);
  gauge('grants', 'Sender streams (address, data-plane instance) whose data is taken now.', (v) => v.grants);
  gauge('live_clients', 'Live-stream readers connected.', (v) => v.liveClients);
  gauge('workers', 'Ingest worker threads (0: ingest in the main thread).', (v) => v.workers);
  counter('worker_restarts_total', 'Ingest workers that died and were replaced (their frames in flight count as incomplete).', (v) => v.workerRestarts);
  new Counter({
    name: 'podtap_collector_worker_received_total',
    help: 'Datagrams received by each ingest worker (how SO_REUSEPORT spreads the streams).',
    labelNames: ['worker'],
    registers: [registry],
    collect() {
      this.reset();
      s().workerReceived.forEach((n, i) => this.inc({ worker: String(i) }, n));
    },
  });
  return registry;
}
