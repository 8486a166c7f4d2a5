/**
 * The collector's HTTP API (node:http):
 *
 *   GET /healthz                  200 while the process runs
 *   GET /readyz                   200 once the tunnel port is bound, 503 before and while closing
 *   GET /metrics                  Prometheus text
 *   GET /api/v1/status            the counters, JSON
 *   GET /api/v1/captures          the capture files, JSON (?namespace= &policy= &capture=)
 *   GET /api/v1/captures/<path>   one file; an open one up to its last whole block
 *   GET /stream                   live pcapng (?namespace= &pod= &policy= &direction=)
 *
 * Authentication: `Authorization: Bearer <token>`, the token read from a file
 * (a mounted Secret; re-read when it changes). Paths in `publicPaths` (by
 * default the health endpoints and /metrics) need none. Without a token file
 * nothing is authenticated.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import type { Registry } from 'prom-client';
import { ExitCode, UserError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { REMOVED_STREAM_DIRECTIONS, STREAM_DIRECTIONS, type LiveHub, type StreamDirection, type StreamFilter } from './live.ts';
import type { CaptureStore } from './store.ts';

export const DEFAULT_PUBLIC_PATHS = ['/healthz', '/readyz', '/metrics'] as const;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** A bearer token kept in a file, re-read (at most once a second) when the file changes. */
export class TokenFile {
  readonly path: string;
  readonly #log: Logger;
  #digest: Buffer;
  #stamp = '';
  #checked = 0;

  constructor(path: string, log: Logger) {
    this.path = path;
    this.#log = log;
    const t = this.#read();
    if (t === undefined) throw new UserError(`--auth-token-file: ${path} is missing, unreadable or empty`, { exitCode: ExitCode.badInput });
    this.#digest = digest(t);
  }

  #read(): string | undefined {
    try {
      const st = statSync(this.path);
      this.#stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      const t = readFileSync(this.path, 'utf8').trim();
      return t === '' ? undefined : t;
    } catch {
      return undefined;
    }
  }

  #refresh(): void {
    const now = Date.now();
    if (now - this.#checked < 1000) return;
    this.#checked = now;
    let stamp: string;
    try {
      const st = statSync(this.path);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return; // (a Secret being swapped: keep the token we have)
    }
    if (stamp === this.#stamp) return;
    const t = this.#read();
    if (t === undefined) return;
    this.#digest = digest(t);
    this.#log.info({ file: this.path }, 'auth token re-read');
  }

  check(authorization: string | undefined): boolean {
    this.#refresh();
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!), this.#digest);
  }
}

export interface HttpOptions {
  host: string;
  port: number;
  logger: Logger;
  tokenFile?: string | undefined;
  /** paths served without a token (default /healthz, /readyz, /metrics) */
  publicPaths?: readonly string[];
}

export interface HttpDeps {
  store: CaptureStore;
  live: LiveHub;
  registry: Registry;
  status: () => object;
  ready: () => boolean;
}

export interface HttpApi {
  address: { host: string; port: number };
  close(): Promise<void>;
}

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

class BadRequest extends Error {}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

function problem(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify({ error: message })}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Query parameters, each at most once, only the known ones. */
function query(url: URL, known: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const k of new Set(url.searchParams.keys())) {
    if (!known.includes(k)) throw new BadRequest(`unknown parameter "${k}" (known: ${known.join(', ')})`);
    const all = url.searchParams.getAll(k);
    if (all.length > 1) throw new BadRequest(`parameter "${k}" given ${all.length} times`);
    out[k] = all[0];
  }
  return out;
}

function name(q: Record<string, string | undefined>, key: string): string | undefined {
  const v = q[key];
  if (v === undefined || v === '') return undefined;
  if (!NAME.test(v)) throw new BadRequest(`${key}: "${v}" is not a Kubernetes name`);
  return v;
}

