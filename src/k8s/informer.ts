/**
 * An informer (client-go's reflector + indexer + handlers): list a kind page
 * by page, then watch from the list's resourceVersion; keep an indexed Store
 * up to date; tell handlers what changed, with the old object on updates.
 *
 * Why not client-node's ListWatch: its update callback has no old object (a
 * relabelled pod must reach the policies that selected its *old* labels), it
 * stops for good on the first non-410 error, it has no indexes, and it keeps
 * whole objects (managedFields and all): `transform` slims each object before
 * it is stored, which is what keeps 30,000 pods in a few tens of MB.
 */
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { objectKey, type KubeClient, type KubeObject, type ResourceRef, type WatchEvent } from './client.ts';
import { httpStatus, isGone } from './errors.ts';
import { Store, type IndexFunc } from './store.ts';

export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(old: T, obj: T): void;
  delete?(obj: T): void;
}

export interface InformerOptions<T extends KubeObject> {
  client: KubeClient;
  resource: ResourceRef;
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  /** Slim each object before it is stored and handed out; default: drop managedFields. */
  transform?: ((obj: KubeObject) => T) | undefined;
  indexers?: Record<string, IndexFunc<T>> | undefined;
  /** Two versions of an object (after transform) that are equal raise no update. */
  equal?: ((a: T, b: T) => boolean) | undefined;
  pageSize?: number | undefined;
  logger?: Logger | undefined;
  /** Backoff after an error: doubling from min to max (default 250 ms .. 30 s). */
  minBackoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
  /** Server-side watch timeout, chosen at random in [min, max) seconds (client-go: 5..10 min). */
  watchTimeoutSeconds?: readonly [number, number] | undefined;
}

/** Drop what no controller reads and what makes objects big: managedFields, kubectl's last-applied copy. */
export function stripManagedFields<T extends KubeObject>(obj: T): T {
  const md = obj.metadata as Record<string, unknown>;
  if (md.managedFields !== undefined) delete md.managedFields;
  const ann = md.annotations as Record<string, string> | undefined;
  if (ann && 'kubectl.kubernetes.io/last-applied-configuration' in ann) {
    delete ann['kubectl.kubernetes.io/last-applied-configuration'];
  }
  return obj;
}

