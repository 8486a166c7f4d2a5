/**
 * HTTP front of the embedded API: URL routing in kube-apiserver's layout
 * (/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}, /apis/{group}/…,
 * the legacy /watch/ prefix), content negotiation (JSON, YAML, Table,
 * PartialObjectMetadata, aggregated discovery), query parameters, request
 * bodies, streamed list responses, and errors as Status objects. Nothing a
 * client sends can crash it: every failure becomes a Status response.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { stringify as toYaml, parse as parseYaml } from 'yaml';
import { Api, defaultWriteOptions, type DeleteOptions, type FieldValidation, type ListOptions, type WriteOptions, type WriteResult } from './api.ts';
import { ApiError, asApiError, badRequest, invalid, methodNotAllowed, notAcceptable, pathNotFound, tooLarge, unsupportedMediaType, type FieldError } from './errors.ts';
import { apiVersionOf, Registry, type ResourceDef } from './registry.ts';
import { Store } from './store.ts';
import { builtinResources } from './builtins.ts';
import { crdResourceDef } from './crd.ts';
import { GarbageCollector } from './gc.ts';
import { Controllers } from './controllers.ts';
import { EndpointsController } from './endpoints.ts';
import { defaultServiceAccount, ServiceAllocator } from './admission.ts';
import { aggregatedContentType, aggregatedDiscovery, apiGroup, apiGroupList, apiResourceList, apiVersions, type AggregatedVersion } from './discovery.ts';
import { buildOpenApi, type OpenApiDocs } from './openapi.ts';
import { parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { buildTable, parseIncludeObject } from './table.ts';
import { encodeObject, serveWatch, type OutputShape } from './watch.ts';
import { getPath, isPlainObject, type KubeObject } from './objects.ts';
import { decodeProtobufObject, PROTOBUF } from './protobuf.ts';
import { PortForwarding } from './portforward.ts';

export const GIT_VERSION = 'v1.32.0-podtap.devcluster';
const MAX_BODY = 3 * 1024 * 1024;

export interface ServerOptions {
  logger: Logger;
  /** Changes kept per resource for watches from an older resourceVersion. */
  historySize?: number;
  bookmarkIntervalMs?: number;
  /** Unsent watch data above which a slow watcher is disconnected. */
  maxWatchBufferBytes?: number;
  /** How long the stand-in kubelet takes to stop a deleted pod's containers. */
  podTerminationMs?: number;
}

export interface ClusterState {
  registry: Registry;
  store: Store;
  api: Api;
  gc: GarbageCollector;
  controllers: Controllers;
  endpoints: EndpointsController;
}

export function createClusterState(opts: ServerOptions): ClusterState {
  const registry = new Registry();
  const store = new Store({ historySize: opts.historySize });
  const api = new Api(registry, store, opts.logger);
  for (const def of [...builtinResources(), crdResourceDef()]) {
    registry.add(def);
    store.ensure(def.storage, def.namespaced);
  }
  api.admission.push(new ServiceAllocator(api).admit, defaultServiceAccount);
  const gc = new GarbageCollector(api, opts.logger);
  const controllers = new Controllers(api, opts.logger, { podTerminationMs: opts.podTerminationMs });
  const endpoints = new EndpointsController(api, opts.logger);
  const nsDef = registry.get('', 'v1', 'namespaces')!;
  for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
    api.create(nsDef, undefined, { metadata: { name } }, { ...defaultWriteOptions(), fieldManager: 'devcluster' });
  }
  return { registry, store, api, gc, controllers, endpoints };
}

// ---- content negotiation ------------------------------------------------------

interface MediaRange {
  type: string;
  params: Record<string, string>;
}

function parseAccept(header: string | undefined): MediaRange[] {
  if (!header) return [];
  return header
    .split(',')
    .map((part) => {
      const [type, ...ps] = part.split(';').map((s) => s.trim());
      const params: Record<string, string> = {};
      for (const p of ps) {
        const i = p.indexOf('=');
        if (i > 0) params[p.slice(0, i).trim()] = p.slice(i + 1).trim();
      }
      return { type: (type ?? '').toLowerCase(), params };
    })
    .filter((m) => m.type !== '');
}

const jsonish = (t: string) => t === 'application/json' || t === '*/*' || t === 'application/*';

