/**
 * The embedded Kubernetes API ("devcluster"): kube-apiserver's REST and
 * watch protocol over plain HTTP, in memory, for tests, the demo and local
 * development. It is a stand-in, not a cluster: nothing schedules or runs
 * pods, there is no authentication or authorization, and built-in kinds are
 * stored without their Go validation. See docs in server.ts and api.ts for
 * what it does implement.
 */
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { createClusterState, createHandler, createHttpServer } from './server.ts';

export { writeKubeconfig, kubeconfigYaml } from './kubeconfig.ts';
export { GIT_VERSION } from './server.ts';
// The in-process server without a listener, for benchmarks that drive it directly.
export { createClusterState, createHandler, createHttpServer } from './server.ts';
export { defaultWriteOptions } from './api.ts';

export interface ApiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface StartOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  logger?: Logger;
  /** Changes kept per resource for watches resuming from an older resourceVersion (default 10,000). */
  historySize?: number;
  /** Interval of BOOKMARK events on watches that allow them (default 60 s). */
  bookmarkIntervalMs?: number;
  /** Unsent bytes after which a watch that does not keep up is closed (default 64 MiB). */
  maxWatchBufferBytes?: number;
  /** How long a deleted pod on a node stays Terminating before the stand-in kubelet finishes it (default 200 ms). */
  podTerminationMs?: number;
}

export async function startApiServer(opts: StartOptions = {}): Promise<ApiServer> {
  const logger = opts.logger ?? pino({ level: 'silent' });
  const host = opts.host ?? '127.0.0.1';
  const serverOpts = {
    logger,
    historySize: opts.historySize,
    bookmarkIntervalMs: opts.bookmarkIntervalMs,
    maxWatchBufferBytes: opts.maxWatchBufferBytes,
    podTerminationMs: opts.podTerminationMs,
  };
  const state = createClusterState(serverOpts);
  let address = '';
  const handler = createHandler(state, serverOpts, () => address);
  const server = createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  address = `${hostPart}:${port}`;
  const url = `http://${address}`;
  logger.info({ url }, 'devcluster API listening');
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        state.controllers.close();
        state.endpoints.close();
        state.gc.close();
        state.store.closeAll();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        handler.close();
        await closed;
      })();
      return closing;
    },
  };
}