export class Informer<T extends KubeObject> {
  readonly store: Store<T>;
  readonly resource: ResourceRef;
  private readonly opts: InformerOptions<T>;
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly transform: (obj: KubeObject) => T;
  private readonly log: Logger;
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private stopped = true;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private relistHooks: (() => void)[] = [];

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    this.resource = opts.resource;
    this.store = new Store<T>(opts.indexers ?? {});
    this.transform = opts.transform ?? ((o) => stripManagedFields(o) as T);
    this.log = (opts.logger ?? silentLogger).child({ resource: opts.resource.plural });
  }

  /** Register handlers; they run synchronously on the event and must only do cheap work (enqueue). */
  on(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  /** Called after every full list has been applied (the first and any after a 410). */
  onRelist(hook: () => void): void {
    this.relistHooks.push(hook);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list is in the store. */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    await this.loop;
    this.loop = undefined;
  }

  private async run(): Promise<void> {
    const min = this.opts.minBackoffMs ?? 250;
    const max = this.opts.maxBackoffMs ?? 30_000;
    let backoff = min;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        if (!this.resourceVersion) {
          await this.relist(this.abort.signal);
          backoff = min;
        }
        if (this.stopped) break;
        const began = Date.now();
        const delivered = await this.watchOnce(this.abort.signal);
        if (delivered) backoff = min;
        else if (Date.now() - began < 1000 && this.resourceVersion && !this.stopped) {
          // A server that ends watches at once must not make us spin.
          await sleep(backoff, this.abort.signal);
          backoff = Math.min(backoff * 2, max);
        }
      } catch (err) {
        if (this.stopped) break;
        if (isGone(err)) {
          this.resourceVersion = '';
          this.log.info({ err }, 'watch expired, relisting');
          continue;
        }
        this.log.warn({ err, status: httpStatus(err), retryInMs: backoff }, 'list/watch failed');
        await sleep(backoff * (0.8 + 0.4 * Math.random()), this.abort.signal);
        backoff = Math.min(backoff * 2, max);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    // The first list goes straight into the (empty) store: no second copy of everything to diff.
    if (this.store.size === 0) return this.firstList(signal);
    const fresh = new Map<string, T>();
    const rv = await this.opts.client.listPages<KubeObject>(
      this.resource,
      {
        namespace: this.opts.namespace,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        pageSize: this.opts.pageSize,
        signal,
      },
      (items) => {
        for (const raw of items) {
          const obj = this.transform(raw);
          fresh.set(objectKey(obj), obj);
        }
      },
    );
    if (this.stopped) return;
    const gone: T[] = [];
    for (const key of [...this.store.keys()]) {
      if (!fresh.has(key)) gone.push(this.store.remove(key)!);
    }
    for (const obj of gone) this.emit('delete', undefined, obj);
    for (const obj of fresh.values()) this.apply(obj);
    this.listed(rv, fresh.size);
  }

  private async firstList(signal: AbortSignal): Promise<void> {
    const rv = await this.opts.client.listPages<KubeObject>(
      this.resource,
      { namespace: this.opts.namespace, labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector, pageSize: this.opts.pageSize, signal },
      (items) => {
        if (this.stopped) return;
        for (const raw of items) this.apply(this.transform(raw));
      },
    );
    if (this.stopped) return;
    this.listed(rv, this.store.size);
  }

  private listed(rv: string, objects: number): void {
    this.resourceVersion = rv;
    this.log.debug({ objects, resourceVersion: rv }, 'listed');
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters) w();
      this.syncWaiters = [];
    }
    for (const hook of this.relistHooks) hook();
  }

  /** Store an object and tell the handlers (add, or update unless equal). */
  private apply(obj: T): void {
    const old = this.store.upsert(obj);
    if (!old) this.emit('add', undefined, obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion && !(this.opts.equal?.(old, obj) ?? false)) {
      this.emit('update', old, obj);
    }
  }

  /** Returns whether any event arrived (a healthy stream resets the backoff). */
  private async watchOnce(signal: AbortSignal): Promise<boolean> {
    const [lo, hi] = this.opts.watchTimeoutSeconds ?? [300, 600];
    const inner = new AbortController();
    const both = AbortSignal.any([signal, inner.signal]);
    let delivered = false;
    let relist = false;
    await this.opts.client.watch<KubeObject>(
      this.resource,
      {
        namespace: this.opts.namespace,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        resourceVersion: this.resourceVersion,
        timeoutSeconds: Math.floor(lo + Math.random() * (hi - lo)),
        allowWatchBookmarks: true,
        signal: both,
      },
      (event: WatchEvent<KubeObject>) => {
        if (relist || this.stopped) return;
        delivered = true;
        this.handleEvent(event, () => {
          relist = true;
          // Not from inside the response's 'data' handler: aborting there, with
          // the stream already complete (a server sends its 410 ERROR event and
          // ends it), made Node throw the AbortError as an uncaught exception
          // and the process died on every expired watch.
          setImmediate(() => inner.abort());
        });
      },
    );
    if (relist) this.resourceVersion = '';
    return delivered;
  }

  private handleEvent(event: WatchEvent<KubeObject>, relist: () => void): void {
    const raw = event.object;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const obj = this.transform(raw);
        this.apply(obj);
        break;
      }
      case 'DELETED': {
        const obj = this.transform(raw);
        const old = this.store.remove(objectKey(obj));
        this.emit('delete', undefined, old ?? obj);
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        // A Status: 410 Expired/Gone most often; for any other, a fresh list is the safe answer.
        this.log.info({ status: raw }, 'watch error event, relisting');
        relist();
        return;
      }
      default:
        return;
    }
    const rv = raw?.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  private emit(kind: 'add' | 'update' | 'delete', old: T | undefined, obj: T): void {
    dispatch(this.handlers, kind, old, obj, this.log);
  }
}

/** Tell @handlers of an event; a handler that throws is logged, the others still run. */
export function dispatch<T extends KubeObject>(handlers: readonly InformerHandlers<T>[], kind: 'add' | 'update' | 'delete', old: T | undefined, obj: T, log: Logger): void {
  for (const h of handlers) {
    try {
      if (kind === 'add') h.add?.(obj);
      else if (kind === 'update') h.update?.(old!, obj);
      else h.delete?.(obj);
    } catch (err) {
      log.error({ err, key: objectKey(obj), event: kind }, 'informer handler failed');
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