interface Negotiated {
  format: 'json' | 'yaml';
  shape: OutputShape;
}

function negotiate(req: IncomingMessage, query: URLSearchParams): Negotiated {
  const ranges = parseAccept(req.headers.accept);
  if (ranges.length === 0) return { format: 'json', shape: { kind: 'object' } };
  for (const m of ranges) {
    const as = m.params.as;
    if (as) {
      if (m.params.g !== 'meta.k8s.io' || !jsonish(m.type)) continue;
      if (as === 'Table' && (m.params.v === 'v1' || m.params.v === 'v1beta1')) {
        return { format: 'json', shape: { kind: 'table', include: parseIncludeObject(query.get('includeObject')) } };
      }
      if ((as === 'PartialObjectMetadata' || as === 'PartialObjectMetadataList') && (m.params.v === 'v1' || m.params.v === 'v1beta1')) {
        return { format: 'json', shape: { kind: 'metadata' } };
      }
      continue;
    }
    if (jsonish(m.type)) return { format: 'json', shape: { kind: 'object' } };
    if (m.type === 'application/yaml') return { format: 'yaml', shape: { kind: 'object' } };
  }
  throw notAcceptable(['application/json', 'application/yaml']);
}

function aggregatedRequested(req: IncomingMessage): AggregatedVersion | undefined {
  for (const m of parseAccept(req.headers.accept)) {
    if (m.params.g === 'apidiscovery.k8s.io' && m.params.as === 'APIGroupDiscoveryList' && (m.params.v === 'v2' || m.params.v === 'v2beta1')) {
      return m.params.v;
    }
    if (jsonish(m.type) && !m.params.as) return undefined;
  }
  return undefined;
}

// ---- responses ------------------------------------------------------------------

function send(res: ServerResponse, code: number, body: unknown, opts: { format?: 'json' | 'yaml'; contentType?: string; warnings?: string[] } = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  for (const w of opts.warnings ?? []) res.appendHeader('Warning', `299 - ${JSON.stringify(w)}`);
  const yaml = opts.format === 'yaml';
  const text = yaml ? toYaml(body) : JSON.stringify(body);
  res.writeHead(code, {
    'Content-Type': opts.contentType ?? (yaml ? 'application/yaml' : 'application/json'),
    'Cache-Control': 'no-cache, private',
    'Audit-Id': randomUUID(),
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: ApiError): void {
  send(res, err.code, err.toStatus());
}

/** Writes a list without building one huge string: items go out in chunks, with backpressure. */
async function streamList(res: ServerResponse, head: Record<string, unknown>, items: unknown[], encode: (o: unknown) => string): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Audit-Id': randomUUID() });
  const open = JSON.stringify({ ...head, items: [] });
  let buf = open.slice(0, -2);
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  for (let i = 0; i < items.length; i++) {
    buf += (i ? ',' : '') + encode(items[i]);
    if (buf.length > 256 * 1024) {
      const ok = res.write(buf);
      buf = '';
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
        if (closed) return;
      }
    }
  }
  res.end(`${buf}]}`);
}

// ---- request parsing ----------------------------------------------------------------

interface ResourceRoute {
  def: ResourceDef;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  watchPath: boolean;
}

