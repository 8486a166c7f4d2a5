/**
 * The collector: UDP ingest (worker threads, or this thread) → Router →
 * rotating capture files and live streams, with metrics and the HTTP API.
 *
 *   socket ─ Ingest (parse, sequence, reassembly) ─┐   per worker thread
 *   socket ─ Ingest ───────────────────────────────┤   (SO_REUSEPORT)
 *                                                  ▼   transferred batches
 *                   Router (names, clocks, policies) ─► CaptureStore (files)
 *                                                    └► LiveHub (HTTP streams)
 */
import { hostname, release, type } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { usableCpus } from '../util/cpus.ts';
import type { Logger } from '../util/log.ts';
import { GENEVE_PORT, MALFORMED_REASONS, VXLAN_PORT, type TunnelMode } from '../wire/format.ts';
import type { CaptureFs } from './capture-file.ts';
import type { HandoffOptions } from './handoff.ts';
import type { HttpApi } from './http.ts';
import type { IngestLimits } from './ingest.ts';
import { LiveHub, type LiveOptions } from './live.ts';
import { collectorMetrics } from './metrics.ts';
import { startInProcess, startPool, type IngestRunner } from './pool.ts';
import type { ReassemblyLimits } from './reassembly.ts';
import { Router, type RouterLimits } from './router.ts';
import { KernelDrops } from './sockets.ts';
import { CaptureStore, type Layout, type StoreStats } from './store.ts';
import type { WorkerStats } from './worker.ts';

export { captureFileName } from './store.ts';

export interface CollectorOptions {
  /** address to bind; default 0.0.0.0 */
  host?: string;
  /** UDP port; default 6081 (Geneve) or 4789 (VXLAN); 0 = any free port */
  port?: number;
  /** directory for the capture files (must exist) */
  outDir: string;
  tunnel?: TunnelMode;
  /** when set, data is taken only from sources that announced themselves with it */
  token?: string | undefined;
  logger: Logger;
  /** ingest worker threads; 0 (the default here) = ingest in this thread */
  workers?: number;
  /** with workers 0: sockets sharing the port in this thread (default 1) */
  sockets?: number;
  /** requested SO_RCVBUF per socket (default 32 MiB; the kernel caps it at net.core.rmem_max) */
  recvBufferSize?: number;
  /** frames are dropped (and counted) while this many bytes wait for the disk (default 256 MiB) */
  maxQueuedBytes?: number;
  limits?: Partial<IngestLimits & RouterLimits>;
  reassembly?: Partial<ReassemblyLimits>;
  handoff?: HandoffOptions;
  /** sleep after a read turn that drained the sockets, so the next reads a batch (coalesce.ts; default 1 ms in workers, 0 in-process) */
  coalesceMs?: number;
  /** the ingest workers' module (default ./worker.ts; tests wrap it to inject a crash) */
  workerModule?: URL;
  /** file layout: one series per policy (default) or a single series */
  layout?: Layout;
  rotateBytes?: number;
  rotateMs?: number;
  retainBytes?: number;
  retainMs?: number;
  minFreeBytes?: number;
  /** the HTTP API; absent = none */
  http?: { host: string; port: number; tokenFile?: string | undefined; publicPaths?: readonly string[] };
  live?: LiveOptions;
  /** file operations (tests: a disk that fills up) */
  fs?: CaptureFs;
  /** wall clock for rotation and retention (tests) */
  clock?: () => number;
}

export interface CollectorStats extends WorkerStats, Omit<StoreStats, never> {
  /** datagrams dropped as malformed or refused, all reasons */
  malformed: number;
  timestampFallback: number;
  truncated: number;
  oversize: number;
  interfaces: number;
  /** rebuilt frames that reached no capture file: handoff, slow disk, full disk, failed writes */
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

export interface Collector {
  /** the UDP address and port actually bound */
  readonly address: { host: string; port: number };
  /** the HTTP API's address, when it runs */
  readonly http: { host: string; port: number } | undefined;
  readonly registry: Registry;
  readonly store: CaptureStore;
  readonly live: LiveHub;
  readonly router: Router;
  /** absolute paths of the capture files, oldest first per capture */
  files(): string[];
  stats(): CollectorStats;
  /** Stops receiving, writes everything out, closes the files. Idempotent. */
  close(): Promise<void>;
}

/**
 * Ingest threads for the CPUs this process may use (its affinity and its
 * container's CPU limit): one core is the writer's, at most 4. On
 * two CPUs or fewer, ingest runs in the main thread: a worker costs a
 * handoff (about 2 µs a datagram here) and competes with the writer for the
 * same cores, and on this project's 2-CPU machine in-process ingest kept
 * bursts that a worker dropped (bench/collector.ts, docs/collector.md).
 */
export function defaultWorkers(cpus = usableCpus()): number {
  return cpus <= 2 ? 0 : Math.min(4, cpus - 1);
}

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const mode = opts.tunnel ?? 'geneve';
  const host = opts.host ?? '0.0.0.0';
  const port = opts.port ?? (mode === 'vxlan' ? VXLAN_PORT : GENEVE_PORT);
  const workers = Math.max(0, opts.workers ?? 0);
  const recvBufferSize = opts.recvBufferSize ?? 32 << 20;
  const log = opts.logger;
  const section = { userappl: 'podtap', os: `${type()} ${release()}`, hardware: hostname() };

