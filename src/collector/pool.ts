/**
 * Running ingest: either in worker threads (each with its own socket on the
 * shared port, SO_REUSEPORT) feeding the writer thread through transferred
 * batches, or in this thread (tests, small setups). Both hand rebuilt frames
 * to the same sink, the Router.
 *
 * Why threads and SO_REUSEPORT: one thread tops out at one core of parsing,
 * reassembly and copying. The data plane sends each (instance, CPU) sequence
 * stream from its own UDP source port, and the kernel hashes the 4-tuple to
 * pick the socket, so each stream stays on one worker: its sequence numbers
 * and its pieces are all seen by the same Ingest, exactly as with one thread.
 * Announcements can land on any worker; the writer's thread admits them
 * (admission.ts) and grants the announced stream to every worker.
 */
import { Worker } from 'node:worker_threads';
import type { Socket } from 'node:dgram';
import type { Logger } from '../util/log.ts';
import { GENEVE_PORT, MALFORMED_REASONS, VXLAN_PORT, type TunnelMode } from '../wire/format.ts';
import { readCoalescer } from './coalesce.ts';
import { HandoffDecoder, type HandoffOptions } from './handoff.ts';
import { Ingest, emptyMalformed, type IngestLimits, type IngestSink } from './ingest.ts';
import type { ReassemblyLimits } from './reassembly.ts';
import { bindSocket } from './sockets.ts';
import type { FromWorker, ToWorker, WorkerConfig, WorkerStats } from './worker.ts';

/**
 * The worker's module beside this one: worker.ts when run from the sources,
 * worker.js once compiled (the npm package, the image). A URL literal is not
 * rewritten by tsc, so the extension follows this module's own.
 */
