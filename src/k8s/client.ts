/**
 * A small REST client for the Kubernetes API on top of @kubernetes/client-node
 * (its KubeConfig for credentials and TLS, its HTTP library, its ApiException).
 *
 * Why not the generated typed APIs: they convert every object through
 * ObjectSerializer (timestamps become Date objects, field by field), which is
 * slow on 30,000 pods and differs from what a watch delivers (plain JSON), so a
 * cache filled by both would hold two shapes. Here every object is the
 * server's JSON, lists are paginated, and watches are streamed line by line.
 *
 * Credentials are resolved once a minute, not per request: client-node builds
 * a new TLS agent on every applySecurityAuthentication, so a controller making
 * thousands of writes would open thousands of connections. The first
 * dispatcher is kept (connection reuse); headers (a rotating service-account
 * token) are refreshed on their TTL and after any 401.
 */
import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, httpStatus, type Status } from './errors.ts';

/** Where a kind of object lives in the API. */
export interface ResourceRef {
  /** API group; '' for the core group. */
  group: string;
  version: string;
  /** Lowercase plural used in paths (pods, sniffpolicies). */
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** The fields every object has that this module reads. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    creationTimestamp?: string;
    [key: string]: unknown;
  };
}

export interface ListOptions {
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  /** Page size (`limit`); 500 as client-go's reflector. */
  pageSize?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface WatchOptions {
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  resourceVersion?: string | undefined;
  /** Ask the server to end the watch after this long (client-go picks 5–10 min at random). */
  timeoutSeconds?: number | undefined;
  allowWatchBookmarks?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** Abort when nothing arrives for this long; defaults to timeoutSeconds + 30 s. */
  idleTimeoutMs?: number | undefined;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
export interface WatchEvent<T = unknown> {
  type: WatchEventType;
  object: T;
}

export const PatchType = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;
export type PatchType = keyof typeof PatchType;

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined> | undefined;
  body?: unknown;
  contentType?: string | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

export interface KubeClientOptions {
  /** Per-request timeout (not for watches); default 30 s. */
  timeoutMs?: number;
  /** How long resolved credentials are reused; default 60 s. */
  authTtlMs?: number;
  userAgent?: string;
}

type Dispatcher = ReturnType<RequestContext['getDispatcher']>;

export function apiVersionOf(ref: ResourceRef): string {
  return ref.group ? `${ref.group}/${ref.version}` : ref.version;
}

/** The REST path of a collection, an object or one of its subresources. */
export function resourcePath(ref: ResourceRef, namespace?: string, name?: string, subresource?: string): string {
  let p = ref.group ? `/apis/${ref.group}/${ref.version}` : `/api/${ref.version}`;
  if (ref.namespaced && namespace) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${ref.plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (subresource) p += `/${subresource}`;
  return p;
}

/** `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: { metadata: { name?: string; namespace?: string } }): string {
  const ns = obj.metadata.namespace;
  return ns ? `${ns}/${obj.metadata.name ?? ''}` : (obj.metadata.name ?? '');
}

/** Split a key made by objectKey. */
export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly server: string;
  private readonly http = new IsomorphicFetchHttpLibrary();
  private readonly timeoutMs: number;
  private readonly authTtlMs: number;
  private readonly userAgent: string;
  private auth: { headers: Record<string, string>; at: number } | undefined;
  private authPending: Promise<void> | undefined;
  private dispatcher: Dispatcher;

  constructor(kubeConfig: KubeConfig, opts: KubeClientOptions = {}) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the Kubernetes configuration has no current cluster');
    this.kubeConfig = kubeConfig;
    this.server = cluster.server.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.authTtlMs = opts.authTtlMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'podtap';
  }

  private async refreshAuth(): Promise<void> {
    const probe = new RequestContext(this.server, HttpMethod.GET);
    await this.kubeConfig.applySecurityAuthentication(probe);
    this.auth = { headers: probe.getHeaders(), at: Date.now() };
    this.dispatcher ??= probe.getDispatcher();
  }

  private async authorize(ctx: RequestContext): Promise<void> {
    if (!this.auth || Date.now() - this.auth.at > this.authTtlMs) {
      this.authPending ??= this.refreshAuth().finally(() => {
        this.authPending = undefined;
      });
      await this.authPending;
    }
    for (const [k, v] of Object.entries(this.auth!.headers)) ctx.setHeaderParam(k, v);
    if (this.dispatcher) ctx.setDispatcher(this.dispatcher);
  }

  private buildUrl(path: string, query?: RequestOptions['query']): string {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    return url.toString();
  }

  private async send(method: HttpMethod, path: string, opts: RequestOptions, signal: AbortSignal) {
    const ctx = new RequestContext(this.buildUrl(path, opts.query), method);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('User-Agent', this.userAgent);
    if (opts.body !== undefined) {
      ctx.setHeaderParam('Content-Type', opts.contentType ?? 'application/json');
      ctx.setBody(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    }
    await this.authorize(ctx);
    ctx.setSignal(signal);
    try {
      return await this.http.send(ctx).toPromise();
    } catch (err) {
      throw new Error(`${method} ${path}: request failed`, { cause: err });
    }
  }

  /** One API call; the parsed JSON body, or a KubeApiError for any non-2xx answer. */
  async request<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      const resp = await this.send(method, path, opts, signal);
      let text: string;
      try {
        text = await resp.body.text();
      } catch (err) {
        throw new Error(`${method} ${path}: reading the response failed`, { cause: err });
      }
      if (resp.httpStatusCode >= 200 && resp.httpStatusCode < 300) return (text ? JSON.parse(text) : undefined) as T;
      if (resp.httpStatusCode === 401 && attempt === 0) {
        this.auth = undefined; // a rotated token: fetch credentials again, once
        continue;
      }
      throw new KubeApiError(resp.httpStatusCode, method, path, parseStatus(text), resp.headers);
    }
  }

