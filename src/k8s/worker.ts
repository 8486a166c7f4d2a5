/**
 * The worker loop of a controller (the controller's policies, the agent's
 * assignments): N workers take keys from a WorkQueue and sync each. A sync
 * that throws is retried with the queue's backoff, unless its error is
 * terminal; one that asks to be requeued comes back after that delay. Each
 * attempt logs under a child logger naming the key and the attempt
 * (reconcileId).
 */
import type { Logger } from '../util/log.ts';
import type { WorkQueue } from './queue.ts';

/** What a sync says about itself; other fields go to the debug log. */
export interface SyncResult {
  /** How the attempt went, for metrics and the debug log (default 'success'). */
  result?: string;
  /** Sync this key again after this long, whatever else happens. */
  requeueAfterMs?: number | undefined;
}

export interface WorkerLoopOptions {
  queue: WorkQueue;
  workers: number;
  logger: Logger;
  /** The log field that names a key: policy, assignment. */
  keyField: string;
  /** Prefix of each attempt's id in the logs (a replica's identity). */
  attemptPrefix?: string | undefined;
  sync(key: string, log: Logger): Promise<SyncResult | void>;
  /** Errors that retrying will not fix: the key is dropped, not retried. */
  isTerminal?: ((err: unknown) => boolean) | undefined;
  /** Called after every attempt: its result ('error' and 'terminal' for failures) and duration. */
  observe?: ((result: string, seconds: number) => void) | undefined;
}

/** Start the workers; resolves when the queue is shut down and every worker has finished. */
export function runWorkers(opts: WorkerLoopOptions): Promise<void> {
  const { queue } = opts;
  let attempt = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const log = opts.logger.child({ [opts.keyField]: key, reconcileId: `${opts.attemptPrefix ? `${opts.attemptPrefix}-` : ''}${++attempt}` });
      const started = performance.now();
      let result = 'error';
      try {
        const r = (await opts.sync(key, log)) ?? {};
        result = r.result ?? 'success';
        queue.forget(key);
        if (r.requeueAfterMs !== undefined) queue.addAfter(key, r.requeueAfterMs);
        log.debug({ ...r, result }, 'reconciled');
      } catch (err) {
        if (opts.isTerminal?.(err)) {
          result = 'terminal';
          queue.forget(key);
          log.error({ err }, 'reconcile failed for good');
        } else {
          const retryInMs = queue.addRateLimited(key);
          log.warn({ err, retryInMs, retries: queue.retries(key) }, 'reconcile failed, will retry');
        }
      } finally {
        opts.observe?.(result, (performance.now() - started) / 1000);
        queue.done(key);
      }
    }
  };
  return Promise.all(Array.from({ length: Math.max(1, opts.workers) }, worker)).then(() => undefined);
}
