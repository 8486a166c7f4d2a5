/**
 * Field ownership (metadata.managedFields, FieldsV1) and server-side apply.
 *
 * Each write records which manager set which leaf fields: an update gives
 * the changed fields to its manager and takes them from the others, an
 * apply makes the applied configuration the manager's set. Apply merges the
 * configuration into the live object (maps by key, lists by their list
 * type), fails with 409 when it would change a field another manager owns
 * (unless `force`), and removes fields the manager applied before but no
 * longer does and nobody else owns. This follows structured-merge-diff's
 * model at the level podtap and kubectl exercise; unions, version
 * conversion of field sets and the managedFields cap are not modelled.
 */
import { ApiError } from './errors.ts';
import { clone, deepEqual, isPlainObject, nowTimestamp } from './objects.ts';
import type { ListMetaLookup } from './patch.ts';

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

type Segs = string[];
const SEP = '\u0001';
const join = (s: Segs) => s.join(SEP);
const split = (k: string): Segs => (k === '' ? [] : k.split(SEP));

const metadataOwned = new Set(['labels', 'annotations', 'finalizers', 'ownerReferences']);

function itemKey(item: Record<string, unknown>, keys: string[]): string {
  const o: Record<string, unknown> = {};
  for (const k of keys) if (item[k] !== undefined) o[k] = item[k];
  return `k:${JSON.stringify(o)}`;
}

/** Leaf paths of an object, as FieldsV1 segments (`f:name`, `k:{"name":"x"}`, `v:"a"`). */
export function fieldSet(obj: unknown, lookup: ListMetaLookup, only?: 'status' | 'main'): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown, segs: Segs, names: string[]) => {
    if (isPlainObject(v)) {
      const keys = Object.keys(v);
      if (keys.length === 0 && segs.length) out.add(join(segs));
      for (const k of keys) walk(v[k], [...segs, `f:${k}`], [...names, k]);
      return;
    }
    if (Array.isArray(v)) {
      const meta = lookup(names);
      if (meta.kind === 'map' && v.every(isPlainObject)) {
        if (v.length === 0) out.add(join(segs));
        for (const item of v as Record<string, unknown>[]) {
          const s = [...segs, itemKey(item, meta.keys)];
          out.add(join([...s, '.']));
          walk(item, s, names);
        }
        return;
      }
      if (meta.kind === 'set' && v.every((x) => !isPlainObject(x) && !Array.isArray(x))) {
        if (v.length === 0) out.add(join(segs));
        for (const x of v) out.add(join([...segs, `v:${JSON.stringify(x)}`]));
        return;
      }
    }
    out.add(join(segs));
  };
  if (!isPlainObject(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (only === 'status' && k !== 'status') continue;
    if (only === 'main' && k === 'status') continue;
    if (k === 'metadata') {
      if (!isPlainObject(v)) continue;
      for (const [mk, mv] of Object.entries(v)) {
        if (metadataOwned.has(mk)) walk(mv, ['f:metadata', `f:${mk}`], ['metadata', mk]);
      }
      continue;
    }
    walk(v, [`f:${k}`], [k]);
  }
  return out;
}

/** FieldsV1 of a whole object, built directly (a create owns every field). */
export function fieldsTree(obj: unknown, lookup: ListMetaLookup): Record<string, unknown> {
  const walk = (v: unknown, names: string[]): Record<string, unknown> => {
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v)) out[`f:${k}`] = walk(v[k], [...names, k]);
      return out;
    }
    if (Array.isArray(v) && v.length > 0) {
      const meta = lookup(names);
      if (meta.kind === 'map' && v.every(isPlainObject)) {
        const out: Record<string, unknown> = {};
        for (const item of v as Record<string, unknown>[]) out[itemKey(item, meta.keys)] = { '.': {}, ...walk(item, names) };
        return out;
      }
      if (meta.kind === 'set' && v.every((x) => !isPlainObject(x) && !Array.isArray(x))) {
        const out: Record<string, unknown> = {};
        for (const x of v) out[`v:${JSON.stringify(x)}`] = {};
        return out;
      }
    }
    return {};
  };
  const root: Record<string, unknown> = {};
  if (!isPlainObject(obj)) return root;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (k === 'metadata') {
      if (!isPlainObject(v)) continue;
      const meta: Record<string, unknown> = {};
      for (const [mk, mv] of Object.entries(v)) if (metadataOwned.has(mk)) meta[`f:${mk}`] = walk(mv, ['metadata', mk]);
      if (Object.keys(meta).length) root['f:metadata'] = meta;
      continue;
    }
    root[`f:${k}`] = walk(v, [k]);
  }
  return root;
}