function routeResource(registry: Registry, group: string, version: string, segs: string[]): ResourceRoute {
  let watchPath = false;
  if (segs[0] === 'watch') {
    watchPath = true;
    segs = segs.slice(1);
  }
  let namespace: string | undefined;
  let rest = segs;
  if (segs[0] === 'namespaces' && segs.length >= 3 && registry.get(group, version, segs[2]!)?.namespaced) {
    namespace = segs[1];
    rest = segs.slice(2);
  }
  if (rest.length === 0 || rest.length > 3) throw pathNotFound();
  const def = registry.get(group, version, rest[0]!);
  if (!def) throw pathNotFound();
  const name = rest[1];
  const subresource = rest[2];
  if (def.namespaced && namespace === undefined && name !== undefined) throw pathNotFound();
  if (!def.namespaced && namespace !== undefined) throw pathNotFound();
  if (subresource !== undefined && !(subresource === 'status' && def.status) && !(subresource === 'scale' && def.scale) && !def.extraSubresources?.some((x) => x.name === subresource)) {
    throw pathNotFound();
  }
  if (name === '') throw pathNotFound();
  return { def, namespace, name, subresource, watchPath };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw tooLarge(`Request entity too large: limit is ${MAX_BODY}`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function contentTypeOf(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
}

function decodeObjectBody(req: IncomingMessage, body: Buffer, def?: ResourceDef): unknown {
  const type = contentTypeOf(req);
  if (type === PROTOBUF && def) return decodeProtobufObject(body, { apiVersion: apiVersionOf(def), kind: def.kind });
  const text = body.toString('utf8');
  if (text.trim() === '') throw badRequest('Object body is empty');
  if (type === 'application/yaml') {
    try {
      return parseYaml(text);
    } catch (err) {
      throw badRequest(`error converting YAML to JSON: ${(err as Error).message}`);
    }
  }
  if (type !== 'application/json' && type !== '*/*') throw unsupportedMediaType(['application/json', 'application/yaml', PROTOBUF]);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
  }
}

function boolParam(q: URLSearchParams, name: string): boolean | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0' || v === '') return false;
  throw badRequest(`invalid boolean value for ${name}: ${v}`);
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw badRequest(`invalid integer value for ${name}: ${v}`);
  return Number(v);
}

function writeOptions(req: IncomingMessage, q: URLSearchParams): WriteOptions {
  const dry = q.getAll('dryRun');
  for (const d of dry) if (d !== 'All') throw badRequest(`Invalid dryRun value: ${d}; the only supported value is "All"`);
  const fv = q.get('fieldValidation') ?? 'Warn';
  if (fv !== 'Strict' && fv !== 'Warn' && fv !== 'Ignore') throw badRequest(`fieldValidation parameter unsupported: ${fv}`);
  const ua = String(req.headers['user-agent'] ?? 'unknown');
  return {
    dryRun: dry.length > 0,
    fieldManager: q.get('fieldManager') ?? undefined,
    fieldValidation: fv as FieldValidation,
    userAgentManager: (ua.split('/')[0] ?? 'unknown').slice(0, 128) || 'unknown',
    force: boolParam(q, 'force') ?? false,
  };
}

/** k8s.io/apimachinery ValidateListOptions: the combinations of rv, match and sendInitialEvents. */
function validateListOptions(q: URLSearchParams, isWatch: boolean): void {
  const errs: FieldError[] = [];
  const match = q.get('resourceVersionMatch') ?? '';
  const sie = q.get('sendInitialEvents');
  if (match) {
    if (isWatch) {
      if (sie === null) errs.push({ type: 'FieldValueForbidden', field: 'resourceVersionMatch', detail: 'resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided' });
      if (match !== 'NotOlderThan') errs.push({ type: 'FieldValueNotSupported', field: 'resourceVersionMatch', value: match, hasValue: true, detail: 'supported values: "NotOlderThan"' });
    } else {
      if (!q.get('resourceVersion')) errs.push({ type: 'FieldValueForbidden', field: 'resourceVersionMatch', detail: 'resourceVersionMatch is forbidden unless resourceVersion is provided' });
      if (match !== 'Exact' && match !== 'NotOlderThan') {
        errs.push({ type: 'FieldValueNotSupported', field: 'resourceVersionMatch', value: match, hasValue: true, detail: 'supported values: "Exact", "NotOlderThan", ""' });
      }
    }
  }
  if (sie !== null) {
    if (!isWatch) errs.push({ type: 'FieldValueForbidden', field: 'sendInitialEvents', detail: 'sendInitialEvents is forbidden for list' });
    else {
      if (match !== 'NotOlderThan') errs.push({ type: 'FieldValueForbidden', field: 'resourceVersionMatch', detail: "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" });
      if (boolParam(q, 'allowWatchBookmarks') !== true) errs.push({ type: 'FieldValueForbidden', field: 'allowWatchBookmarks', detail: 'allowWatchBookmarks must be set to true when sendInitialEvents is set' });
    }
  }
  if (errs.length) throw invalid('meta.k8s.io', 'ListOptions', '', errs);
}