  const store = await CaptureStore.open({
    dir: opts.outDir, logger: log, layout: opts.layout ?? 'policy', section,
    ...(opts.rotateBytes === undefined ? {} : { rotateBytes: opts.rotateBytes }),
    ...(opts.rotateMs === undefined ? {} : { rotateMs: opts.rotateMs }),
    ...(opts.retainBytes === undefined ? {} : { retainBytes: opts.retainBytes }),
    ...(opts.retainMs === undefined ? {} : { retainMs: opts.retainMs }),
    ...(opts.maxQueuedBytes === undefined ? {} : { maxQueuedBytes: opts.maxQueuedBytes }),
    ...(opts.minFreeBytes === undefined ? {} : { minFreeBytes: opts.minFreeBytes }),
    ...(opts.fs ? { fs: opts.fs } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  const live = new LiveHub({ ...opts.live, section });
  const router = new Router([store, live], { limits: opts.limits ?? {} });
  let routerRefused = 0;
  router.onRefuse = () => routerRefused++;

  const runnerOpts = { host, port, mode, token: opts.token, recvBufferSize, limits: opts.limits, reassembly: opts.reassembly, sink: router, logger: log };
  let runner: IngestRunner;
  try {
    runner = workers > 0 ? await startPool({ ...runnerOpts, workers, workerModule: opts.workerModule, ...(opts.handoff ? { handoff: opts.handoff } : {}), ...(opts.coalesceMs === undefined ? {} : { coalesceMs: opts.coalesceMs }) }) : await startInProcess({ ...runnerOpts, sockets: opts.sockets ?? 1, ...(opts.coalesceMs === undefined ? {} : { coalesceMs: opts.coalesceMs }) });
  } catch (err) {
    await store.close();
    throw new Error('binding the collector socket failed', { cause: err });
  }
  const bound = { host, port: runner.port };
  const kernel = new KernelDrops(runner.port);
  let lagMs = 0;
  let lagWindow = 0;

  const stats = (): CollectorStats => {
    const w = runner.stats();
    const r = router.stats();
    const st = store.stats();
    const l = live.stats();
    const malformedByReason = { ...w.malformedByReason, 'too-many': w.malformedByReason['too-many'] + routerRefused };
    let malformed = 0;
    for (const reason of MALFORMED_REASONS) malformed += malformedByReason[reason];
    return {
      ...w, ...st, malformedByReason, malformed,
      timestampFallback: r.timestampFallback, truncated: r.truncated, oversize: r.oversize, interfaces: r.interfaces,
      writeDropped: w.handoffDropped + st.droppedSlow + st.droppedDiskFull + st.lostInWrite,
      kernelDropped: kernel.dropped, socketQueueBytes: kernel.queued, ingestLagMs: lagMs,
      liveClients: l.clients, livePackets: l.packets, liveDropped: l.dropped, workers: runner.workers, workerReceived: runner.perWorker(), workerRestarts: runner.workerRestarts(),
    };
  };
  const registry = collectorMetrics(stats);

  let ready = true;
  const fast = setInterval(() => {
    const now = performance.now();
    runner.tick(now);
    router.tick(now);
    live.flush();
    store.tick();
    lagWindow = Math.max(lagWindow, runner.takeLag());
  }, 100);
  fast.unref();
  const slow = setInterval(() => {
    lagMs = lagWindow;
    lagWindow = 0;
    kernel.refresh().catch(() => undefined);
  }, 1000);
  slow.unref();

  let http: HttpApi | undefined;
  if (opts.http) {
    try {
      // (loaded only when asked for: node:http brings undici and its WebAssembly parser with it)
      const { startHttp } = await import('./http.ts');
      http = await startHttp(
        { host: opts.http.host, port: opts.http.port, logger: log, tokenFile: opts.http.tokenFile, ...(opts.http.publicPaths ? { publicPaths: opts.http.publicPaths } : {}) },
        { store, live, registry, status: stats, ready: () => ready },
      );
    } catch (err) {
      clearInterval(fast);
      clearInterval(slow);
      await runner.stop();
      await store.close();
      throw err;
    }
  }
  log.info(
    { host, port: bound.port, tunnel: mode, dir: opts.outDir, workers: runner.workers, recvBufferSize: runner.recvBufferSize, http: http?.address },
    'collector listening',
  );
  if (runner.recvBufferSize < recvBufferSize) {
    log.warn({ recvBufferSize: runner.recvBufferSize }, 'socket receive buffer capped by net.core.rmem_max; raise it to absorb bursts');
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      ready = false;
      clearInterval(fast);
      clearInterval(slow);
      // the kernel's drop counts go with the sockets: read them while they exist
      await kernel.refresh().catch(() => undefined);
      await runner.stop();
      live.flush();
      await http?.close();
      await store.close();
      const s = stats();
      const reasons = Object.fromEntries(Object.entries(s.malformedByReason).filter(([, n]) => n > 0));
      log.info({ ...s, malformedByReason: reasons, dir: opts.outDir }, 'collector closed');
    })();
    return closing;
  };

  return {
    address: bound,
    http: http?.address,
    registry,
    store,
    live,
    router,
    files: () => store.list().map((e) => join(opts.outDir, e.path)),
    stats,
    close,
  };
}
