/**
 * The controller's HTTP endpoint: /metrics (Prometheus), /healthz (the
 * process answers: liveness), /readyz (caches synced: readiness; a standby
 * replica is ready too — it is ready to take over).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../util/errors.ts';
import { parseHostPort } from '../util/hostport.ts';
import type { Logger } from '../util/log.ts';

export interface HttpEndpoint {
  /** host:port actually bound (port 0 picks one). */
  address: string;
  close(): Promise<void>;
}

/** ":8080" -> all interfaces; "127.0.0.1:0"; "[::1]:9090"; "8080" (util/hostport.ts); a port is required. */
export function parseListenAddress(addr: string): { host: string | undefined; port: number } {
  const want = `invalid listen address "${addr}" (want HOST:PORT or :PORT)`;
  let parsed;
  try {
    parsed = parseHostPort(addr.trim());
  } catch (err) {
    throw new Error(`${want}: ${errorMessage(err)}`, { cause: err });
  }
  if (parsed.port === undefined) throw new Error(want);
  return { host: parsed.host, port: parsed.port };
}

export interface HttpHandlers {
  registry: Registry;
  /** undefined when ready, else why not. */
  notReady(): string | undefined;
  /** undefined while alive (the default), else why the process should be restarted (liveness). */
  notLive?(): string | undefined;
}

export async function startHttp(addr: string, handlers: HttpHandlers, log: Logger): Promise<HttpEndpoint> {
  const { host, port } = parseListenAddress(addr);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === '/healthz' || path === '/livez') {
      const why = handlers.notLive?.();
      return why === undefined ? text(200, 'ok\n') : text(503, `not live: ${why}\n`);
    }
    if (path === '/readyz') {
      const why = handlers.notReady();
      return why === undefined ? text(200, 'ok\n') : text(503, `not ready: ${why}\n`);
    }
    if (path === '/metrics') {
      handlers.registry.metrics().then(
        (body) => text(200, body, handlers.registry.contentType),
        (err: unknown) => {
          log.error({ err }, 'metrics collection failed');
          text(500, 'metrics collection failed\n');
        },
      );
      return;
    }
    text(404, 'not found: try /metrics, /healthz, /readyz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  log.info({ address }, 'serving metrics and health');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