function listOptions(api: Api, def: ResourceDef, q: URLSearchParams): ListOptions {
  const opts: ListOptions = {
    labelSelector: parseLabelSelector(q.get('labelSelector')),
    fieldSelector: api.checkFieldSelector(def, parseFieldSelector(q.get('fieldSelector'))),
  };
  const limit = intParam(q, 'limit');
  if (limit !== undefined) opts.limit = limit;
  const cont = q.get('continue');
  if (cont) opts.continueToken = cont;
  const rv = q.get('resourceVersion');
  if (rv !== null && rv !== '') opts.resourceVersion = rv;
  const match = q.get('resourceVersionMatch');
  if (match) opts.resourceVersionMatch = match;
  return opts;
}

function deleteOptions(body: string, q: URLSearchParams): { del: DeleteOptions; dryRun: boolean } {
  const del: DeleteOptions = {};
  let dryRun = q.getAll('dryRun').length > 0;
  if (body.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (err) {
      throw badRequest(`couldn't decode DeleteOptions: ${(err as Error).message}`);
    }
    if (isPlainObject(parsed)) {
      if (typeof parsed.propagationPolicy === 'string') del.propagationPolicy = parsed.propagationPolicy as DeleteOptions['propagationPolicy'];
      if (typeof parsed.orphanDependents === 'boolean') del.orphanDependents = parsed.orphanDependents;
      if (typeof parsed.gracePeriodSeconds === 'number') del.gracePeriodSeconds = parsed.gracePeriodSeconds;
      if (isPlainObject(parsed.preconditions)) del.preconditions = parsed.preconditions as DeleteOptions['preconditions'];
      if (Array.isArray(parsed.dryRun) && parsed.dryRun.length > 0) {
        for (const d of parsed.dryRun) if (d !== 'All') throw badRequest(`Invalid dryRun value: ${String(d)}; the only supported value is "All"`);
        dryRun = true;
      }
    }
  }
  const pp = q.get('propagationPolicy');
  if (pp) del.propagationPolicy = pp as DeleteOptions['propagationPolicy'];
  const od = boolParam(q, 'orphanDependents');
  if (od !== undefined) del.orphanDependents = od;
  const gp = intParam(q, 'gracePeriodSeconds');
  if (gp !== undefined) del.gracePeriodSeconds = gp;
  return { del, dryRun };
}

/**
 * A list or watch from a resourceVersion the store has not reached waits for
 * it up to 3 s, then fails with 504 "Too large resource version", as the
 * watch cache does; clients then re-list.
 */