export const WORKER_MODULE = new URL(`./worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);

/** The ingest stage as the collector is configured: the tunnel sockets and the threads behind them. */
export interface IngestStageOptions {
  /** address to bind; default 0.0.0.0 */
  host?: string;
  /** UDP port; default 6081 (Geneve) or 4789 (VXLAN); 0 = any free port */
  port?: number;
  tunnel?: TunnelMode;
  /** the install's secret: announcements must be authenticated and data is taken only on granted streams (ingest.ts) */
  secret?: string | undefined;
  /** how far an announcement's time may be from ours (default 60 s) */
  maxSkewMs?: number | undefined;
  /** ingest worker threads; 0 (the default here) = ingest in this thread */
  workers?: number;
  /** with workers 0: sockets sharing the port in this thread (default 1) */
  sockets?: number;
  /** requested SO_RCVBUF per socket (default 32 MiB; the kernel caps it at net.core.rmem_max) */
  recvBufferSize?: number;
  limits?: Partial<IngestLimits>;
  reassembly?: Partial<ReassemblyLimits>;
  handoff?: HandoffOptions;
  /** sleep after a read turn that drained the sockets, so the next reads a batch (coalesce.ts; default 1 ms in workers, 0 in-process) */
  coalesceMs?: number;
  /** the ingest workers' module (default ./worker.ts; tests wrap it to inject a crash) */
  workerModule?: URL;
}

export const DEFAULT_RECV_BUFFER = 32 << 20;

/** The tunnel port of a mode when none is given. */
export function defaultTunnelPort(mode: TunnelMode): number {
  return mode === 'vxlan' ? VXLAN_PORT : GENEVE_PORT;
}

/** Binds the tunnel port and starts ingest (in worker threads, or in this thread with workers 0), feeding `sink`. */
export function startIngest(opts: IngestStageOptions, sink: IngestSink, logger: Logger): Promise<IngestRunner> {
  const mode = opts.tunnel ?? 'geneve';
  const base: RunnerOptions = {
    host: opts.host ?? '0.0.0.0', port: opts.port ?? defaultTunnelPort(mode), mode, secret: opts.secret, maxSkewMs: opts.maxSkewMs,
    recvBufferSize: opts.recvBufferSize ?? DEFAULT_RECV_BUFFER, limits: opts.limits, reassembly: opts.reassembly, sink, logger,
  };
  const coalesce = opts.coalesceMs === undefined ? {} : { coalesceMs: opts.coalesceMs };
  const workers = Math.max(0, opts.workers ?? 0);
  return workers > 0
    ? startPool({ ...base, workers, workerModule: opts.workerModule, ...(opts.handoff ? { handoff: opts.handoff } : {}), ...coalesce })
    : startInProcess({ ...base, sockets: opts.sockets ?? 1, ...coalesce });
}

export interface RunnerOptions {
  host: string;
  port: number;
  mode: TunnelMode;
  secret: string | undefined;
  maxSkewMs: number | undefined;
  recvBufferSize: number;
  limits?: Partial<IngestLimits> | undefined;
  reassembly?: Partial<ReassemblyLimits> | undefined;
  sink: IngestSink;
  logger: Logger;
}

export interface IngestRunner {
  readonly port: number;
  readonly recvBufferSize: number;
  readonly workers: number;
  stats(): WorkerStats;
  /** datagrams received by each worker (its predecessors included): how SO_REUSEPORT spread the streams */
  perWorker(): number[];
  /** workers that died and were replaced */
  workerRestarts(): number;
  /** data of `instance` from `address` is taken for `ttlMs`, in every ingest */
  grant(address: string, instance: number, ttlMs: number): void;
  /** and no longer */
  revoke(address: string, instance: number): void;
  /** the largest delay (ms) from receiving a frame to handing it to the writer since the last call */
  takeLag(): number;
  tick(nowMs: number): void;
  stop(): Promise<void>;
}

export function emptyWorkerStats(): WorkerStats {
  return {
    received: 0, receivedBytes: 0, pieces: 0, announcements: 0, rebuilt: 0, lost: 0, malformedByReason: emptyMalformed(),
    incomplete: 0, evicted: 0, duplicates: 0, overlaps: 0, late: 0, restarts: 0, sources: 0, streams: 0,
    pendingFrames: 0, pendingBytes: 0, handoffDropped: 0,
  };
}

/** Adds b into a (every field: counters and gauges alike). */
function addStats(a: WorkerStats, b: WorkerStats): void {
  for (const k of Object.keys(a) as (keyof WorkerStats)[]) {
    if (k === 'malformedByReason') for (const r of MALFORMED_REASONS) a.malformedByReason[r] += b.malformedByReason[r];
    else a[k] += b[k];
  }
}

/** Ingest in this thread, on `sockets` sockets sharing the port. */
export async function startInProcess(opts: RunnerOptions & { sockets: number; coalesceMs?: number }): Promise<IngestRunner> {
  const ingest = new Ingest(opts.sink, { mode: opts.mode, secret: opts.secret, maxSkewMs: opts.maxSkewMs, limits: opts.limits, reassembly: opts.reassembly });
  // no coalescing by default here: this thread also serves HTTP and files,
  // and on a machine whose CPUs are all busy (the small machines that run
  // ingest in-process) waking at once on each datagram kept bursts from
  // overflowing the socket where a 1 ms nap let them (test/kernel robustness:
  // 0 vs ~1,300 of 9,450 datagrams dropped)
  const onRead = readCoalescer(opts.coalesceMs ?? 0);
  const onMessage = (msg: Buffer, address: string): void => {
    ingest.handle(msg, address);
    onRead();
  };
  const sockets: Socket[] = [];
  const n = Math.max(1, opts.sockets);
  try {
    sockets.push(await bindSocket(opts.host, opts.port, n > 1, opts.recvBufferSize, onMessage));
    const port = sockets[0]!.address().port;
    for (let i = 1; i < n; i++) sockets.push(await bindSocket(opts.host, port, true, opts.recvBufferSize, onMessage));
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }
  return {
    port: sockets[0]!.address().port,
    recvBufferSize: sockets[0]!.getRecvBufferSize(),
    workers: 0,
    stats: () => ({ ...ingest.stats(), handoffDropped: 0 }),
    perWorker: () => [],
    workerRestarts: () => 0,
    grant: (address, instance, ttlMs) => ingest.grant(address, instance, ttlMs),
    revoke: (address, instance) => ingest.revoke(address, instance),
    takeLag: () => 0,
    tick: (now) => ingest.tick(now),
    stop: async () => {
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      ingest.finish();
    },
  };
}

interface Slot {
  index: number;
  /** datagrams of the workers that had this slot before */
  before: number;
  worker: Worker;
  decoder: HandoffDecoder;
  last: WorkerStats;
  stopping: boolean;
  stopped: Promise<void>;
}

/** Ingest in `workers` threads. */
export async function startPool(
  opts: RunnerOptions & { workers: number; handoff?: HandoffOptions; coalesceMs?: number; workerModule?: URL | undefined },
): Promise<IngestRunner> {
  const log = opts.logger;
  const slots: Slot[] = [];
  /** counters of workers that exited (a restarted worker starts from zero) */
  const retired = emptyWorkerStats();
  let port = opts.port;
  let rcvbuf = 0;
  let lag = 0;
  let stopping = false;
  let restarts = 0;

  const broadcast = (m: ToWorker): void => {
    for (const s of slots) if (!s.stopping) s.worker.postMessage(m);
  };

  const spawn = (index: number): Promise<Slot> =>
    new Promise((resolve, reject) => {
      const cfg: WorkerConfig = {
        index, host: opts.host, port, mode: opts.mode, secret: opts.secret, maxSkewMs: opts.maxSkewMs, recvBufferSize: opts.recvBufferSize,
        limits: opts.limits, reassembly: opts.reassembly, handoff: opts.handoff ?? {}, coalesceMs: opts.coalesceMs ?? 1,
      };
      const worker = new Worker(opts.workerModule ?? WORKER_MODULE, { workerData: cfg, name: `podtap-ingest-${index}` });
      let ready = false;
      let markStopped!: () => void;
      const slot: Slot = {
        index, before: 0, worker, decoder: new HandoffDecoder(), last: emptyWorkerStats(), stopping: false,
        stopped: new Promise<void>((r) => (markStopped = r)),
      };
      worker.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            ready = true;
            port = m.port;
            rcvbuf = m.recvBufferSize;
            resolve(slot);
            return;
          case 'batch': {
            try {
              slot.decoder.decode(Buffer.from(m.ab, 0, m.len), m.len, opts.sink);
            } catch (err) {
              log.error({ err, worker: index }, 'a handoff batch could not be decoded');
            }
            const d = performance.timeOrigin + performance.now() - m.first;
            if (d > lag) lag = d;
            worker.postMessage({ t: 'free', ab: m.ab, len: m.len } satisfies ToWorker, [m.ab]);
            return;
          }
          case 'announce':
            opts.sink.announce(m.address, m.a, m.auth);
            return;
          case 'stats':
            slot.last = m.s;
            return;
          case 'stopped':
            slot.last = m.s;
            markStopped();
            return;
          case 'fatal':
            log.error({ worker: index, message: m.message }, 'ingest worker failed');
            if (!ready) reject(new Error(m.message));
            void worker.terminate();
            return;
        }
      });
      worker.on('error', (err) => {
        log.error({ err, worker: index }, 'ingest worker crashed');
        if (!ready) reject(err);
      });
      worker.on('exit', (code) => {
        markStopped();
        if (stopping || slot.stopping) return;
        // keep its counts; start a successor on the same port (its streams rehash to the remaining sockets meanwhile)
        addStats(retired, { ...slot.last, sources: 0, streams: 0, pendingFrames: 0, pendingBytes: 0 });
        const before = slot.before + slot.last.received;
        slot.last = emptyWorkerStats();
        restarts++;
        log.error({ worker: index, code, restarts }, 'ingest worker exited; starting another');
        if (!ready || restarts > 100) return;
        setTimeout(() => {
          if (stopping) return;
          spawn(index).then(
            (s) => {
              s.before = before;
              slots[slots.indexOf(slot)] = s;
            },
            (err: unknown) => log.error({ err, worker: index }, 'cannot restart ingest worker'),
          );
        }, 200);
      });
    });

  try {
    slots.push(await spawn(0));
    for (let i = 1; i < opts.workers; i++) slots.push(await spawn(i));
  } catch (err) {
    stopping = true;
    await Promise.all(slots.map((s) => s.worker.terminate()));
    throw err;
  }

  return {
    port,
    recvBufferSize: rcvbuf,
    workers: opts.workers,
    stats: () => {
      const s = emptyWorkerStats();
      addStats(s, retired);
      for (const slot of slots) addStats(s, slot.last);
      return s;
    },
    perWorker: () => slots.map((s) => s.before + s.last.received),
    workerRestarts: () => restarts,
    // (a worker started later learns streams from their next announcement, within seconds)
    grant: (address, instance, ttlMs) => broadcast({ t: 'grant', address, instance, ttlMs }),
    revoke: (address, instance) => broadcast({ t: 'revoke', address, instance }),
    takeLag: () => {
      const l = lag;
      lag = 0;
      return l;
    },
    tick: () => undefined,
    stop: async () => {
      stopping = true;
      for (const s of slots) {
        s.stopping = true;
        s.worker.postMessage({ t: 'stop' } satisfies ToWorker);
      }
      // a worker posts its last batch and stats, then closes its port and exits
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(slots.map((s) => s.stopped)), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