  /**
   * List a collection page by page (`limit`/`continue`), handing each page
   * to `onPage` so the caller can slim objects before the next page arrives.
   * Returns the list's resourceVersion, to start a watch from.
   */
  async listPages<T>(ref: ResourceRef, opts: ListOptions, onPage: (items: T[]) => void): Promise<string> {
    const path = resourcePath(ref, opts.namespace);
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.request<{ items?: T[] | null; metadata?: { resourceVersion?: string; continue?: string } }>(HttpMethod.GET, path, {
        query: { limit: opts.pageSize ?? 500, continue: cont, labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
        signal: opts.signal,
      });
      onPage(page.items ?? []);
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return rv;
  }

  /** All objects of a collection (paginated). */
  async list<T>(ref: ResourceRef, opts: ListOptions = {}): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    const resourceVersion = await this.listPages<T>(ref, opts, (page) => {
      for (const o of page) items.push(o);
    });
    return { items, resourceVersion };
  }

  get<T>(ref: ResourceRef, namespace: string | undefined, name: string, subresource?: string): Promise<T> {
    return this.request<T>(HttpMethod.GET, resourcePath(ref, namespace, name, subresource));
  }

  create<T extends KubeObject>(ref: ResourceRef, obj: T): Promise<T> {
    return this.request<T>(HttpMethod.POST, resourcePath(ref, obj.metadata.namespace), { body: withTypeMeta(ref, obj) });
  }

  /** PUT the object; its metadata.resourceVersion makes it conditional (409 when stale). */
  replace<T extends KubeObject>(ref: ResourceRef, obj: T, subresource?: string): Promise<T> {
    const { name, namespace } = obj.metadata;
    if (!name) throw new Error(`replace ${ref.kind}: the object has no name`);
    return this.request<T>(HttpMethod.PUT, resourcePath(ref, namespace, name, subresource), { body: withTypeMeta(ref, obj) });
  }

  replaceStatus<T extends KubeObject>(ref: ResourceRef, obj: T): Promise<T> {
    return this.replace(ref, obj, 'status');
  }