async function waitForResourceVersion(api: Api, rv: string | null): Promise<void> {
  if (!rv || !/^\d+$/.test(rv)) return;
  const want = Number(rv);
  const deadline = Date.now() + 3000;
  while (api.store.resourceVersion < want) {
    if (Date.now() >= deadline) {
      throw new ApiError(504, 'Timeout', `Timeout: Too large resource version: ${want}, current: ${api.store.resourceVersion}`, {
        causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        retryAfterSeconds: 1,
      });
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---- the scale subresource ---------------------------------------------------------

function pathSegments(jsonPath: string): string[] {
  return jsonPath.replace(/^\./, '').split('.');
}

function toScale(def: ResourceDef, o: KubeObject): unknown {
  const paths = def.scale!;
  const spec = getPath(o, pathSegments(paths.specReplicasPath));
  const status = getPath(o, pathSegments(paths.statusReplicasPath));
  const selector = paths.labelSelectorPath ? getPath(o, pathSegments(paths.labelSelectorPath)) : undefined;
  const scaleStatus: Record<string, unknown> = { replicas: typeof status === 'number' ? status : 0 };
  if (typeof selector === 'string') scaleStatus.selector = selector;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: o.metadata.name,
      namespace: o.metadata.namespace,
      uid: o.metadata.uid,
      resourceVersion: o.metadata.resourceVersion,
      creationTimestamp: o.metadata.creationTimestamp,
    },
    spec: { replicas: typeof spec === 'number' ? spec : 0 },
    status: scaleStatus,
  };
}

function setPath(o: Record<string, unknown>, path: string[], v: unknown): void {
  let cur = o;
  for (const p of path.slice(0, -1)) {
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = v;
}

// ---- the server -------------------------------------------------------------------------

export interface Handler {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Whether an HTTP upgrade is taken over (pods/portforward); others are answered as ordinary requests. */
  claimsUpgrade(req: IncomingMessage): boolean;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends the upgraded connections, which http.Server does not track. */
  close(): void;
}

export function createHandler(state: ClusterState, opts: ServerOptions, serverAddress: () => string): Handler {
  const { api, registry } = state;
  const log = opts.logger;
  let openapi: { generation: number; docs: OpenApiDocs } | undefined;
  const openApiDocs = () => {
    if (!openapi || openapi.generation !== registry.generation) {
      openapi = { generation: registry.generation, docs: buildOpenApi(registry, GIT_VERSION) };
    }
    return openapi.docs;
  };
  const portForwarding = new PortForwarding(api, registry.get('', 'v1', 'pods')!, log);
  const watchConfig = {
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
    maxBufferedBytes: opts.maxWatchBufferBytes ?? 64 * 1024 * 1024,
    log,
  };

  const respondWrite = (res: ServerResponse, result: WriteResult, neg: Negotiated, def: ResourceDef) => {
    let body = result.body;
    if (neg.shape.kind === 'table' && isPlainObject(body) && body.kind === def.kind) {
      body = buildTable(def, [body as KubeObject], { include: neg.shape.include });
    }
    send(res, result.code, body, { format: neg.format, warnings: result.warnings });
  };

  async function handleResource(req: IncomingMessage, res: ServerResponse, url: URL, route: ResourceRoute): Promise<void> {
    const { def, namespace, name, subresource } = route;
    const q = url.searchParams;
    const method = req.method ?? 'GET';
    const neg = negotiate(req, q);
    const verb = (v: string) => {
      if (!def.verbs.includes(v)) throw methodNotAllowed();
    };

    if (subresource === 'scale') return handleScale(req, res, route, q, neg);
    if (subresource === 'binding') {
      if (method !== 'POST') throw methodNotAllowed();
      const wo = writeOptions(req, q);
      return respondWrite(res, api.bind(def, namespace, name!, decodeObjectBody(req, await readBody(req)), wo), neg, def);
    }
    if (subresource === 'portforward') {
      // Reached only without an upgrade: the pod is looked up first (404), then the proxy insists.
      if (method !== 'GET' && method !== 'POST') throw methodNotAllowed();
      portForwarding.target(url);
      throw badRequest('Upgrade request required');
    }
    if (subresource === 'finalize') {
      if (method !== 'PUT') throw methodNotAllowed();
      const body = decodeObjectBody(req, await readBody(req), def);
      const old = api.getStored(def, undefined, name!);
      const spec = isPlainObject(body) && isPlainObject(body.spec) ? body.spec : {};
      const stored = api.internalUpdate(def, old, (o) => {
        o.spec = { ...(isPlainObject(o.spec) ? o.spec : {}), finalizers: Array.isArray(spec.finalizers) ? spec.finalizers : [] };
      });
      return send(res, 200, stored ?? old, { format: neg.format });
    }

    if (method === 'GET' && name !== undefined && !route.watchPath && !boolParam(q, 'watch')) {
      verb('get');
      const o = api.get(def, namespace, name);
      if (neg.shape.kind === 'table') return send(res, 200, buildTable(def, [o], { include: neg.shape.include }));
      if (neg.shape.kind === 'metadata') return send(res, 200, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata });
      return send(res, 200, o, { format: neg.format });
    }
    if (method === 'GET') {
      const watching = route.watchPath || boolParam(q, 'watch') === true;
      validateListOptions(q, watching);
      const lo = listOptions(api, def, q);
      await waitForResourceVersion(api, q.get('resourceVersion'));
      if (name !== undefined) lo.fieldSelector = [...lo.fieldSelector, { field: 'metadata.name', op: '=', value: name }];
      if (watching) {
        verb('watch');
        const timeout = intParam(q, 'timeoutSeconds');
        return serveWatch(
          api,
          {
            def,
            namespace,
            labelSelector: lo.labelSelector,
            fieldSelector: lo.fieldSelector,
            resourceVersion: q.get('resourceVersion') ?? undefined,
            allowBookmarks: boolParam(q, 'allowWatchBookmarks') ?? false,
            sendInitialEvents: boolParam(q, 'sendInitialEvents'),
            timeoutSeconds: timeout !== undefined && timeout > 0 ? timeout : undefined,
            shape: neg.shape,
          },
          req,
          res,
          watchConfig,
        );
      }
      verb('list');
      const list = api.list(def, namespace, lo);
      const metadata: Record<string, unknown> = { resourceVersion: list.resourceVersion };
      if (list.continueToken) metadata.continue = list.continueToken;
      if (list.remaining !== undefined) metadata.remainingItemCount = list.remaining;
      if (neg.shape.kind === 'table') {
        const table: Record<string, unknown> = buildTable(
          def,
          list.items.map((o) => api.output(def, o)),
          { include: neg.shape.include, resourceVersion: list.resourceVersion, continueToken: list.continueToken, remaining: list.remaining },
        );
        return send(res, 200, table);
      }
      if (neg.shape.kind === 'metadata') {
        return streamList(res, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata }, list.items, (o) =>
          JSON.stringify(encodeObject(api, def, o as KubeObject, neg.shape)),
        );
      }
      const head = { kind: def.listKind, apiVersion: apiVersionOf(def), metadata };
      if (neg.format === 'yaml') return send(res, 200, { ...head, items: list.items.map((o) => listItem(def, api.output(def, o))) }, { format: 'yaml' });
      return streamList(res, head, list.items, (o) => JSON.stringify(listItem(def, api.output(def, o as KubeObject))));
    }

    const wo = writeOptions(req, q);
    const raw = await readBody(req);
    const text = raw.toString('utf8');
    switch (method) {
      case 'POST': {
        if (name !== undefined) throw methodNotAllowed();
        if (def.namespaced && namespace === undefined) throw pathNotFound();
        verb('create');
        return respondWrite(res, api.create(def, namespace, decodeObjectBody(req, raw, def), wo), neg, def);
      }
      case 'PUT': {
        if (name === undefined) throw methodNotAllowed();
        verb('update');
        return respondWrite(res, api.update(def, namespace, name, decodeObjectBody(req, raw, def), subresource, wo), neg, def);
      }
      case 'PATCH': {
        if (name === undefined) throw methodNotAllowed();
        verb('patch');
        const result = api.patch(def, namespace, name, contentTypeOf(req), text, subresource, wo);
        return respondWrite(res, result, neg, def);
      }
      case 'DELETE': {
        if (subresource) throw methodNotAllowed();
        const { del, dryRun } = deleteOptions(text, q);
        wo.dryRun = wo.dryRun || dryRun;
        if (name === undefined) {
          verb('deletecollection');
          return respondWrite(res, api.deleteCollection(def, namespace, listOptions(api, def, q), del, wo), neg, def);
        }
        verb('delete');
        return respondWrite(res, api.delete(def, namespace, name, del, wo), neg, def);
      }
      default:
        throw methodNotAllowed();
    }
  }

  async function handleScale(req: IncomingMessage, res: ServerResponse, route: ResourceRoute, q: URLSearchParams, neg: Negotiated): Promise<void> {
    const { def, namespace, name } = route;
    const method = req.method ?? 'GET';
    const current = api.get(def, namespace, name!);
    if (method === 'GET') return send(res, 200, toScale(def, current), { format: neg.format });
    const wo = writeOptions(req, q);
    const raw = await readBody(req);
    const text = raw.toString('utf8');
    let scale: unknown;
    if (method === 'PUT') scale = decodeObjectBody(req, raw);
    else if (method === 'PATCH') {
      const patched = api.patchValue(contentTypeOf(req), toScale(def, current), text);
      scale = patched;
    } else throw methodNotAllowed();
    const replicas = isPlainObject(scale) && isPlainObject(scale.spec) ? scale.spec.replicas : undefined;
    if (typeof replicas !== 'number') throw badRequest('spec.replicas must be an integer');
    const rv = isPlainObject(scale) && isPlainObject(scale.metadata) ? scale.metadata.resourceVersion : undefined;
    const next = structuredClone(current) as KubeObject;
    setPath(next as Record<string, unknown>, pathSegments(def.scale!.specReplicasPath), replicas);
    if (typeof rv === 'string' && rv) next.metadata.resourceVersion = rv;
    const result = api.update(def, namespace, name!, next, undefined, { ...wo, ownershipSubresource: 'scale' });
    return send(res, 200, toScale(def, result.body as KubeObject), { format: neg.format, warnings: result.warnings });
  }

  function handleDiscovery(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (path === '/api' || path === '/apis') {
      const agg = aggregatedRequested(req);
      if (agg) {
        send(res, 200, aggregatedDiscovery(registry, path === '/api', agg), { contentType: aggregatedContentType(agg) });
      } else {
        send(res, 200, path === '/api' ? apiVersions(serverAddress()) : apiGroupList(registry));
      }
      return true;
    }
    const segs = path.split('/').filter(Boolean);
    if (segs[0] === 'api' && segs.length === 2) {
      const doc = apiResourceList(registry, '', segs[1]!);
      if (!doc) throw pathNotFound();
      send(res, 200, doc);
      return true;
    }
    if (segs[0] === 'apis' && segs.length === 2) {
      const doc = apiGroup(registry, segs[1]!);
      if (!doc) throw pathNotFound();
      send(res, 200, doc);
      return true;
    }
    if (segs[0] === 'apis' && segs.length === 3) {
      const doc = apiResourceList(registry, segs[1]!, segs[2]!);
      if (!doc) throw pathNotFound();
      send(res, 200, doc);
      return true;
    }
    return false;
  }

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://devcluster');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    if (path === '/version') return send(res, 200, versionInfo());
    if (path === '/healthz' || path === '/livez' || path === '/readyz' || path.startsWith('/healthz/') || path.startsWith('/livez/') || path.startsWith('/readyz/')) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('ok');
      return;
    }
    if (path === '/openapi/v3') return send(res, 200, openApiDocs().index);
    if (path.startsWith('/openapi/v3/')) {
      const doc = openApiDocs().docs.get(path.slice('/openapi/v3/'.length));
      if (!doc) throw pathNotFound();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', Etag: `"${doc.hash}"` });
      res.end(doc.body);
      return;
    }
    if (path === '/' ) {
      const paths = ['/api', '/api/v1', '/apis', '/healthz', '/livez', '/openapi/v3', '/readyz', '/version'];
      for (const g of registry.groups()) if (g) for (const v of registry.versions(g)) paths.push(`/apis/${g}`, `/apis/${g}/${v}`);
      return send(res, 200, { paths: [...new Set(paths)].sort() });
    }
    if (method === 'GET' && handleDiscovery(req, res, path)) return;
    const segs = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (segs[0] === 'api' && segs.length >= 3) return handleResource(req, res, url, routeResource(registry, '', segs[1]!, segs.slice(2)));
    if (segs[0] === 'apis' && segs.length >= 4) return handleResource(req, res, url, routeResource(registry, segs[1]!, segs[2]!, segs.slice(3)));
    throw pathNotFound();
  }

  return {
    claimsUpgrade: (req) => portForwarding.claims(req),
    upgrade: (req, socket, head) => portForwarding.upgrade(req, socket, head),
    close: () => portForwarding.close(),
    handle(req, res) {
      const started = performance.now();
      dispatch(req, res)
        .catch((err: unknown) => {
          const e = asApiError(err);
          if (e.code >= 500) log.error({ err, method: req.method, url: req.url }, 'request failed');
          if (!res.headersSent) sendError(res, e);
          else res.destroy();
        })
        .finally(() => {
          log.debug({ method: req.method, url: req.url, code: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
        });
    },
  };
}

/** Typed lists carry no apiVersion/kind per item (Go's TypeMeta is empty there); custom resource lists do. */
function listItem(def: ResourceDef, o: KubeObject): unknown {
  if (def.custom) return o;
  const { apiVersion: _a, kind: _k, ...rest } = o;
  return rest;
}

export function versionInfo(): Record<string, string> {
  return {
    major: '1',
    minor: '32',
    gitVersion: GIT_VERSION,
    gitCommit: 'podtap-devcluster-not-a-kube-apiserver',
    gitTreeState: 'clean',
    buildDate: '1970-01-01T00:00:00Z',
    goVersion: `node${process.versions.node}`,
    compiler: 'podtap-devcluster',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

export function createHttpServer(handler: Handler): Server {
  const server = createServer(
    { keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000, shouldUpgradeCallback: (req) => handler.claimsUpgrade(req) },
    (req, res) => handler.handle(req, res),
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handler.upgrade(req, socket, head));
  return server;
}
