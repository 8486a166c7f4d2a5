/**
 * The REST semantics of kube-apiserver's generic registry, independent of
 * HTTP: the write pipeline (decode/prune, metadata, status subresource
 * rules, defaulting, validation, generation, optimistic concurrency,
 * managedFields, dry-run), reads with selectors and consistent pagination,
 * and graceful deletion with finalizers and propagation policies.
 */
import type { Logger } from 'pino';
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  forbidden,
  invalid,
  notFound,
  STALE_OBJECT,
  unsupportedMediaType,
  type FieldError,
  type Status,
} from './errors.ts';
import {
  clone,
  deepEqual,
  isPlainObject,
  newUid,
  nowTimestamp,
  objectKey,
  randomSuffix,
  validateDns1123Label,
  validateDns1123Subdomain,
  validatePathSegmentName,
  validateQualifiedName,
  validateLabelValue,
  type KubeObject,
} from './objects.ts';
import { apiVersionOf, type Registry, type ResourceDef } from './registry.ts';
import type { ResourceStore, Store } from './store.ts';
import { matchFields, matchLabels, type FieldSelector, type LabelSelector } from './selectors.ts';
import { pruneMetadata } from './schema.ts';
import { builtinListMeta, jsonMergePatch, jsonPatch, strategicMergePatch, type ListMetaLookup } from './patch.ts';
import { serverSideApply, trackUpdate } from './managed.ts';
import { parse as parseYaml } from 'yaml';
import { CRD_CLEANUP_FINALIZER, CRD_STORAGE } from './crd.ts';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export interface WriteOptions {
  dryRun: boolean;
  fieldManager: string | undefined;
  fieldValidation: FieldValidation;
  /** Default manager name, from the User-Agent as kube derives it. */
  userAgentManager: string;
  force: boolean;
  /** Records field ownership under this subresource (writes through /scale). */
  ownershipSubresource?: string;
}

export interface DeleteOptions {
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
  orphanDependents?: boolean;
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface WriteResult {
  code: number;
  body: unknown;
  warnings: string[];
}

export interface ListOptions {
  labelSelector: LabelSelector;
  fieldSelector: FieldSelector;
  limit?: number;
  continueToken?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continueToken?: string;
  remaining?: number;
}

export const NAMESPACE_STORAGE = '/namespaces';

/**
 * A mutating-and-validating step after defaulting, as kube-apiserver's
 * built-in admission plugins and registry strategies (ClusterIP allocation,
 * the default ServiceAccount). `old` is undefined on create. Throws an
 * ApiError to refuse.
 */
export type Admission = (def: ResourceDef, obj: KubeObject, old: KubeObject | undefined) => void;
const protectedNamespaces = new Set(['default', 'kube-system', 'kube-public']);

export function defaultWriteOptions(): WriteOptions {
  return { dryRun: false, fieldManager: undefined, fieldValidation: 'Warn', userAgentManager: 'devcluster', force: false };
}

export class Api {
  readonly registry: Registry;
  readonly store: Store;
  readonly log: Logger;
  readonly admission: Admission[] = [];

  constructor(registry: Registry, store: Store, log: Logger) {
    this.registry = registry;
    this.store = store;
    this.log = log;
  }

  resourceStore(def: ResourceDef): ResourceStore {
    return this.store.ensure(def.storage, def.namespaced);
  }

  /** The stored shape as the requested version shows it. */
  output(def: ResourceDef, stored: KubeObject): KubeObject {
    return def.fromStorage ? def.fromStorage(stored) : stored;
  }

  private storageShape(def: ResourceDef, obj: KubeObject): KubeObject {
    return def.toStorage ? def.toStorage(obj) : obj;
  }

  listMeta(def: ResourceDef): ListMetaLookup {
    return def.custom?.listMeta ?? builtinListMeta;
  }

  // ---- reads -------------------------------------------------------------

  getStored(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    const o = this.resourceStore(def).get(namespace, name);
    if (!o) throw notFound(def.group, def.resource, name);
    return o;
  }

  get(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    return this.output(def, this.getStored(def, namespace, name));
  }

  /** Field labels a selector may use: metadata.name/namespace plus the kind's own. */
  checkFieldSelector(def: ResourceDef, sel: FieldSelector): FieldSelector {
    return sel.map((r) => {
      const field = def.fieldAliases?.[r.field] ?? r.field;
      if (field === 'metadata.name' || (field === 'metadata.namespace' && def.namespaced) || Object.hasOwn(def.fields, field)) {
        return { ...r, field };
      }
      throw badRequest(`field label not supported: ${r.field}`);
    });
  }