export function encodeFieldsV1(set: Set<string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const p of [...set].sort()) {
    let node = root;
    for (const seg of split(p)) {
      if (!isPlainObject(node[seg])) node[seg] = {};
      node = node[seg] as Record<string, unknown>;
    }
  }
  return root;
}

export function decodeFieldsV1(f: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (node: unknown, segs: Segs) => {
    if (!isPlainObject(node)) return;
    for (const [k, child] of Object.entries(node)) {
      if (k === '.') out.add(join([...segs, '.']));
      else if (isPlainObject(child) && Object.keys(child).length === 0) out.add(join([...segs, k]));
      else walk(child, [...segs, k]);
    }
  };
  walk(f, []);
  return out;
}

/** The value at a FieldsV1 path, if present. */
function valueAt(obj: unknown, path: string): { found: boolean; value: unknown } {
  let cur: unknown = obj;
  for (const seg of split(path)) {
    if (seg === '.') return { found: true, value: cur };
    if (seg.startsWith('f:')) {
      if (!isPlainObject(cur) || !Object.hasOwn(cur, seg.slice(2))) return { found: false, value: undefined };
      cur = cur[seg.slice(2)];
    } else if (seg.startsWith('k:')) {
      const want = JSON.parse(seg.slice(2)) as Record<string, unknown>;
      if (!Array.isArray(cur)) return { found: false, value: undefined };
      cur = cur.find((x) => isPlainObject(x) && Object.entries(want).every(([k, v]) => deepEqual(x[k], v)));
      if (cur === undefined) return { found: false, value: undefined };
    } else if (seg.startsWith('v:')) {
      const want = JSON.parse(seg.slice(2));
      if (!Array.isArray(cur) || !cur.some((x) => deepEqual(x, want))) return { found: false, value: undefined };
      cur = want;
    }
  }
  return { found: true, value: cur };
}

function removeAt(obj: Record<string, unknown>, path: string): void {
  const segs = split(path);
  if (segs[segs.length - 1] === '.') segs.pop();
  let parent: unknown = obj;
  for (let i = 0; i < segs.length - 1; i++) {
    const r = valueAt(parent, segs[i]!);
    if (!r.found) return;
    parent = r.value;
  }
  const last = segs[segs.length - 1];
  if (last === undefined) return;
  if (last.startsWith('f:') && isPlainObject(parent)) delete parent[last.slice(2)];
  else if (Array.isArray(parent)) {
    const idx = parent.findIndex((x) => {
      if (last.startsWith('k:')) {
        const want = JSON.parse(last.slice(2)) as Record<string, unknown>;
        return isPlainObject(x) && Object.entries(want).every(([k, v]) => deepEqual(x[k], v));
      }
      return deepEqual(x, JSON.parse(last.slice(2)));
    });
    if (idx >= 0) parent.splice(idx, 1);
  }
}

