/**
 * The collector: UDP ingest → Pipeline → pcapng file, plus its metrics.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { hostname, release, type } from 'node:os';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from '../util/log.ts';
import { GENEVE_PORT, VXLAN_PORT, MALFORMED_REASONS, type TunnelMode } from '../wire/format.ts';
import { PcapngFile } from './pcapng.ts';
import { Pipeline, type CollectorStats, type PipelineLimits } from './pipeline.ts';
import type { ReassemblyLimits } from './reassembly.ts';

export type { CollectorStats };

export interface CollectorOptions {
  /** address to bind; default 0.0.0.0 */
  host?: string;
  /** UDP port; default 6081 (Geneve) or 4789 (VXLAN); 0 = any free port */
  port?: number;
  /** directory for the pcapng files (must exist) */
  outDir: string;
  tunnel?: TunnelMode;
  /** when set, data is taken only from sources that announced themselves with it */
  token?: string | undefined;
  logger: Logger;
  /** ingest sockets bound to the same port with SO_REUSEPORT (default 1) */
  sockets?: number;
  /** requested SO_RCVBUF per socket (default 32 MiB; the kernel caps it at net.core.rmem_max) */
  recvBufferSize?: number;
  /** frames are dropped (and counted) while this many bytes wait for the disk (default 256 MiB) */
  maxQueuedBytes?: number;
  /** how often buffered blocks go to the file (default 200 ms) */
  flushIntervalMs?: number;
  limits?: Partial<PipelineLimits>;
  reassembly?: Partial<ReassemblyLimits>;
}

export interface Collector {
  /** the address and port actually bound */
  readonly address: { host: string; port: number };
  /** the pcapng files written so far (the last is the current one) */
  readonly files: readonly string[];
  readonly registry: Registry;
  readonly pipeline: Pipeline;
  stats(): CollectorStats;
  /** Stops receiving, writes everything out, closes the file. Idempotent. */
  close(): Promise<void>;
}

/** podtap-<UTC start, basic ISO 8601>-<seq>.pcapng */
export function captureFileName(start: Date, seq: number): string {
  const t = start.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `podtap-${t}-${String(seq).padStart(4, '0')}.pcapng`;
}

