/**
 * A small REST client for the Kubernetes API. The cluster and credentials come
 * from config.ts (the common cases read directly, the rest through
 * @kubernetes/client-node's KubeConfig, which is also accepted here as is);
 * errors are KubeApiError, shaped like client-node's ApiException.
 *
 * Why not the generated typed APIs: they convert every object through
 * ObjectSerializer (timestamps become Date objects, field by field), which is
 * slow on 30,000 pods and differs from what a watch delivers (plain JSON), so a
 * cache filled by both would hold two shapes. Here every object is the
 * server's JSON, lists are paginated, and watches are streamed line by line.
 *
 * Why node:http(s) and not client-node's fetch transport: measured on 26,000
 * assignment writes, undici's fetch and its web streams took most of the
 * controller's CPU, and client-node builds a new TLS agent for every request
 * (no connection reuse). Here one keep-alive agent carries every request, and
 * credentials are resolved once a minute (a rotating service-account token is
 * re-read then, and after any 401).
 */
import http from 'node:http';
import https from 'node:https';
import { accessFromClientNode, type ClusterAccess } from './config.ts';
import { KubeApiError, type Status } from './errors.ts';

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

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Connection {
  headers: Record<string, string>;
  agent: http.Agent;
  at: number;
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  res: http.IncomingMessage;
}

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
  readonly access: ClusterAccess;
  readonly server: string;
  private readonly timeoutMs: number;
  private readonly authTtlMs: number;
  private readonly userAgent: string;
  private readonly secure: boolean;
  private conn: Connection | undefined;
  private connPending: Promise<Connection> | undefined;
  private agent: http.Agent | undefined;

  /** `access` from loadKubeConfig(), or a client-node KubeConfig. */
  constructor(access: ClusterAccess | Parameters<typeof accessFromClientNode>[0], opts: KubeClientOptions = {}) {
    this.access = 'credentials' in access ? access : accessFromClientNode(access);
    this.server = this.access.server.replace(/\/+$/, '');
    this.secure = this.server.startsWith('https:');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.authTtlMs = opts.authTtlMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'podtap';
  }

  /** Credentials and the keep-alive agent (made once, from the first credentials' TLS settings). */
  private async resolve(): Promise<Connection> {
    const cred = await this.access.credentials();
    if (!this.agent) {
      const t = cred.tls;
      if (cred.agent) this.agent = cred.agent;
      else if (this.secure) {
        this.agent = new https.Agent({
          keepAlive: true,
          ca: t.ca,
          cert: t.cert,
          key: t.key,
          ...(t.insecureSkipVerify ? { rejectUnauthorized: false } : {}),
          ...(t.serverName ? { servername: t.serverName } : {}),
        });
      } else this.agent = new http.Agent({ keepAlive: true });
    }
    return { headers: cred.headers, agent: this.agent, at: Date.now() };
  }

  private async connection(): Promise<Connection> {
    if (this.conn && Date.now() - this.conn.at <= this.authTtlMs) return this.conn;
    this.connPending ??= this.resolve().then(
      (c) => {
        this.conn = c;
        this.connPending = undefined;
        return c;
      },
      (err: unknown) => {
        this.connPending = undefined;
        throw new Error('cannot resolve the Kubernetes credentials', { cause: err });
      },
    );
    return this.connPending;
  }

  /** Close idle connections (the process can exit without waiting for keep-alive timeouts). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
    this.conn = undefined;
  }

  private url(path: string, query?: RequestOptions['query']): URL {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    return url;
  }

  /** Send a request; resolves with the response head (the body still to be read). */
  private async send(method: HttpMethod, path: string, opts: RequestOptions, idleTimeoutMs: number): Promise<RawResponse> {
    const conn = await this.connection();
    const url = this.url(path, opts.query);
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const headers: Record<string, string | number> = { ...conn.headers, Accept: 'application/json', 'User-Agent': this.userAgent };
    if (body !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    return new Promise<RawResponse>((resolve, reject) => {
      const req = (this.secure ? https : http).request(url, { method, headers, agent: conn.agent, signal: opts.signal }, (res) => {
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode ?? 0, headers: h, res });
      });
      req.setTimeout(idleTimeoutMs, () => req.destroy(new Error(`no answer for ${idleTimeoutMs} ms`)));
      req.on('error', (err) => reject(new Error(`${method} ${path}: request failed`, { cause: err })));
      req.end(body);
    });
  }

  private static readBody(res: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
  }

  /** One API call; the parsed JSON body, or a KubeApiError for any non-2xx answer. */
  async request<T>(method: HttpMethod, path: string, opts: RequestOptions = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const resp = await this.send(method, path, opts, opts.timeoutMs ?? this.timeoutMs);
      let text: string;
      try {
        text = await KubeClient.readBody(resp.res);
      } catch (err) {
        throw new Error(`${method} ${path}: reading the response failed`, { cause: err });
      }
      if (resp.status >= 200 && resp.status < 300) return (text ? JSON.parse(text) : undefined) as T;
      if (resp.status === 401 && attempt === 0) {
        this.conn = undefined; // a rotated token: resolve the credentials again, once
        continue;
      }
      throw new KubeApiError(resp.status, method, path, parseStatus(text), resp.headers);
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
      const page = await this.request<{ items?: T[] | null; metadata?: { resourceVersion?: string; continue?: string } }>('GET', path, {
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
    return this.request<T>('GET', resourcePath(ref, namespace, name, subresource));
  }

  create<T extends KubeObject>(ref: ResourceRef, obj: T): Promise<T> {
    return this.request<T>('POST', resourcePath(ref, obj.metadata.namespace), { body: withTypeMeta(ref, obj) });
  }

  /** PUT the object; its metadata.resourceVersion makes it conditional (409 when stale). */
  replace<T extends KubeObject>(ref: ResourceRef, obj: T, subresource?: string): Promise<T> {
    const { name, namespace } = obj.metadata;
    if (!name) throw new Error(`replace ${ref.kind}: the object has no name`);
    return this.request<T>('PUT', resourcePath(ref, namespace, name, subresource), { body: withTypeMeta(ref, obj) });
  }

  replaceStatus<T extends KubeObject>(ref: ResourceRef, obj: T): Promise<T> {
    return this.replace(ref, obj, 'status');
  }

  patch<T>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType = 'merge', opts: { subresource?: string; fieldManager?: string; force?: boolean } = {}): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref, namespace, name, opts.subresource), {
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
    await this.request<unknown>('DELETE', resourcePath(ref, namespace, name), { body });
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
    const query = {
      watch: 'true',
      resourceVersion: opts.resourceVersion,
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      timeoutSeconds,
      allowWatchBookmarks: opts.allowWatchBookmarks ?? true,
    };
    let resp: RawResponse;
    try {
      resp = await this.send('GET', path, { query, signal: opts.signal }, idleMs);
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw err;
    }
    if (resp.status !== 200) {
      const text = await KubeClient.readBody(resp.res).catch(() => '');
      throw new KubeApiError(resp.status, 'WATCH', path, parseStatus(text), resp.headers);
    }
    await new Promise<void>((resolve, reject) => {
      const res = resp.res;
      res.setEncoding('utf8');
      let buf = '';
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        res.destroy();
        if (opts.signal?.aborted) resolve();
        else reject(new Error(`WATCH ${path}: stream failed`, { cause: err }));
      };
      res.on('data', (chunk: string) => {
        buf += chunk;
        let start = 0;
        let nl: number;
        try {
          while ((nl = buf.indexOf('\n', start)) >= 0) {
            const line = buf.slice(start, nl).trim();
            start = nl + 1;
            if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
          }
        } catch (err) {
          fail(err);
          return;
        }
        buf = buf.slice(start);
      });
      res.on('end', () => {
        if (failed) return;
        const rest = buf.trim();
        try {
          if (rest) onEvent(JSON.parse(rest) as WatchEvent<T>);
          resolve();
        } catch (err) {
          fail(err);
        }
      });
      res.on('error', fail);
      res.on('aborted', () => fail(new Error('aborted')));
      res.on('close', () => {
        if (!res.complete) fail(new Error('connection closed'));
      });
    });
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