  patch<T>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType = 'merge', opts: { subresource?: string; fieldManager?: string; force?: boolean } = {}): Promise<T> {
    return this.request<T>(HttpMethod.PATCH, resourcePath(ref, namespace, name, opts.subresource), {
      body: patch,
      contentType: PatchType[type],
      query: { fieldManager: opts.fieldManager ?? (type === 'apply' ? this.userAgent : undefined), force: opts.force },
    });
  }

  patchStatus<T>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.patch<T>(ref, namespace, name, patch, type, { subresource: 'status' });
  }

  /** DELETE; with `uid` or `resourceVersion` only that incarnation/version is deleted (409 otherwise). */
  async delete(ref: ResourceRef, namespace: string | undefined, name: string, opts: { uid?: string; resourceVersion?: string; propagationPolicy?: 'Foreground' | 'Background' | 'Orphan' } = {}): Promise<void> {
    const preconditions: Record<string, string> = {};
    if (opts.uid) preconditions.uid = opts.uid;
    if (opts.resourceVersion) preconditions.resourceVersion = opts.resourceVersion;
    const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions' };
    if (Object.keys(preconditions).length > 0) body.preconditions = preconditions;
    if (opts.propagationPolicy) body.propagationPolicy = opts.propagationPolicy;
    await this.request<unknown>(HttpMethod.DELETE, resourcePath(ref, namespace, name), { body });
  }

  /**
   * One watch request: resolves when the server ends the stream, rejects
   * with a KubeApiError when it refuses (410 Gone: relist), or with an Error
   * on a network failure or when nothing arrived for idleTimeoutMs. ERROR
   * events are handed to `onEvent` like the others (their object is a Status).
   */
  async watch<T>(ref: ResourceRef, opts: WatchOptions, onEvent: (event: WatchEvent<T>) => void): Promise<void> {
    const path = resourcePath(ref, opts.namespace);
    const timeoutSeconds = opts.timeoutSeconds ?? 300;
    const idleMs = opts.idleTimeoutMs ?? (timeoutSeconds + 30) * 1000;
    const abort = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, abort.signal]) : abort.signal;
    let idle = setTimeout(() => abort.abort(new Error('watch idle timeout')), idleMs);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => abort.abort(new Error('watch idle timeout')), idleMs);
    };
    try {
      const query = {
        watch: 'true',
        resourceVersion: opts.resourceVersion,
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
        timeoutSeconds,
        allowWatchBookmarks: opts.allowWatchBookmarks ?? true,
      };
      const resp = await this.send(HttpMethod.GET, path, { query }, signal);
      if (resp.httpStatusCode !== 200) {
        const text = await resp.body.text().catch(() => '');
        throw new KubeApiError(resp.httpStatusCode, 'WATCH', path, parseStatus(text), resp.headers);
      }
      const stream = resp.body.stream();
      if (!stream) return;
      const decoder = new TextDecoder();
      let buf = '';
      const reader = stream.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          touch();
          buf += decoder.decode(value, { stream: true });
          let start = 0;
          let nl: number;
          while ((nl = buf.indexOf('\n', start)) >= 0) {
            const line = buf.slice(start, nl).trim();
            start = nl + 1;
            if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
          }
          buf = buf.slice(start);
        }
      } finally {
        reader.releaseLock();
      }
      const rest = (buf + decoder.decode()).trim();
      if (rest) onEvent(JSON.parse(rest) as WatchEvent<T>);
    } catch (err) {
      if (httpStatus(err) !== undefined) throw err;
      if (opts.signal?.aborted) return;
      throw new Error(`WATCH ${path}: stream failed`, { cause: signal.reason ?? err });
    } finally {
      clearTimeout(idle);
      abort.abort();
    }
  }
}

function parseStatus(text: string): Status | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as Status) : { message: text };
  } catch {
    return { message: text.slice(0, 500) };
  }
}

/** The object with apiVersion and kind filled in (the server requires them on writes). */
function withTypeMeta<T extends KubeObject>(ref: ResourceRef, obj: T): T {
  if (obj.apiVersion && obj.kind) return obj;
  return { apiVersion: apiVersionOf(ref), kind: ref.kind, ...obj };
}
