/**
 * Serving a watch: a chunked stream of `{"type":…,"object":…}` lines.
 * - no resourceVersion (or "0"): synthetic ADDED for the current state, then changes;
 * - a resourceVersion: the retained changes after it, then live ones; older
 *   than the retained window → one ERROR event with a 410 Expired Status,
 *   as kube-apiserver's watch cache answers;
 * - selectors decide per event with old and new state: MODIFIED when both
 *   match, ADDED when the object starts matching, DELETED when it stops;
 * - BOOKMARKs carry the current resourceVersion when asked for;
 *   `sendInitialEvents=true` ends the initial state with the
 *   `k8s.io/initial-events-end` bookmark;
 * - timeoutSeconds (default: 30–60 min, like --min-request-timeout), client
 *   disconnects and slow readers (too much unsent data) end the watch.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Api } from './api.ts';
import { apiVersionOf, type ResourceDef } from './registry.ts';
import type { ChangeEvent, StoreWatcher } from './store.ts';
import type { FieldSelector, LabelSelector } from './selectors.ts';
import type { KubeObject } from './objects.ts';
import { buildTable, type IncludeObject } from './table.ts';

export type OutputShape = { kind: 'object' } | { kind: 'table'; include: IncludeObject } | { kind: 'metadata' };

export interface WatchRequest {
  def: ResourceDef;
  namespace: string | undefined;
  labelSelector: LabelSelector;
  fieldSelector: FieldSelector;
  resourceVersion: string | undefined;
  allowBookmarks: boolean;
  sendInitialEvents: boolean | undefined;
  timeoutSeconds: number | undefined;
  shape: OutputShape;
}

export interface WatchConfig {
  bookmarkIntervalMs: number;
  maxBufferedBytes: number;
  log: Logger;
}

export function encodeObject(api: Api, def: ResourceDef, stored: KubeObject, shape: OutputShape): unknown {
  const o = api.output(def, stored);
  if (shape.kind === 'table') return buildTable(def, [o], { include: shape.include });
  if (shape.kind === 'metadata') return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
  return o;
}

export function serveWatch(api: Api, w: WatchRequest, req: IncomingMessage, res: ServerResponse, cfg: WatchConfig): void {
  const { def } = w;
  const r = api.resourceStore(def);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  let closed = false;
  let bookmarkTimer: NodeJS.Timeout | undefined;
  let timeoutTimer: NodeJS.Timeout | undefined;
  const cacheKey = w.shape.kind === 'table' ? undefined : `${w.shape.kind}|${apiVersionOf(def)}`;

  const close = () => {
    if (closed) return;
    closed = true;
    r.watchers.delete(watcher);
    if (bookmarkTimer) clearInterval(bookmarkTimer);
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (!res.writableEnded) res.end();
  };

  const write = (line: string) => {
    if (closed) return;
    res.write(line);
    if (res.writableLength > cfg.maxBufferedBytes) {
      // kube-apiserver closes watchers that do not keep up; the client re-lists.
      cfg.log.warn({ resource: def.resource, buffered: res.writableLength }, 'closing watch of a slow reader');
      close();
    }
  };

  const line = (type: string, stored: KubeObject, e?: ChangeEvent) => {
    if (e && cacheKey && e.type === type && e.object === stored) {
      e.encoded ??= new Map();
      let s = e.encoded.get(cacheKey);
      if (s === undefined) {
        s = `${JSON.stringify({ type, object: encodeObject(api, def, stored, w.shape) })}\n`;
        e.encoded.set(cacheKey, s);
      }
      return s;
    }
    return `${JSON.stringify({ type, object: encodeObject(api, def, stored, w.shape) })}\n`;
  };

  const matches = (o: KubeObject) => api.matches(def, w.labelSelector, w.fieldSelector, o);

  const deliver = (e: ChangeEvent) => {
    const now = e.type !== 'DELETED' && matches(e.object);
    const before = e.prev !== undefined && matches(e.prev);
    if (now && !before) write(line('ADDED', e.object, e));
    else if (now && before) write(line('MODIFIED', e.object, e));
    else if (!now && before) {
      const gone = e.type === 'DELETED' ? e.object : { ...e.prev!, metadata: { ...e.prev!.metadata, resourceVersion: String(e.rv) } };
      write(line('DELETED', gone, e));
    }
  };

  const watcher: StoreWatcher = {
    namespace: def.namespaced ? w.namespace : undefined,
    deliver: (e) => deliver(e),
    terminate: () => close(),
  };

  const bookmark = (annotations?: Record<string, string>) => {
    const metadata: Record<string, unknown> = { resourceVersion: String(api.store.resourceVersion) };
    if (annotations) metadata.annotations = annotations;
    write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: def.kind, apiVersion: apiVersionOf(def), metadata } })}\n`);
  };

  const rv = w.resourceVersion;
  // sendInitialEvents, when given, decides; otherwise no resourceVersion (or "0") means "list, then watch".
  const initial = w.sendInitialEvents ?? (rv === undefined || rv === '' || rv === '0');
  if (initial) {
    for (const key of r.sortedKeys(w.namespace)) {
      const o = r.getByKey(key);
      if (o && matches(o)) write(line('ADDED', o));
    }
    if (w.sendInitialEvents === true && w.allowBookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
  } else if (rv !== undefined && rv !== '' && rv !== '0') {
    const from = /^\d+$/.test(rv) ? Number(rv) : NaN;
    const events = Number.isNaN(from) ? undefined : r.eventsAfter(from);
    if (events === undefined) {
      const message = Number.isNaN(from) ? `invalid resource version: ${rv}` : `too old resource version: ${from} (${r.horizon + 1})`;
      const code = Number.isNaN(from) ? 400 : 410;
      const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: code === 410 ? 'Expired' : 'BadRequest', code };
      res.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      closed = true;
      return;
    }
    for (const e of events) {
      if (watcher.namespace === undefined || watcher.namespace === (e.object.metadata.namespace ?? '')) deliver(e);
    }
  }
  if (closed) return;
  r.watchers.add(watcher);
  if (w.allowBookmarks) {
    bookmarkTimer = setInterval(() => bookmark(), cfg.bookmarkIntervalMs);
    bookmarkTimer.unref();
  }
  const timeoutMs = w.timeoutSeconds !== undefined ? w.timeoutSeconds * 1000 : (1800 + Math.random() * 1800) * 1000;
  timeoutTimer = setTimeout(() => {
    // A last bookmark lets the client resume from the newest resourceVersion.
    if (w.allowBookmarks) bookmark();
    close();
  }, timeoutMs);
  timeoutTimer.unref();
  req.on('close', close);
  res.on('close', close);
  res.on('error', close);
}
