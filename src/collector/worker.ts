/**
 * An ingest worker thread: its own tunnel socket on the shared port
 * (SO_REUSEPORT), its own Ingest (parse, sequence tracking, reassembly), and
 * a handoff encoder that ships rebuilt frames to the writer thread in
 * transferred batches. See pool.ts for the other side.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Announcement, AnnouncementAuth } from '../wire/announce.ts';
import type { TunnelMode } from '../wire/format.ts';
import { readCoalescer } from './coalesce.ts';
import { HandoffEncoder, type HandoffOptions } from './handoff.ts';
import { Ingest, type IngestLimits, type IngestStats } from './ingest.ts';
import type { ReassemblyLimits } from './reassembly.ts';
import { bindSocket } from './sockets.ts';

export interface WorkerConfig {
  index: number;
  host: string;
  port: number;
  mode: TunnelMode;
  secret: string | undefined;
  maxSkewMs: number | undefined;
  recvBufferSize: number;
  limits: Partial<IngestLimits> | undefined;
  reassembly: Partial<ReassemblyLimits> | undefined;
  handoff: HandoffOptions;
  /** after an event-loop turn that drained the socket, sleep this long so the next turn reads a batch (0 = never; coalesce.ts) */
  coalesceMs: number;
}

export interface WorkerStats extends IngestStats {
  handoffDropped: number;
}

export type ToWorker =
  | { t: 'grant'; address: string; instance: number; ttlMs: number }
  | { t: 'revoke'; address: string; instance: number }
  | { t: 'free'; ab: ArrayBuffer; len: number }
  | { t: 'stop' };

export type FromWorker =
  | { t: 'ready'; port: number; recvBufferSize: number }
  | { t: 'batch'; ab: ArrayBuffer; len: number; frames: number; first: number }
  | { t: 'announce'; address: string; a: Announcement; auth: AnnouncementAuth | undefined }
  | { t: 'stats'; s: WorkerStats }
  | { t: 'stopped'; s: WorkerStats }
  | { t: 'fatal'; message: string };

/** A batch smaller than this waits (at most FLUSH_DELAY_MS) for more frames. */
const FLUSH_MIN_BYTES = 128 << 10;
const FLUSH_DELAY_MS = 2;

async function run(cfg: WorkerConfig): Promise<void> {
  const port = parentPort!;
  const send = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer ?? []);
  const enc = new HandoffEncoder(
    (ab, len, frames, first) => send({ t: 'batch', ab, len, frames, first }, [ab]),
    (address, a, auth) => send({ t: 'announce', address, a, auth }),
    cfg.handoff,
  );
  const ingest = new Ingest(enc, { mode: cfg.mode, secret: cfg.secret, maxSkewMs: cfg.maxSkewMs, limits: cfg.limits, reassembly: cfg.reassembly });
  const stats = (): WorkerStats => ({ ...ingest.stats(), handoffDropped: enc.dropped });

  // Batches go out after each event-loop turn that filled enough of one, or
  // FLUSH_DELAY_MS after their first frame; the turns themselves are coalesced.
  let flushTimer: NodeJS.Timeout | undefined;
  const flushDue = (): void => {
    flushTimer = undefined;
    if (enc.pending > 0) enc.flush();
  };
  const onRead = readCoalescer(cfg.coalesceMs, () => {
    if (enc.pending >= FLUSH_MIN_BYTES || (enc.pending > 0 && performance.timeOrigin + performance.now() - enc.firstRecvMs >= FLUSH_DELAY_MS)) {
      enc.flush();
    } else if (enc.pending > 0 && !flushTimer) {
      flushTimer = setTimeout(flushDue, FLUSH_DELAY_MS);
    }
  });
  const sock = await bindSocket(cfg.host, cfg.port, true, cfg.recvBufferSize, (msg, address) => {
    ingest.handle(msg, address);
    onRead();
  });
  sock.on('error', (err) => send({ t: 'fatal', message: `socket error: ${err.message}` }));

  // a bug that kills this thread must not take its counts (and its rebuilt
  // frames) with it: hand them over on the way down
  process.on('uncaughtExceptionMonitor', () => {
    try {
      enc.flush();
      send({ t: 'stats', s: stats() });
    } catch {
      /* dying anyway */
    }
  });

  const ticker = setInterval(() => ingest.tick(), 100);
  const reporter = setInterval(() => send({ t: 'stats', s: stats() }), 250);

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'grant':
        ingest.grant(m.address, m.instance, m.ttlMs);
        return;
      case 'revoke':
        ingest.revoke(m.address, m.instance);
        return;
      case 'free':
        enc.recycle(m.ab, m.len);
        return;
      case 'stop':
        clearInterval(ticker);
        clearInterval(reporter);
        sock.close(() => {
          ingest.finish();
          enc.flush();
          send({ t: 'stopped', s: stats() });
          port.close();
        });
        return;
    }
  });
  send({ t: 'ready', port: sock.address().port, recvBufferSize: sock.getRecvBufferSize() });
}

if (parentPort) {
  run(workerData as WorkerConfig).catch((err: unknown) => {
    parentPort!.postMessage({ t: 'fatal', message: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
  });
}