export function streamFilter(url: URL): StreamFilter {
  const q = query(url, ['namespace', 'pod', 'policy', 'direction']);
  const dir = (q.direction ?? 'both').toLowerCase();
  const removed = Object.hasOwn(REMOVED_STREAM_DIRECTIONS, dir) ? REMOVED_STREAM_DIRECTIONS[dir] : undefined;
  if (removed) throw new BadRequest(`direction=${q.direction} was removed in podtap 0.2: it meant ${removed.meant}; write direction=${removed.write}`);
  if (!Object.hasOwn(STREAM_DIRECTIONS, dir)) throw new BadRequest(`direction: expected one of ${Object.keys(STREAM_DIRECTIONS).join(', ')} (from the pod's side)`);
  return { namespace: name(q, 'namespace'), pod: name(q, 'pod'), policy: name(q, 'policy'), direction: dir as StreamDirection };
}

export async function startHttp(opts: HttpOptions, deps: HttpDeps): Promise<HttpApi> {
  const log = opts.logger;
  const token = opts.tokenFile ? new TokenFile(opts.tokenFile, log) : undefined;
  const open = new Set(opts.publicPaths ?? DEFAULT_PUBLIC_PATHS);
  const streams = new Set<ServerResponse>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://collector');
    const path = url.pathname;
    if (token && !open.has(path) && !token.check(req.headers.authorization)) {
      return problem(res, 401, 'a bearer token is required (Authorization: Bearer <token>)', { 'WWW-Authenticate': 'Bearer realm="podtap-collector"' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return problem(res, 405, 'only GET', { Allow: 'GET, HEAD' });
    if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = deps.ready();
      res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      const text = await deps.registry.metrics();
      res.writeHead(200, { 'Content-Type': deps.registry.contentType }).end(text);
    } else if (path === '/api/v1/status') {
      json(res, 200, deps.status());
    } else if (path === '/api/v1/captures') {
      const q = query(url, ['namespace', 'policy', 'capture']);
      const ns = name(q, 'namespace');
      const policy = name(q, 'policy');
      const capture = q.capture;
      const items = deps.store
        .list()
        .filter((e) => (ns === undefined || e.namespace === ns) && (policy === undefined || e.policy === policy) && (capture === undefined || e.capture === capture))
        .map((e) => ({ ...e, start: new Date(e.start).toISOString(), modified: new Date(e.modified).toISOString() }));
      json(res, 200, { items });
    } else if (path.startsWith('/api/v1/captures/')) {
      let rel: string;
      try {
        rel = decodeURIComponent(path.slice('/api/v1/captures/'.length));
      } catch {
        throw new BadRequest('bad percent-encoding in the path');
      }
      const f = deps.store.lookup(rel);
      if (!f) return problem(res, 404, `no capture file "${rel}" (see /api/v1/captures)`);
      res.writeHead(200, {
        'Content-Type': 'application/x-pcapng',
        'Content-Length': f.size,
        'Content-Disposition': `attachment; filename="${basename(rel)}"`,
        'Cache-Control': 'no-store',
      });
      if (req.method === 'HEAD' || f.size === 0) {
        res.end();
        return;
      }
      // an open file: only the whole blocks already on disk
      const rs = createReadStream(f.abs, { start: 0, end: f.size - 1 });
      rs.on('error', (err) => {
        log.warn({ err, file: f.abs }, 'reading a capture file failed');
        res.destroy(err);
      });
      rs.pipe(res);
    } else if (path === '/stream' || path === '/api/v1/stream') {
      const filter = streamFilter(url);
      if (deps.live.full) return problem(res, 503, 'too many live streams', { 'Retry-After': '10' });
      res.writeHead(200, { 'Content-Type': 'application/x-pcapng', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      res.socket?.setNoDelay(true);
      const client = deps.live.add(res, filter);
      streams.add(res);
      log.info({ filter, remote: req.socket.remoteAddress }, 'live stream started');
      const done = (): void => {
        deps.live.remove(client);
        streams.delete(res);
        log.info({ filter, packets: client.packets, dropped: client.dropped }, 'live stream ended');
      };
      res.once('close', done);
    } else {
      problem(res, 404, `no such endpoint: ${path}`);
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof BadRequest) return problem(res, 400, err.message);
      log.error({ err, url: req.url }, 'HTTP request failed');
      if (!res.headersSent) problem(res, 500, 'internal error');
      else res.destroy();
    });
  });
  server.requestTimeout = 60_000; // receiving a request; responses (streams) may last forever
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    address: { host: opts.host, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.end();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