  fieldsMatch(def: ResourceDef, sel: FieldSelector, o: KubeObject): boolean {
    if (sel.length === 0) return true;
    const fields: Record<string, string> = {};
    for (const r of sel) {
      if (r.field === 'metadata.name') fields[r.field] = o.metadata.name ?? '';
      else if (r.field === 'metadata.namespace') fields[r.field] = o.metadata.namespace ?? '';
      else fields[r.field] = def.fields[r.field]?.(o) ?? '';
    }
    return matchFields(sel, fields);
  }

  matches(def: ResourceDef, labels: LabelSelector, fields: FieldSelector, o: KubeObject): boolean {
    return matchLabels(labels, o.metadata.labels) && this.fieldsMatch(def, fields, o);
  }

  list(def: ResourceDef, namespace: string | undefined, opts: ListOptions): ListResult {
    const r = this.resourceStore(def);
    const current = this.store.resourceVersion;
    let atRV = current;
    let start = '';
    if (opts.continueToken) {
      if (opts.resourceVersion && opts.resourceVersion !== '0') {
        throw badRequest('specifying resource version is not allowed when using continue');
      }
      const tok = decodeContinue(opts.continueToken);
      atRV = tok.rv;
      start = tok.start;
    } else if (opts.resourceVersion && opts.resourceVersion !== '0') {
      const want = parseRV(opts.resourceVersion);
      if (opts.resourceVersionMatch === 'Exact') atRV = want;
      else if (want > current) {
        throw new ApiError(504, 'Timeout', `Too large resource version: ${want}, current: ${current}`, {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
          retryAfterSeconds: 1,
        });
      }
    }
    const snap = atRV === current ? { keys: r.sortedKeys(namespace), get: (k: string) => r.getByKey(k) } : r.snapshotAt(atRV, namespace);
    if (!snap) {
      if (opts.continueToken) {
        throw new ApiError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      throw new ApiError(410, 'Expired', `too old resource version: ${atRV} (${r.horizon + 1})`);
    }
    const keys = snap.keys;
    let i = start ? lowerBound(keys, start) : 0;
    const limit = opts.limit && opts.limit > 0 ? opts.limit : Infinity;
    const items: KubeObject[] = [];
    const filtering = opts.labelSelector.length > 0 || opts.fieldSelector.length > 0;
    for (; i < keys.length && items.length < limit; i++) {
      const o = snap.get(keys[i]!);
      if (!o) continue;
      if (filtering && !this.matches(def, opts.labelSelector, opts.fieldSelector, o)) continue;
      items.push(o);
    }
    const result: ListResult = { items, resourceVersion: String(atRV) };
    if (items.length >= limit && i < keys.length) {
      // More keys remain; with a selector they may not match, as with etcd paging.
      result.continueToken = encodeContinue(atRV, keys[i - 1]! + '\u0000');
      if (!filtering) result.remaining = keys.length - i;
    }
    return result;
  }

  // ---- writes ------------------------------------------------------------

  private manager(opts: WriteOptions): string {
    return opts.fieldManager ?? opts.userAgentManager;
  }

  private checkManager(opts: WriteOptions): void {
    if (opts.fieldManager !== undefined && (opts.fieldManager.length > 128 || /[^\x20-\x7e]/.test(opts.fieldManager))) {
      throw invalidOptions('fieldManager', opts.fieldManager, 'must be less than 128 characters long and only contain printable characters');
    }
  }

  private decodeBody(def: ResourceDef, body: unknown, opts: WriteOptions): { obj: KubeObject; warnings: string[] } {
    if (!isPlainObject(body)) throw badRequest(`Object '${def.kind}' is not a valid JSON object`);
    const obj = clone(body) as KubeObject;
    const want = apiVersionOf(def);
    if (obj.apiVersion !== undefined && obj.apiVersion !== want) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${want})`);
    }
    if (obj.kind !== undefined && obj.kind !== def.kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${def.kind})`);
    }
    // Go types serialise apiVersion, kind and metadata first; keep that order.
    const { apiVersion: _a, kind: _k, metadata, ...rest } = obj;
    const ordered = { apiVersion: want, kind: def.kind, metadata: metadata ?? {}, ...rest } as KubeObject;
    return this.pruneDecoded(def, ordered, opts);
  }

  private pruneDecoded(def: ResourceDef, obj: KubeObject, opts: WriteOptions): { obj: KubeObject; warnings: string[] } {
    if (!isPlainObject(obj.metadata)) throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: metadata must be an object`);
    const unknown = pruneMetadata(obj);
    if (def.custom) unknown.push(...def.custom.schema.prune(obj));
    if (unknown.length > 0 && opts.fieldValidation === 'Strict') {
      throw badRequest(
        `${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(', ')}`,
      );
    }
    return { obj, warnings: opts.fieldValidation === 'Warn' ? unknown.map((f) => `unknown field "${f}"`) : [] };
  }

  private namespaceFor(def: ResourceDef, obj: KubeObject, urlNamespace: string | undefined): void {
    if (!def.namespaced) {
      delete obj.metadata.namespace;
      return;
    }
    const ns = urlNamespace ?? obj.metadata.namespace;
    if (urlNamespace !== undefined && obj.metadata.namespace && obj.metadata.namespace !== urlNamespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    if (!ns) throw badRequest('an empty namespace may not be set during creation');
    obj.metadata.namespace = ns;
  }

  private requireNamespace(def: ResourceDef, namespace: string, name: string): void {
    if (!def.namespaced) return;
    const ns = this.store.resource(NAMESPACE_STORAGE)?.get(undefined, namespace);
    if (!ns) throw notFound('', 'namespaces', namespace);
    if (ns.metadata.deletionTimestamp) {
      throw forbidden(def.group, def.resource, name, `unable to create new content in namespace ${namespace} because it is being terminated`);
    }
  }

  private validateMeta(def: ResourceDef, obj: KubeObject): FieldError[] {
    const errs: FieldError[] = [];
    const m = obj.metadata;
    const name = m.name ?? '';
    const rule = def.nameRule === 'label' ? validateDns1123Label : def.nameRule === 'path' ? validatePathSegmentName : validateDns1123Subdomain;
    for (const msg of rule(name)) errs.push({ type: 'FieldValueInvalid', field: 'metadata.name', value: name, hasValue: true, detail: msg });
    for (const [k, v] of Object.entries(m.labels ?? {})) {
      for (const msg of validateQualifiedName(k)) errs.push({ type: 'FieldValueInvalid', field: 'metadata.labels', value: k, hasValue: true, detail: msg });
      if (typeof v !== 'string') errs.push({ type: 'FieldValueInvalid', field: `metadata.labels[${k}]`, value: v, hasValue: true, detail: 'must be a string' });
      else for (const msg of validateLabelValue(v)) errs.push({ type: 'FieldValueInvalid', field: 'metadata.labels', value: v, hasValue: true, detail: msg });
    }
    let annotationBytes = 0;
    for (const [k, v] of Object.entries(m.annotations ?? {})) {
      for (const msg of validateQualifiedName(k.toLowerCase())) errs.push({ type: 'FieldValueInvalid', field: 'metadata.annotations', value: k, hasValue: true, detail: msg });
      if (typeof v !== 'string') errs.push({ type: 'FieldValueInvalid', field: `metadata.annotations[${k}]`, value: v, hasValue: true, detail: 'must be a string' });
      annotationBytes += Buffer.byteLength(k) + Buffer.byteLength(String(v));
    }
    if (annotationBytes > 256 * 1024) errs.push({ type: 'FieldValueTooLong', field: 'metadata.annotations', detail: `must have at most ${256 * 1024} bytes` });
    (m.finalizers ?? []).forEach((f, i) => {
      for (const msg of validateQualifiedName(String(f))) errs.push({ type: 'FieldValueInvalid', field: `metadata.finalizers[${i}]`, value: f, hasValue: true, detail: msg });
    });
    const owners = m.ownerReferences ?? [];
    owners.forEach((o, i) => {
      for (const f of ['apiVersion', 'kind', 'name', 'uid'] as const) {
        if (!o || typeof o[f] !== 'string' || o[f] === '') errs.push({ type: 'FieldValueRequired', field: `metadata.ownerReferences[${i}].${f}`, detail: `${f} must not be empty` });
      }
    });
    if (owners.filter((o) => o?.controller === true).length > 1) {
      errs.push({ type: 'FieldValueInvalid', field: 'metadata.ownerReferences', value: owners, hasValue: true, detail: 'Only one reference can have Controller set to true' });
    }
    return errs;
  }

  private validateAll(def: ResourceDef, obj: KubeObject, old: KubeObject | undefined): void {
    const errs = this.validateMeta(def, obj);
    if (def.custom) errs.push(...def.custom.schema.validate(obj, old));
    if (def.validate) errs.push(...def.validate(obj, old));
    if (errs.length) throw invalid(def.group, def.kind, obj.metadata.name ?? '', errs);
  }

  private applyDefaults(def: ResourceDef, obj: KubeObject): void {
    def.defaults?.(obj);
    def.custom?.schema.applyDefaults(obj);
  }

  /** POST: create. `applied` marks an apply-patch create (managedFields as Apply). */
  create(def: ResourceDef, urlNamespace: string | undefined, body: unknown, opts: WriteOptions, applied = false): WriteResult {
    this.checkManager(opts);
    const { obj, warnings } = this.decodeBody(def, body, opts);
    this.namespaceFor(def, obj, urlNamespace);
    const m = obj.metadata;
    if (m.resourceVersion) throw badRequest('resourceVersion should not be set on objects to be created');
    if (!m.name) {
      if (m.generateName) m.name = m.generateName.slice(0, 58) + randomSuffix();
      else throw invalid(def.group, def.kind, '', [{ type: 'FieldValueRequired', field: 'metadata.name', detail: 'name or generateName is required' }]);
    }
    if (def.namespaced) this.requireNamespace(def, m.namespace!, m.name);
    m.uid = newUid();
    m.creationTimestamp = nowTimestamp();
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.selfLink;
    if (def.generation) m.generation = 1;
    else delete m.generation;
    if (def.status && def.statusOnCreate === 'reset') {
      const initial = def.initialStatus?.(obj);
      if (initial !== undefined) obj.status = initial;
      else if (def.custom) delete obj.status;
      else obj.status = {};
    }
    this.applyDefaults(def, obj);
    for (const a of this.admission) a(def, obj, undefined);
    this.validateAll(def, obj, undefined);
    if (!applied) {
      obj.metadata.managedFields = trackUpdate(undefined, obj, { manager: this.manager(opts), apiVersion: apiVersionOf(def), lookup: this.listMeta(def) });
      if (obj.metadata.managedFields.length === 0) delete obj.metadata.managedFields;
    }
    const r = this.resourceStore(def);
    if (r.get(m.namespace, m.name)) throw alreadyExists(def.group, def.resource, m.name);
    if (opts.dryRun) return { code: 201, body: obj, warnings };
    const stored = this.store.create(def.storage, this.storageShape(def, obj));
    return { code: 201, body: this.output(def, stored), warnings };
  }

  /** Merges system-owned metadata of the old object into an update. */
  private carryMetadata(def: ResourceDef, next: KubeObject, old: KubeObject): void {
    const m = next.metadata;
    const o = old.metadata;
    m.name = o.name;
    if (def.namespaced) m.namespace = o.namespace;
    else delete m.namespace;
    m.uid = o.uid;
    m.creationTimestamp = o.creationTimestamp;
    if (o.deletionTimestamp) {
      m.deletionTimestamp = o.deletionTimestamp;
      if (o.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = o.deletionGracePeriodSeconds;
    } else {
      delete m.deletionTimestamp;
      delete m.deletionGracePeriodSeconds;
    }
    if (o.generateName !== undefined && m.generateName === undefined) m.generateName = o.generateName;
    delete m.selfLink;
    if (o.generation !== undefined) m.generation = o.generation;
    else delete m.generation;
  }

  /**
   * The shared update path of PUT, PATCH and internal writes. `candidate` is
   * a decoded object in the request's version; `old` the stored one.
   */
  private commitUpdate(
    def: ResourceDef,
    candidate: KubeObject,
    oldStored: KubeObject,
    subresource: string | undefined,
    opts: WriteOptions,
    managed: { kind: 'update' } | { kind: 'apply'; entries: unknown[] },
    warnings: string[],
  ): WriteResult {
    const old = this.output(def, oldStored);
    const rv = candidate.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== old.metadata.resourceVersion) {
      throw conflict(def.group, def.resource, old.metadata.name ?? '', STALE_OBJECT);
    }
    if (candidate.metadata.uid && candidate.metadata.uid !== old.metadata.uid) {
      throw conflict(def.group, def.resource, old.metadata.name ?? '', `Precondition failed: UID in precondition: ${old.metadata.uid}, UID in object meta: ${candidate.metadata.uid}`);
    }
    let next: KubeObject;
    if (subresource === 'status') {
      next = clone(old) as KubeObject;
      if (candidate.status !== undefined) next.status = candidate.status;
      else delete next.status;
      if (candidate.metadata.managedFields !== undefined) next.metadata.managedFields = candidate.metadata.managedFields;
    } else {
      next = candidate;
      if (next.metadata.managedFields === undefined && old.metadata.managedFields !== undefined) {
        next.metadata.managedFields = clone(old.metadata.managedFields);
      }
      this.carryMetadata(def, next, old);
      if (def.status) {
        if (old.status !== undefined) next.status = clone(old.status);
        else delete next.status;
      }
    }
    next.apiVersion = apiVersionOf(def);
    next.kind = def.kind;
    this.applyDefaults(def, next);
    if (subresource !== 'status') for (const a of this.admission) a(def, next, old);
    if (def.generation && subresource !== 'status' && specChanged(old, next)) {
      next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    }
    if (old.metadata.deletionTimestamp) {
      const before = new Set(old.metadata.finalizers ?? []);
      const added = (next.metadata.finalizers ?? []).filter((f) => !before.has(f));
      if (added.length) {
        throw invalid(def.group, def.kind, old.metadata.name ?? '', [
          { type: 'FieldValueForbidden', field: 'metadata.finalizers', detail: `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` },
        ]);
      }
    }
    this.validateAll(def, next, old);
    if (managed.kind === 'update') {
      next.metadata.managedFields = trackUpdate(old, next, {
        manager: this.manager(opts),
        apiVersion: apiVersionOf(def),
        subresource: opts.ownershipSubresource ?? subresource,
        lookup: this.listMeta(def),
      });
    } else {
      next.metadata.managedFields = managed.entries;
    }
    if ((next.metadata.managedFields as unknown[]).length === 0) delete next.metadata.managedFields;
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    // A write that changes nothing is not a write: no new resourceVersion, no event.
    if (deepEqual(stripManagedTimes(next), stripManagedTimes(old))) return { code: 200, body: old, warnings };
    if (opts.dryRun) return { code: 200, body: next, warnings };
    const stored = this.writeOrFinalize(def, this.storageShape(def, next), oldStored);
    return { code: 200, body: this.output(def, stored), warnings };
  }

  /** Stores an update; an object being deleted whose last finalizer went away is removed instead. */
  private writeOrFinalize(def: ResourceDef, next: KubeObject, oldStored: KubeObject): KubeObject {
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0 && !namespaceFinalizersPending(def, next)) {
      // As the generic registry's deleteWithoutFinalizers: the update is not
      // stored, the object is deleted; watchers see one DELETED event.
      return this.store.remove(def.storage, oldStored);
    }
    return this.store.update(def.storage, next, oldStored);
  }

  update(def: ResourceDef, urlNamespace: string | undefined, name: string, body: unknown, subresource: string | undefined, opts: WriteOptions): WriteResult {
    this.checkManager(opts);
    const { obj, warnings } = this.decodeBody(def, body, opts);
    if (obj.metadata.name !== undefined && obj.metadata.name !== name) {
      throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    }
    if (def.namespaced && obj.metadata.namespace && obj.metadata.namespace !== urlNamespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const old = this.getStored(def, urlNamespace, name);
    return this.commitUpdate(def, obj, old, subresource, opts, { kind: 'update' }, warnings);
  }

  patch(
    def: ResourceDef,
    urlNamespace: string | undefined,
    name: string,
    contentType: string,
    rawBody: string,
    subresource: string | undefined,
    opts: WriteOptions,
  ): WriteResult {
    this.checkManager(opts);
    if (contentType === 'application/apply-patch+yaml' || contentType === 'application/apply-patch+cbor') {
      return this.apply(def, urlNamespace, name, rawBody, subresource, opts);
    }
    if (opts.force) throw badRequest('force may not be set for non-apply patch');
    const oldStored = this.getStored(def, urlNamespace, name);
    const current = clone(this.output(def, oldStored)) as KubeObject;
    const patched = this.patchValue(contentType, current, rawBody, def);
    if (!isPlainObject(patched)) throw badRequest('the patched object is not a JSON object');
    const { obj, warnings } = this.decodeBody(def, patched, opts);
    return this.commitUpdate(def, obj, oldStored, subresource, opts, { kind: 'update' }, warnings);
  }

  /** Applies a JSON, merge or strategic merge patch to a plain value. */
  patchValue(contentType: string, current: unknown, rawBody: string, def?: ResourceDef): unknown {
    let patch: unknown;
    try {
      patch = JSON.parse(rawBody);
    } catch (err) {
      throw badRequest(`error decoding patch: ${(err as Error).message}`);
    }
    const accepted = ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml'];
    if (def === undefined || def.strategicMerge) accepted.push('application/strategic-merge-patch+json');
    switch (contentType) {
      case 'application/merge-patch+json':
        return jsonMergePatch(current, patch);
      case 'application/json-patch+json':
        return jsonPatch(current, patch);
      case 'application/strategic-merge-patch+json':
        if (def && !def.strategicMerge) throw unsupportedMediaType(accepted);
        return strategicMergePatch(current, patch, def ? this.listMeta(def) : builtinListMeta);
      default:
        throw unsupportedMediaType(accepted);
    }
  }

  private apply(def: ResourceDef, urlNamespace: string | undefined, name: string, rawBody: string, subresource: string | undefined, opts: WriteOptions): WriteResult {
    if (!opts.fieldManager) {
      throw invalidOptions('fieldManager', '', 'is required for apply patch', 'FieldValueRequired');
    }
    let body: unknown;
    try {
      body = parseYaml(rawBody);
    } catch (err) {
      throw badRequest(`error decoding YAML: ${(err as Error).message}`);
    }
    if (!isPlainObject(body)) throw badRequest('apply patch must be an object');
    if (body.apiVersion === undefined || body.kind === undefined) {
      throw badRequest(`${body.kind === undefined ? 'invalid object type: /, Kind=' : 'apiVersion must not be empty'}`);
    }
    const { obj: appliedObj, warnings } = this.decodeBody(def, body, opts);
    if (appliedObj.metadata.name !== undefined && appliedObj.metadata.name !== name) {
      throw badRequest(`the name of the object (${appliedObj.metadata.name}) does not match the name on the URL (${name})`);
    }
    appliedObj.metadata.name = name;
    const oldStored = this.resourceStore(def).get(urlNamespace, name);
    const lookup = this.listMeta(def);
    const applyOpts = { manager: opts.fieldManager, apiVersion: apiVersionOf(def), force: opts.force, subresource, lookup };
    if (!oldStored) {
      if (subresource) throw notFound(def.group, def.resource, name);
      const { object, managedFields } = serverSideApply(undefined, appliedObj, applyOpts);
      (object.metadata as Record<string, unknown>).managedFields = managedFields;
      return this.create(def, urlNamespace, object, { ...opts, fieldValidation: 'Ignore' }, true);
    }
    const live = clone(this.output(def, oldStored)) as KubeObject;
    const applied = { ...appliedObj } as Record<string, unknown>;
    delete applied.apiVersion;
    delete applied.kind;
    const meta = { ...(applied.metadata as Record<string, unknown>) };
    for (const k of ['name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp', 'generation', 'managedFields']) delete meta[k];
    applied.metadata = meta;
    const rv = appliedObj.metadata.resourceVersion;
    if (rv && rv !== live.metadata.resourceVersion) throw conflict(def.group, def.resource, name, STALE_OBJECT);
    const { object, managedFields } = serverSideApply(live as unknown as Record<string, unknown>, applied, applyOpts);
    const candidate = object as KubeObject;
    candidate.metadata.resourceVersion = live.metadata.resourceVersion;
    return this.commitUpdate(def, candidate, oldStored, subresource, opts, { kind: 'apply', entries: managedFields }, warnings);
  }

  /** pods/binding: what the scheduler posts to put a pod on a node. */
  bind(def: ResourceDef, urlNamespace: string | undefined, name: string, body: unknown, opts: WriteOptions): WriteResult {
    const target = isPlainObject(body) && isPlainObject(body.target) ? body.target : undefined;
    if (!target || typeof target.name !== 'string' || target.name === '') {
      throw invalid('', 'Binding', name, [{ type: 'FieldValueRequired', field: 'target.name', detail: '' }]);
    }
    const old = this.getStored(def, urlNamespace, name);
    const spec = (old.spec ?? {}) as { nodeName?: string };
    if (spec.nodeName) {
      throw conflict('', 'pods/binding', name, `pod ${name} is already assigned to node "${spec.nodeName}"`);
    }
    if (old.metadata.deletionTimestamp) throw conflict('', 'pods/binding', name, `pod ${name} is being deleted, cannot be assigned to a host`);
    const next = clone(old) as KubeObject;
    (next.spec as Record<string, unknown>).nodeName = target.name;
    const status = (isPlainObject(next.status) ? next.status : (next.status = {})) as { conditions?: Record<string, unknown>[] };
    status.conditions = [...(status.conditions ?? []).filter((c) => c.type !== 'PodScheduled'), { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: nowTimestamp() }];
    if (!opts.dryRun) this.store.update(def.storage, next, old);
    return { code: 201, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 }, warnings: [] };
  }

  // ---- deletion ----------------------------------------------------------

  delete(def: ResourceDef, urlNamespace: string | undefined, name: string, del: DeleteOptions, opts: WriteOptions): WriteResult {
    const old = this.getStored(def, urlNamespace, name);
    if (def.storage === NAMESPACE_STORAGE && protectedNamespaces.has(name)) {
      throw forbidden('', 'namespaces', name, 'this namespace may not be deleted');
    }
    const pre = del.preconditions;
    if (pre?.uid && pre.uid !== old.metadata.uid) {
      throw conflict(def.group, def.resource, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(
        def.group,
        def.resource,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in meta: ${old.metadata.resourceVersion}`,
      );
    }
    if (del.propagationPolicy && del.orphanDependents !== undefined) {
      throw invalidOptions('propagationPolicy', del.propagationPolicy, 'orphanDependents and deletionPropagation cannot be both set');
    }
    if (del.propagationPolicy && !['Orphan', 'Background', 'Foreground'].includes(del.propagationPolicy)) {
      throw new ApiError(422, 'Invalid', `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${del.propagationPolicy}": supported values: "Foreground", "Background", "Orphan", "nil"`);
    }
    const policy = del.propagationPolicy ?? (del.orphanDependents === true ? 'Orphan' : del.orphanDependents === false ? 'Background' : undefined);
    const result = this.deleteObject(def, old, policy, { dryRun: opts.dryRun, gracePeriodSeconds: del.gracePeriodSeconds });
    const gone = result.deleted;
    const code = !gone && del.orphanDependents === false ? 202 : 200;
    if (gone && !def.returnDeletedObject) {
      const status: Status = {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name, group: def.group, kind: def.resource, uid: old.metadata.uid ?? '' },
        code: 200,
      };
      return { code, body: status, warnings: [] };
    }
    return { code, body: this.output(def, result.object), warnings: [] };
  }

  /**
   * Graceful deletion. Pods bound to a node get deletionTimestamp = now +
   * grace period and wait for their kubelet (controllers.ts stands in for
   * it); a shorter grace period shortens that, 0 skips it. Otherwise
   * finalizers (including the GC's orphan and foregroundDeletion, added per
   * policy) turn deletion into setting deletionTimestamp; without any the
   * object goes at once.
   */
  deleteObject(
    def: ResourceDef,
    old: KubeObject,
    policy: 'Orphan' | 'Background' | 'Foreground' | undefined,
    opts: { dryRun?: boolean; gracePeriodSeconds?: number } = {},
  ): { deleted: boolean; object: KubeObject } {
    const dryRun = opts.dryRun === true;
    let finalizers = [...(old.metadata.finalizers ?? [])];
    if (policy === 'Orphan' && !finalizers.includes('orphan')) finalizers.push('orphan');
    if (policy === 'Foreground' && !finalizers.includes('foregroundDeletion')) finalizers.push('foregroundDeletion');
    if (policy === 'Orphan') finalizers = finalizers.filter((f) => f !== 'foregroundDeletion');
    if (policy === 'Foreground' || policy === 'Background') finalizers = finalizers.filter((f) => f !== 'orphan');
    if (policy === 'Background') finalizers = finalizers.filter((f) => f !== 'foregroundDeletion' || old.metadata.deletionTimestamp !== undefined);
    // apiextensions keeps a deleted CRD until its custom resources are cleaned up.
    if (def.storage === CRD_STORAGE && !old.metadata.deletionTimestamp && !finalizers.includes(CRD_CLEANUP_FINALIZER)) {
      finalizers.push(CRD_CLEANUP_FINALIZER);
    }
    const grace = podGracePeriod(def, old, opts.gracePeriodSeconds);
    const meta = { ...old.metadata, finalizers };
    if (finalizers.length === 0) delete (meta as { finalizers?: string[] }).finalizers;
    if (grace !== undefined && grace > 0) {
      const current = old.metadata.deletionGracePeriodSeconds;
      if (old.metadata.deletionTimestamp && current !== undefined && grace >= current) return { deleted: false, object: old };
      meta.deletionTimestamp = new Date(Math.floor(Date.now() / 1000) * 1000 + grace * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      meta.deletionGracePeriodSeconds = grace;
      if (!old.metadata.deletionTimestamp && meta.generation !== undefined) meta.generation = meta.generation + 1;
      const next: KubeObject = { ...old, metadata: meta };
      if (dryRun) return { deleted: false, object: next };
      return { deleted: false, object: this.store.update(def.storage, next, old) };
    }
    const nsPending = def.storage === NAMESPACE_STORAGE;
    if (finalizers.length === 0 && !nsPending) {
      if (dryRun) return { deleted: true, object: old };
      return { deleted: true, object: this.store.remove(def.storage, old) };
    }
    if (!old.metadata.deletionTimestamp || (old.metadata.deletionGracePeriodSeconds ?? 0) > 0) {
      meta.deletionTimestamp = nowTimestamp();
      meta.deletionGracePeriodSeconds = 0;
      if (!old.metadata.deletionTimestamp && meta.generation !== undefined) meta.generation = meta.generation + 1;
    }
    let next: KubeObject = { ...old, metadata: meta };
    if (nsPending) next = { ...next, status: { ...(isPlainObject(old.status) ? old.status : {}), phase: 'Terminating' } };
    if (deepEqual(next, old)) return { deleted: false, object: old };
    if (dryRun) return { deleted: false, object: next };
    return { deleted: false, object: this.store.update(def.storage, next, old) };
  }

  deleteCollection(def: ResourceDef, urlNamespace: string | undefined, list: ListOptions, del: DeleteOptions, opts: WriteOptions): WriteResult {
    const { items } = this.list(def, urlNamespace, { ...list, limit: undefined, continueToken: undefined });
    const out: KubeObject[] = [];
    for (const o of items) {
      const current = this.resourceStore(def).get(o.metadata.namespace, o.metadata.name ?? '');
      if (!current) continue;
      const policy = del.propagationPolicy ?? (del.orphanDependents === true ? 'Orphan' : undefined);
      out.push(this.output(def, this.deleteObject(def, current, policy, { dryRun: opts.dryRun, gracePeriodSeconds: del.gracePeriodSeconds }).object));
    }
    return {
      code: 200,
      body: { kind: def.listKind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.store.resourceVersion) }, items: out },
      warnings: [],
    };
  }

  // ---- internal writes (controllers) -------------------------------------------

  /** Replaces a stored object without request validation, as a controller's update would. */
  internalUpdate(def: ResourceDef, oldStored: KubeObject, mutate: (o: KubeObject) => void): KubeObject | undefined {
    const next = clone(oldStored) as KubeObject;
    mutate(next);
    if (deepEqual(next, oldStored)) return oldStored;
    return this.writeOrFinalize(def, next, oldStored);
  }

  storedByKey(def: ResourceDef, key: string): KubeObject | undefined {
    return this.resourceStore(def).getByKey(key);
  }

  keyOf(def: ResourceDef, o: KubeObject): string {
    return objectKey(def.namespaced ? o.metadata.namespace : undefined, o.metadata.name ?? '');
  }
}