/** `.spec.containers[name="web"].image`, as kube prints conflicting fields. */
export function displayPath(path: string): string {
  let out = '';
  for (const seg of split(path)) {
    if (seg === '.') continue;
    if (seg.startsWith('f:')) out += `.${seg.slice(2)}`;
    else if (seg.startsWith('k:')) {
      const o = JSON.parse(seg.slice(2)) as Record<string, unknown>;
      out += `[${Object.entries(o).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
    } else if (seg.startsWith('v:')) out += `[=${seg.slice(2)}]`;
  }
  return out;
}

function entriesOf(obj: unknown): ManagedFieldsEntry[] {
  const mf = isPlainObject(obj) && isPlainObject(obj.metadata) ? obj.metadata.managedFields : undefined;
  return Array.isArray(mf) ? (mf.filter((e) => isPlainObject(e) && typeof e.manager === 'string') as unknown as ManagedFieldsEntry[]) : [];
}

interface Owned {
  entry: ManagedFieldsEntry;
  set: Set<string>;
}

function sameOwner(a: ManagedFieldsEntry, manager: string, op: string, sub: string | undefined): boolean {
  return a.manager === manager && a.operation === op && (a.subresource ?? '') === (sub ?? '');
}

function build(owned: Owned[]): ManagedFieldsEntry[] {
  return owned
    .filter((o) => o.set.size > 0)
    .map((o) => {
      const e: ManagedFieldsEntry = {
        manager: o.entry.manager,
        operation: o.entry.operation,
        apiVersion: o.entry.apiVersion,
        time: o.entry.time,
        fieldsType: 'FieldsV1',
        fieldsV1: encodeFieldsV1(o.set),
      };
      if (o.entry.subresource) e.subresource = o.entry.subresource;
      return e;
    });
}

/**
 * managedFields after a non-apply write (create, update, patch): the fields
 * that changed become `manager`'s, fields that vanished are nobody's.
 */
export function trackUpdate(
  oldObj: unknown,
  newObj: Record<string, unknown>,
  opts: { manager: string; apiVersion: string; subresource?: string; lookup: ListMetaLookup },
): ManagedFieldsEntry[] {
  if (oldObj === undefined) {
    const fieldsV1 = fieldsTree(newObj, opts.lookup);
    if (Object.keys(fieldsV1).length === 0) return [];
    const entry: ManagedFieldsEntry = { manager: opts.manager, operation: 'Update', apiVersion: opts.apiVersion, time: nowTimestamp(), fieldsType: 'FieldsV1', fieldsV1 };
    if (opts.subresource) entry.subresource = opts.subresource;
    return [entry];
  }
  const scope = opts.subresource === 'status' ? 'status' : undefined;
  const newSet = fieldSet(newObj, opts.lookup);
  const oldSet = fieldSet(oldObj, opts.lookup);
  const changed = new Set<string>();
  for (const p of fieldSet(newObj, opts.lookup, scope)) {
    if (!oldSet.has(p) || !deepEqual(valueAt(newObj, p).value, valueAt(oldObj, p).value)) changed.add(p);
  }
  const owned: Owned[] = entriesOf(oldObj).map((entry) => ({ entry, set: decodeFieldsV1(entry.fieldsV1) }));
  for (const o of owned) for (const p of [...o.set]) if (!newSet.has(p) || changed.has(p)) o.set.delete(p);
  if (changed.size > 0) {
    let mine = owned.find((o) => sameOwner(o.entry, opts.manager, 'Update', opts.subresource));
    if (!mine) {
      const entry: ManagedFieldsEntry = { manager: opts.manager, operation: 'Update', apiVersion: opts.apiVersion, time: '', fieldsType: 'FieldsV1', fieldsV1: {} };
      if (opts.subresource) entry.subresource = opts.subresource;
      mine = { entry, set: new Set() };
      owned.push(mine);
    }
    mine.entry = { ...mine.entry, time: nowTimestamp(), apiVersion: opts.apiVersion };
    for (const p of changed) mine.set.add(p);
  }
  return build(owned);
}

function applyMerge(live: unknown, applied: unknown, names: string[], lookup: ListMetaLookup): unknown {
  if (isPlainObject(applied)) {
    const out: Record<string, unknown> = isPlainObject(live) ? { ...live } : {};
    for (const [k, v] of Object.entries(applied)) out[k] = applyMerge(out[k], v, [...names, k], lookup);
    return out;
  }
  if (Array.isArray(applied) && Array.isArray(live)) {
    const meta = lookup(names);
    if (meta.kind === 'map') {
      const out = [...live];
      for (const item of applied) {
        if (!isPlainObject(item)) return clone(applied);
        const k = itemKey(item, meta.keys);
        const idx = out.findIndex((x) => isPlainObject(x) && itemKey(x, meta.keys) === k);
        if (idx >= 0) out[idx] = applyMerge(out[idx], item, names, lookup);
        else out.push(clone(item));
      }
      return out;
    }
    if (meta.kind === 'set') {
      const out = [...live];
      for (const x of applied) if (!out.some((y) => deepEqual(x, y))) out.push(clone(x));
      return out;
    }
  }
  return clone(applied);
}

/**
 * Server-side apply of `applied` (already pruned and typed) onto `live`.
 * Returns the merged object (without managedFields) and the new managedFields.
 */
export function serverSideApply(
  live: Record<string, unknown> | undefined,
  applied: Record<string, unknown>,
  opts: { manager: string; apiVersion: string; force: boolean; subresource?: string; lookup: ListMetaLookup },
): { object: Record<string, unknown>; managedFields: ManagedFieldsEntry[] } {
  const scope = opts.subresource === 'status' ? 'status' : undefined;
  const appliedSet = fieldSet(applied, opts.lookup, scope);
  const owned: Owned[] = entriesOf(live).map((entry) => ({ entry, set: decodeFieldsV1(entry.fieldsV1) }));
  const mineIdx = owned.findIndex((o) => sameOwner(o.entry, opts.manager, 'Apply', opts.subresource));
  const previous = mineIdx >= 0 ? owned[mineIdx]!.set : new Set<string>();

  if (live) {
    const conflicts: { manager: string; apiVersion: string; subresource?: string; path: string }[] = [];
    for (const o of owned) {
      // Managers are (name, operation, subresource): the same name updating is another manager.
      if (sameOwner(o.entry, opts.manager, 'Apply', opts.subresource)) continue;
      for (const p of appliedSet) {
        if (p.endsWith(`${SEP}.`) || !o.set.has(p)) continue;
        const a = valueAt(applied, p);
        const l = valueAt(live, p);
        if (!l.found || !deepEqual(a.value, l.value)) {
          conflicts.push({ manager: o.entry.manager, apiVersion: o.entry.apiVersion, subresource: o.entry.subresource, path: p });
        }
      }
    }
    if (conflicts.length && !opts.force) throw conflictError(conflicts);
    if (opts.force) for (const o of owned) if (!sameOwner(o.entry, opts.manager, 'Apply', opts.subresource)) for (const p of appliedSet) o.set.delete(p);
  }

  const appliedBody: Record<string, unknown> = { ...applied };
  const merged = applyMerge(live ?? {}, appliedBody, [], opts.lookup) as Record<string, unknown>;
  if (isPlainObject(merged.metadata)) merged.metadata = { ...merged.metadata };
  // Fields this manager applied before, dropped now, and owned by nobody else go away.
  for (const p of previous) {
    if (appliedSet.has(p)) continue;
    const ownedElsewhere = owned.some((o, i) => i !== mineIdx && [...o.set].some((q) => q === p || q.startsWith(p.endsWith(`${SEP}.`) ? p.slice(0, -2) : `${p}${SEP}`)));
    if (!ownedElsewhere) removeAt(merged, p);
  }
  const entry: ManagedFieldsEntry = { manager: opts.manager, operation: 'Apply', apiVersion: opts.apiVersion, time: nowTimestamp(), fieldsType: 'FieldsV1', fieldsV1: {} };
  if (opts.subresource) entry.subresource = opts.subresource;
  const mine: Owned = { entry, set: appliedSet };
  if (mineIdx >= 0) owned[mineIdx] = mine;
  else owned.push(mine);
  return { object: merged, managedFields: build(owned) };
}

function conflictError(conflicts: { manager: string; apiVersion: string; subresource?: string; path: string }[]): ApiError {
  const n = conflicts.length;
  const byManager = new Map<string, string[]>();
  for (const c of conflicts) {
    const k = `"${c.manager}"${c.subresource ? ` with subresource "${c.subresource}"` : ''} using ${c.apiVersion}`;
    byManager.set(k, [...(byManager.get(k) ?? []), displayPath(c.path)]);
  }
  const parts = [...byManager].map(([who, paths]) =>
    paths.length === 1 ? `conflict with ${who}: ${paths[0]}` : `conflicts with ${who}:\n- ${paths.join('\n- ')}`,
  );
  return new ApiError(409, 'Conflict', `Apply failed with ${n} conflict${n === 1 ? '' : 's'}: ${parts.join('\n')}`, {
    causes: conflicts.map((c) => ({
      reason: 'FieldManagerConflict',
      message: `conflict with "${c.manager}"${c.subresource ? ` with subresource "${c.subresource}"` : ''} using ${c.apiVersion}`,
      field: displayPath(c.path),
    })),
  });
}
