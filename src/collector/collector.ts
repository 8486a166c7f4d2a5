/**
 * The collector: UDP ingest (worker threads, or this thread) → Router →
 * rotating capture files and live streams, with metrics and the HTTP API.
 *
 *   socket ─ Ingest (parse, authenticate, sequence, reassembly) ─┐   per worker thread
 *   socket ─ Ingest ─────────────────────────────────────────────┤   (SO_REUSEPORT)
 *                                                                ▼   transferred batches
 *     Admission (replays, assignments, stream grants back to every Ingest)
 *       ▼
 *     Router (names, clocks, policies) ─► CaptureStore (files)
 *                                      └► LiveHub (HTTP streams)
 */
import { hostname, release, type } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { usableCpus } from '../util/cpus.ts';
import type { Logger } from '../util/log.ts';
import { podtapVersion } from '../util/version.ts';
import { Admission, type AdmissionLimits, type AllowSet } from './admission.ts';
import type { HttpApi, HttpOptions } from './http.ts';
import { DEFAULT_MAX_SKEW_MS } from './ingest.ts';
import { LiveHub, type LiveOptions } from './live.ts';
import { collectorMetrics } from './metrics.ts';
import { DEFAULT_RECV_BUFFER, startIngest, type IngestRunner, type IngestStageOptions } from './pool.ts';
import { Retention, type RetentionOptions } from './retention.ts';
import { Router, type RouterLimits } from './router.ts';
import { KernelDrops } from './sockets.ts';
import { collectorStats, type CollectorStats } from './stats.ts';
import { CaptureStore, type StoreOptions } from './store.ts';

export { captureFileName } from './store.ts';
export type { CollectorStats } from './stats.ts';

/** The collector's configuration, one part per stage. */
export interface CollectorOptions {
  logger: Logger;
  /** the tunnel port and the threads that parse, sequence and rebuild (default: 0.0.0.0:6081, Geneve, in this thread) */
  ingest?: IngestStageOptions;
  /** which authenticated announcements are acted on (replays, assignments) and how long a stream stays granted */
  admission?: { allow?: AllowSet; grantTtlMs?: number; limits?: Partial<AdmissionLimits> };
  /** what is kept about senders (names, clocks, policies) */
  router?: { limits?: Partial<RouterLimits> };
  /** the capture files; `dir` must exist */
  store: Omit<StoreOptions, 'logger' | 'section'>;
  /** which closed files are deleted (default: none) */
  retention?: RetentionOptions;
  /** live streams */
  live?: Omit<LiveOptions, 'section'>;
  /** the HTTP API; absent = none */
  http?: Omit<HttpOptions, 'logger'>;
  /** process metrics (CPU, memory, event loop, GC) in /metrics: the CLI's; off in tests, which run many collectors in one process */
  processMetrics?: boolean;
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
  const log = opts.logger;
  const dir = opts.store.dir;
  // (capinfos: "Capture application: podtap 0.1.0")
  const section = { userappl: `podtap ${podtapVersion()}`, os: `${type()} ${release()}`, hardware: hostname() };

  const store = await CaptureStore.open({ ...opts.store, logger: log, section });
  const retention = new Retention(store, { ...opts.retention, logger: log, ...(opts.store.clock ? { clock: opts.store.clock } : {}) });
  store.onFileClosed = () => retention.run();
  retention.run();
  const live = new LiveHub({ ...opts.live, section });
  const router = new Router([store, live], { limits: opts.router?.limits ?? {} });
  /** when this process started counting: a policy that started before it cannot be compared with the agents' counts */
  const startedAt = new Date().toISOString();
  const admission = new Admission(router, {
    authenticated: !!opts.ingest?.secret, maxSkewMs: opts.ingest?.maxSkewMs ?? DEFAULT_MAX_SKEW_MS,
    allow: opts.admission?.allow, limits: opts.admission?.limits,
    ...(opts.admission?.grantTtlMs === undefined ? {} : { grantTtlMs: opts.admission.grantTtlMs }),
  });
  if (!opts.ingest?.secret) log.warn('no install secret: announcements are not authenticated and data is taken from any sender');

  let runner: IngestRunner;
  try {
    runner = await startIngest(opts.ingest ?? {}, admission, log);
  } catch (err) {
    admission.close();
    await store.close();
    throw new Error('binding the collector socket failed', { cause: err });
  }
  admission.onGrant = (address, instance, ttlMs) => runner.grant(address, instance, ttlMs);
  admission.onRevoke = (address, instance) => runner.revoke(address, instance);
  const mode = opts.ingest?.tunnel ?? 'geneve';
  const host = opts.ingest?.host ?? '0.0.0.0';
  const bound = { host, port: runner.port };
  const kernel = new KernelDrops(runner.port);
  let lagMs = 0;
  let lagWindow = 0;

  const stats = (): CollectorStats =>
    collectorStats({
      ingest: runner.stats(), admission: admission.stats(), router: router.stats(), store: store.stats(), retention: retention.stats(), live: live.stats(),
      kernel: { dropped: kernel.dropped, queued: kernel.queued },
      runner: { workers: runner.workers, perWorker: runner.perWorker(), restarts: runner.workerRestarts() },
      ingestLagMs: lagMs,
    });
  const registry = collectorMetrics(stats, { processMetrics: opts.processMetrics ?? false });

  let ready = true;
  const fast = setInterval(() => {
    const now = performance.now();
    runner.tick(now);
    router.tick(now);
    live.flush();
    store.tick();
    retention.tick();
    lagWindow = Math.max(lagWindow, runner.takeLag());
  }, 100);
  fast.unref();
  const slow = setInterval(() => {
    lagMs = lagWindow;
    lagWindow = 0;
    admission.tick();
    kernel.refresh().catch(() => undefined);
  }, 1000);
  slow.unref();

  let http: HttpApi | undefined;
  if (opts.http) {
    try {
      // (loaded only when asked for: node:http brings undici and its WebAssembly parser with it)
      const { startHttp } = await import('./http.ts');
      http = await startHttp({ ...opts.http, logger: log }, { store, live, registry, status: () => ({ ...stats(), startTime: startedAt, policies: router.rebuiltByPolicy(), policiesTruncated: router.rebuiltTruncated() }), ready: () => ready });
    } catch (err) {
      clearInterval(fast);
      clearInterval(slow);
      await runner.stop();
      await store.close();
      throw err;
    }
  }
  log.info(
    { host, port: bound.port, tunnel: mode, dir, workers: runner.workers, recvBufferSize: runner.recvBufferSize, http: http?.address },
    'collector listening',
  );
  if (runner.recvBufferSize < (opts.ingest?.recvBufferSize ?? DEFAULT_RECV_BUFFER)) {
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
      admission.close();
      live.flush();
      await http?.close();
      await store.close();
      const s = stats();
      const reasons = Object.fromEntries(Object.entries(s.malformedByReason).filter(([, n]) => n > 0));
      log.info({ ...s, malformedByReason: reasons, dir }, 'collector closed');
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
    files: () => store.list().map((e) => join(dir, e.path)),
    stats,
    close,
  };
}