async function createCaptureFile(outDir: string, start: Date): Promise<PcapngFile> {
  for (let seq = 1; ; seq++) {
    try {
      return await PcapngFile.create(join(outDir, captureFileName(start, seq)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || seq >= 9999) throw err;
    }
  }
}

function bindSocket(host: string, port: number, reusePort: boolean, recvBufferSize: number, onMessage: (msg: Buffer, address: string) => void): Promise<Socket> {
  const sock = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false, reusePort, recvBufferSize });
  sock.on('message', (msg, rinfo) => {
    const a = rinfo.address;
    // a dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d
    onMessage(msg, a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: host, port, exclusive: !reusePort }, () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

function metrics(stats: () => CollectorStats): Registry {
  const registry = new Registry();
  const counter = (name: string, help: string, pick: (s: CollectorStats) => number): void => {
    new Counter({
      name: `podtap_collector_${name}`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(pick(stats()));
      },
    });
  };
  counter('received_total', 'Datagrams received on the tunnel port.', (s) => s.received);
  counter('received_bytes_total', 'Bytes of datagrams received on the tunnel port.', (s) => s.receivedBytes);
  counter('pieces_total', 'Well-formed data pieces received.', (s) => s.pieces);
  counter('announcements_total', 'Announcements accepted.', (s) => s.announcements);
  counter('rebuilt_total', 'Frames rebuilt and written to the capture.', (s) => s.rebuilt);
  counter('lost_total', 'Frames the senders numbered that never arrived.', (s) => s.lost);
  counter('incomplete_total', 'Frames dropped with pieces missing (timeout, memory limit, restart).', (s) => s.incomplete);
  counter('duplicates_total', 'Pieces received twice or after their frame was done.', (s) => s.duplicates);
  counter('overlaps_total', 'Pieces overlapping what their frame already had.', (s) => s.overlaps);
  counter('late_total', 'Frames arriving after the sequence window had passed them.', (s) => s.late);
  counter('stream_restarts_total', 'Sender streams whose numbering restarted.', (s) => s.restarts);
  counter('timestamp_fallback_total', 'Frames stamped with the receive time (no clock announced).', (s) => s.timestampFallback);
  counter('truncated_total', 'Frames written shorter than on the wire.', (s) => s.truncated);
  counter('write_dropped_total', 'Frames dropped because the disk could not keep up.', (s) => s.writeDropped);
  counter('bytes_written_total', 'Bytes of pcapng written.', (s) => s.bytesWritten);
  new Counter({
    name: 'podtap_collector_malformed_total',
    help: 'Datagrams dropped as malformed or refused, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const s = stats();
      for (const r of MALFORMED_REASONS) this.inc({ reason: r }, s.malformedByReason[r]);
    },
  });
  new Gauge({
    name: 'podtap_collector_pending_frames',
    help: 'Frames waiting for more pieces.',
    registers: [registry],
    collect() {
      this.set(stats().pendingFrames);
    },
  });
  return registry;
}

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const mode = opts.tunnel ?? 'geneve';
  const host = opts.host ?? '0.0.0.0';
  const port = opts.port ?? (mode === 'vxlan' ? VXLAN_PORT : GENEVE_PORT);
  const nsock = Math.max(1, opts.sockets ?? 1);
  const maxQueued = opts.maxQueuedBytes ?? 256 << 20;
  const log = opts.logger;

  const file = await createCaptureFile(opts.outDir, new Date());
  file.writer.sectionHeader({ userappl: 'podtap', os: `${type()} ${release()}`, hardware: hostname() });
  const pipeline = new Pipeline(file.writer, {
    mode,
    token: opts.token,
    overloaded: () => file.queued > maxQueued,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.reassembly ? { reassembly: opts.reassembly } : {}),
  });
  const onMessage = (msg: Buffer, address: string): void => pipeline.handle(msg, address);

  const sockets: Socket[] = [];
  try {
    const first = await bindSocket(host, port, nsock > 1, opts.recvBufferSize ?? 32 << 20, onMessage);
    sockets.push(first);
    const bound = first.address().port;
    for (let i = 1; i < nsock; i++) sockets.push(await bindSocket(host, bound, true, opts.recvBufferSize ?? 32 << 20, onMessage));
  } catch (err) {
    for (const s of sockets) s.close();
    await file.close();
    throw new Error('binding the collector socket failed', { cause: err });
  }
  const bound = { host, port: sockets[0]!.address().port };
  const rcvbuf = sockets[0]!.getRecvBufferSize();
  log.info({ host, port: bound.port, tunnel: mode, file: file.path, sockets: nsock, recvBufferSize: rcvbuf }, 'collector listening');
  if (rcvbuf < (opts.recvBufferSize ?? 32 << 20)) {
    log.warn({ recvBufferSize: rcvbuf }, 'socket receive buffer capped by net.core.rmem_max; raise it to absorb bursts');
  }

  let writeFailed = false;
  const flushTimer = setInterval(() => {
    pipeline.tick();
    file.writer.flush();
    if (file.error && !writeFailed) {
      writeFailed = true;
      log.error({ err: file.error, file: file.path }, 'capture file write failed');
    }
  }, opts.flushIntervalMs ?? 200);
  flushTimer.unref();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(flushTimer);
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      pipeline.finish();
      await file.close();
      const s = pipeline.stats();
      const reasons = Object.fromEntries(Object.entries(s.malformedByReason).filter(([, n]) => n > 0));
      log.info({ ...s, malformedByReason: reasons, file: file.path }, 'collector closed');
    })();
    return closing;
  };

  return {
    address: bound,
    files: [file.path],
    registry: metrics(() => pipeline.stats()),
    pipeline,
    stats: () => pipeline.stats(),
    close,
  };
}
