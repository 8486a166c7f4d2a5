/**
 * The four patch types of kube-apiserver:
 * - JSON merge patch (RFC 7386);
 * - JSON patch (RFC 6902, via fast-json-patch);
 * - strategic merge patch for built-in types: lists with a merge key merge
 *   item by item, `$patch: replace|delete|merge`, `$deleteFromPrimitiveList`,
 *   `$setElementOrder` (kubectl sends it) and `$retainKeys`;
 * - apply (server-side apply) is in managed.ts and shares `listMetaFor`.
 * The merge keys come from a table of the common fields of the Go types
 * (containers by name, container ports by containerPort, ...); lists not in
 * the table are atomic, as a Go field without patch tags is.
 */
import fjp from 'fast-json-patch';
import { ApiError, badRequest } from './errors.ts';
import { clone, deepEqual, isPlainObject } from './objects.ts';
import type { SchemaNode } from './schema.ts';

export type ListMeta = { kind: 'map'; keys: string[] } | { kind: 'set' } | { kind: 'atomic' };
/** List semantics of the field at a path of field names (no indices). */
export type ListMetaLookup = (path: readonly string[]) => ListMeta;

const atomic: ListMeta = { kind: 'atomic' };

/** Merge keys of the Go types' `patchMergeKey` tags that objects commonly use. */
export const builtinListMeta: ListMetaLookup = (path) => {
  const last = path[path.length - 1] ?? '';
  const inContainer = path.some((p) => p === 'containers' || p === 'initContainers' || p === 'ephemeralContainers');
  switch (last) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'volumes':
    case 'imagePullSecrets':
    case 'resourceClaims':
      return { kind: 'map', keys: ['name'] };
    case 'env':
      return inContainer ? { kind: 'map', keys: ['name'] } : atomic;
    case 'ports':
      if (inContainer) return { kind: 'map', keys: ['containerPort', 'protocol'] };
      if (path[0] === 'spec' && path.length === 2) return { kind: 'map', keys: ['port', 'protocol'] };
      return atomic;
    case 'volumeMounts':
      return { kind: 'map', keys: ['mountPath'] };
    case 'volumeDevices':
      return { kind: 'map', keys: ['devicePath'] };
    case 'conditions':
      return { kind: 'map', keys: ['type'] };
    case 'ownerReferences':
      return { kind: 'map', keys: ['uid'] };
    case 'finalizers':
      return { kind: 'set' };
    case 'hostAliases':
      return { kind: 'map', keys: ['ip'] };
    case 'podIPs':
    case 'hostIPs':
      return { kind: 'map', keys: ['ip'] };
    case 'addresses':
      return path[0] === 'status' ? { kind: 'map', keys: ['type'] } : atomic;
    case 'topologySpreadConstraints':
      return { kind: 'map', keys: ['topologyKey', 'whenUnsatisfiable'] };
    default:
      return atomic;
  }
};

/** List semantics from a structural schema (x-kubernetes-list-type), for custom resources. */
export function schemaListMeta(root: SchemaNode | undefined): ListMetaLookup {
  return (path) => {
    let node: SchemaNode | undefined = root;
    for (const p of path) {
      if (!node) break;
      while (node?.items) node = node.items;
      node = node?.properties?.[p] ?? (isPlainObject(node?.additionalProperties) ? (node!.additionalProperties as SchemaNode) : undefined);
    }
    if (path[0] === 'metadata') return builtinListMeta(path);
    const lt = node?.['x-kubernetes-list-type'];
    if (lt === 'map' && node?.['x-kubernetes-list-map-keys']) return { kind: 'map', keys: node['x-kubernetes-list-map-keys'] };
    if (lt === 'set') return { kind: 'set' };
    return atomic;
  };
}

// ---- JSON merge patch ----------------------------------------------------------

export function jsonMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

// ---- JSON patch ------------------------------------------------------------------