/**
 * The grace period of a pod's deletion, or undefined when it is deleted at
 * once: pods not bound to a node or already finished have no kubelet to wait for.
 */
function podGracePeriod(def: ResourceDef, pod: KubeObject, requested: number | undefined): number | undefined {
  if (def.storage !== '/pods') return undefined;
  const spec = (pod.spec ?? {}) as { nodeName?: string; terminationGracePeriodSeconds?: number };
  const phase = (pod.status as { phase?: string } | undefined)?.phase;
  if (!spec.nodeName || phase === 'Succeeded' || phase === 'Failed') return undefined;
  const grace = requested ?? spec.terminationGracePeriodSeconds ?? 30;
  return Math.max(0, grace);
}

function namespaceFinalizersPending(def: ResourceDef, o: KubeObject): boolean {
  if (def.storage !== NAMESPACE_STORAGE) return false;
  const f = (o.spec as { finalizers?: string[] } | undefined)?.finalizers;
  return Array.isArray(f) && f.length > 0;
}

function invalidOptions(field: string, value: unknown, detail: string, type: FieldError['type'] = 'FieldValueInvalid'): ApiError {
  return invalid('meta.k8s.io', 'PatchOptions', '', [{ type, field, value, hasValue: type === 'FieldValueInvalid', detail }]);
}

/** Anything but metadata and status changed: generation moves. */
function specChanged(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject) => {
    const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o;
    return rest;
  };
  return !deepEqual(strip(a), strip(b));
}

function stripManagedTimes(o: KubeObject): unknown {
  const mf = o.metadata.managedFields;
  if (!Array.isArray(mf)) return o;
  return { ...o, metadata: { ...o.metadata, managedFields: mf.map((e) => (isPlainObject(e) ? { ...e, time: undefined } : e)) } };
}

function parseRV(s: string): number {
  if (!/^\d+$/.test(s)) throw badRequest(`invalid resource version: ${s}`);
  return Number(s);
}

function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start })).toString('base64url');
}

function decodeContinue(token: string): { rv: number; start: string } {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: string; rv?: number; start?: string };
    if (t.v !== 'meta.k8s.io/v1' || typeof t.rv !== 'number' || typeof t.start !== 'string') throw new Error('bad');
    return { rv: t.rv, start: t.start };
  } catch {
    throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
}

function lowerBound(keys: string[], k: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