export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  try {
    return fjp.applyPatch(clone(target), ops as never, true, true).newDocument;
  } catch (err) {
    const e = err as Error & { name?: string; operation?: unknown };
    throw new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${e.message.split('\n')[0]}`);
  }
}

// ---- strategic merge patch -------------------------------------------------------

const directive = (k: string) => k.startsWith('$');

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((x) => !(isPlainObject(x) && x.$patch !== undefined && Object.keys(x).length === 1)).map(stripDirectives);
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (!directive(k)) out[k] = stripDirectives(x);
  return out;
}

function keyOf(item: unknown, keys: string[]): string {
  return JSON.stringify(keys.map((k) => (isPlainObject(item) ? (item[k] ?? null) : null)));
}

/** Matching by merge key: a key field absent from the patch item matches any value (kube matches on the primary key). */
function findIndex(list: unknown[], item: unknown, keys: string[]): number {
  const primary = keys[0]!;
  if (!isPlainObject(item)) return -1;
  const exact = list.findIndex((x) => keyOf(x, keys) === keyOf(item, keys));
  if (exact >= 0) return exact;
  return list.findIndex((x) => isPlainObject(x) && deepEqual(x[primary], item[primary]) && keys.slice(1).every((k) => item[k] === undefined || x[k] === undefined));
}

function reorder(list: unknown[], order: unknown[], meta: ListMeta): unknown[] {
  const keyFn = meta.kind === 'map' ? (x: unknown) => keyOf(x, meta.keys) : (x: unknown) => JSON.stringify(x);
  const pos = new Map(order.map((o, i) => [keyFn(o), i]));
  const listed = list.filter((x) => pos.has(keyFn(x))).sort((a, b) => pos.get(keyFn(a))! - pos.get(keyFn(b))!);
  const rest = list.filter((x) => !pos.has(keyFn(x)));
  return [...listed, ...rest];
}

function smpList(orig: unknown, patch: unknown[], path: string[], lookup: ListMetaLookup, order: unknown[] | undefined): unknown[] {
  const meta = lookup(path);
  if (meta.kind === 'atomic' || !Array.isArray(orig)) {
    const replaced = patch.filter((x) => !(isPlainObject(x) && x.$patch !== undefined)).map(stripDirectives);
    return order ? reorder(replaced, order, meta) : replaced;
  }
  // A lone {"$patch": "replace"} item replaces the whole list.
  const listReplace = (x: unknown) => isPlainObject(x) && x.$patch === 'replace' && Object.keys(x).length === 1;
  if (patch.some(listReplace)) return patch.filter((x) => !listReplace(x)).map(stripDirectives);
  let out = [...orig];
  if (meta.kind === 'set') {
    for (const x of patch) if (!out.some((y) => deepEqual(x, y))) out.push(clone(x));
  } else {
    for (const item of patch) {
      const idx = findIndex(out, item, meta.keys);
      if (isPlainObject(item) && item.$patch === 'delete') {
        if (idx >= 0) out = out.filter((x) => keyOf(x, [meta.keys[0]!]) !== keyOf(item, [meta.keys[0]!]));
        continue;
      }
      if (idx >= 0) out[idx] = smpValue(out[idx], item, path, lookup);
      else out.push(stripDirectives(item));
    }
  }
  return order ? reorder(out, order, meta) : out;
}

function smpValue(orig: unknown, patch: unknown, path: string[], lookup: ListMetaLookup): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  if (patch.$patch === 'replace') return stripDirectives(patch);
  const out: Record<string, unknown> = isPlainObject(orig) ? { ...orig } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (directive(k)) continue;
    const p = [...path, k];
    if (v === null) delete out[k];
    else if (isPlainObject(v) && v.$patch === 'delete') delete out[k];
    else if (Array.isArray(v)) out[k] = smpList(out[k], v, p, lookup, asList(patch[`$setElementOrder/${k}`]));
    else if (isPlainObject(v)) out[k] = smpValue(out[k], v, p, lookup);
    else out[k] = v;
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[field]) && Array.isArray(v)) out[field] = (out[field] as unknown[]).filter((x) => !v.some((d) => deepEqual(d, x)));
    } else if (k.startsWith('$setElementOrder/')) {
      const field = k.slice('$setElementOrder/'.length);
      if (!Object.hasOwn(patch, field) && Array.isArray(out[field]) && Array.isArray(v)) {
        out[field] = reorder(out[field] as unknown[], v, lookup([...path, field]));
      }
    }
  }
  const retain = patch.$retainKeys;
  if (Array.isArray(retain)) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  }
  return out;
}

function asList(v: unknown): unknown[] | undefined {
  return Array.isArray(v) ? v : undefined;
}

export function strategicMergePatch(target: unknown, patch: unknown, lookup: ListMetaLookup = builtinListMeta): unknown {
  if (!isPlainObject(patch)) throw badRequest('strategic merge patch must be a JSON object');
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' && v !== 'replace' && v !== 'merge' && v !== 'delete') {
      throw badRequest(`Unknown patch type: ${String(v)}`);
    }
  }
  return smpValue(target, patch, [], lookup);
}
