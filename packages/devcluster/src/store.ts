/**
 * The object store: one global resourceVersion counter (as etcd's revision),
 * per-resource maps indexed by namespace, a bounded per-resource history of
 * changes (kube-apiserver's watch cache window) and synchronous fan-out to
 * watchers. Everything runs on the event loop, so a handler's
 * read-check-write without an `await` in between is atomic, as an etcd
 * transaction is.
 *
 * Objects are deep-frozen once stored and replaced, never changed, so lists
 * and events hand out references; each history entry carries the previous
 * state, which lets a watch tell selector transitions (ADDED/DELETED) and a
 * paginated list rebuild the snapshot its first page saw.
 */
import { deepFreeze, objectKey, type KubeObject } from './objects.ts';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface ChangeEvent {
  rv: number;
  type: EventType;
  key: string;
  /** The new state; for DELETED the last state with the deletion's resourceVersion. */
  object: KubeObject;
  /** The state before the change (absent for ADDED). */
  prev: KubeObject | undefined;
  /** Serialisations per output shape, shared by all watchers of the event. */
  encoded?: Map<string, string>;
}

export interface StoreWatcher {
  /** Only events of this namespace, or all when undefined. */
  namespace: string | undefined;
  deliver(e: ChangeEvent): void;
  /** The resource went away (CRD deleted) or the server is closing. */
  terminate(): void;
}

/** A fixed-capacity ring of change events, oldest first. */
class History {
  private readonly buf: (ChangeEvent | undefined)[];
  private start = 0;
  size = 0;
  constructor(capacity: number) {
    this.buf = new Array(Math.max(1, capacity));
  }
  /** Returns the evicted event, if the ring was full. */
  push(e: ChangeEvent): ChangeEvent | undefined {
    const cap = this.buf.length;
    if (this.size < cap) {
      this.buf[(this.start + this.size) % cap] = e;
      this.size++;
      return undefined;
    }
    const evicted = this.buf[this.start];
    this.buf[this.start] = e;
    this.start = (this.start + 1) % cap;
    return evicted;
  }
  at(i: number): ChangeEvent {
    return this.buf[(this.start + i) % this.buf.length]!;
  }
  /** Index of the first event with rv > `rv` (binary search; rvs increase). */
  firstAfter(rv: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at(mid).rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export class ResourceStore {
  readonly storage: string;
  readonly namespaced: boolean;
  private readonly objects = new Map<string, KubeObject>();
  private readonly byNamespace = new Map<string, Map<string, KubeObject>>();
  private sortedAll: string[] | null = null;
  private readonly sortedNs = new Map<string, string[]>();
  readonly history: History;
  /** Every event with rv <= horizon may have been evicted from history. */
  horizon = 0;
  readonly watchers = new Set<StoreWatcher>();

  constructor(storage: string, namespaced: boolean, historySize: number) {
    this.storage = storage;
    this.namespaced = namespaced;
    this.history = new History(historySize);
  }

  get size(): number {
    return this.objects.size;
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(objectKey(this.namespaced ? namespace : undefined, name));
  }

  getByKey(key: string): KubeObject | undefined {
    return this.objects.get(key);
  }

  /** Keys in etcd order (sorted), for one namespace or all. */
  sortedKeys(namespace: string | undefined): string[] {
    if (namespace !== undefined && this.namespaced) {
      let ks = this.sortedNs.get(namespace);
      if (!ks) {
        const m = this.byNamespace.get(namespace);
        ks = m ? [...m.keys()].map((n) => objectKey(namespace, n)).sort(byCodeUnit) : [];
        this.sortedNs.set(namespace, ks);
      }
      return ks;
    }
    if (!this.sortedAll) this.sortedAll = [...this.objects.keys()].sort(byCodeUnit);
    return this.sortedAll;
  }

  /** Objects of a namespace (or all), unsorted: for scans that do not need order. */
  *values(namespace: string | undefined): IterableIterator<KubeObject> {
    if (namespace !== undefined && this.namespaced) {
      const m = this.byNamespace.get(namespace);
      if (m) yield* m.values();
      return;
    }
    yield* this.objects.values();
  }

  namespaceCount(namespace: string): number {
    return this.byNamespace.get(namespace)?.size ?? 0;
  }

  /** Applies an event to the maps and the history; the Store notifies watchers. */
  record(e: ChangeEvent): void {
    const ns = this.namespaced ? e.object.metadata.namespace ?? '' : '';
    const name = e.object.metadata.name ?? '';
    if (e.type === 'DELETED') {
      this.objects.delete(e.key);
      const m = this.byNamespace.get(ns);
      m?.delete(name);
      if (m && m.size === 0) this.byNamespace.delete(ns);
      this.sortedAll = null;
      this.sortedNs.delete(ns);
    } else {
      if (e.type === 'ADDED') {
        this.sortedAll = null;
        this.sortedNs.delete(ns);
      }
      this.objects.set(e.key, e.object);
      let m = this.byNamespace.get(ns);
      if (!m) {
        m = new Map();
        this.byNamespace.set(ns, m);
      }
      m.set(name, e.object);
    }
    const evicted = this.history.push(e);
    if (evicted) this.horizon = evicted.rv;
  }

  /** Events after `rv`, or undefined when some of them have been evicted. */
  eventsAfter(rv: number): ChangeEvent[] | undefined {
    if (rv < this.horizon) return undefined;
    const out: ChangeEvent[] = [];
    for (let i = this.history.firstAfter(rv); i < this.history.size; i++) out.push(this.history.at(i));
    return out;
  }

  /**
   * The objects as they were at `rv` (sorted keys and a lookup), rebuilt by
   * undoing later events; undefined when the history no longer reaches back.
   */
  snapshotAt(rv: number, namespace: string | undefined): { keys: string[]; get(key: string): KubeObject | undefined } | undefined {
    const later = this.eventsAfter(rv);
    if (later === undefined) return undefined;
    const scoped = (k: string) => namespace === undefined || !this.namespaced || k.startsWith(`${namespace}/`);
    if (later.length === 0 || !later.some((e) => scoped(e.key))) {
      return { keys: this.sortedKeys(namespace), get: (k) => this.objects.get(k) };
    }
    const overrides = new Map<string, KubeObject | undefined>();
    for (let i = later.length - 1; i >= 0; i--) {
      const e = later[i]!;
      if (scoped(e.key)) overrides.set(e.key, e.prev);
    }
    const keys = new Set(this.sortedKeys(namespace));
    for (const [k, v] of overrides) {
      if (v === undefined) keys.delete(k);
      else keys.add(k);
    }
    return {
      keys: [...keys].sort(byCodeUnit),
      get: (k) => (overrides.has(k) ? overrides.get(k) : this.objects.get(k)),
    };
  }
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export type StoreListener = (storage: string, e: ChangeEvent) => void;

export class Store {
  private rv: number;
  private readonly resources = new Map<string, ResourceStore>();
  private readonly listeners: StoreListener[] = [];
  /** owner uid → `${storage}\0${key}` of the objects that name it in ownerReferences. */
  private readonly dependents = new Map<string, Set<string>>();
  readonly historySize: number;

  constructor(opts: { historySize?: number; initialResourceVersion?: number } = {}) {
    this.historySize = opts.historySize ?? 10_000;
    this.rv = opts.initialResourceVersion ?? 1;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  ensure(storage: string, namespaced: boolean): ResourceStore {
    let r = this.resources.get(storage);
    if (!r) {
      r = new ResourceStore(storage, namespaced, this.historySize);
      this.resources.set(storage, r);
    }
    return r;
  }

  resource(storage: string): ResourceStore | undefined {
    return this.resources.get(storage);
  }

  /** Drops a resource (its CRD is gone): watchers end, as the real server closes them. */
  drop(storage: string): void {
    const r = this.resources.get(storage);
    if (!r) return;
    for (const w of [...r.watchers]) w.terminate();
    for (const o of r.values(undefined)) this.unindexOwners(storage, keyOf(r, o), o);
    this.resources.delete(storage);
  }

  onChange(l: StoreListener): void {
    this.listeners.push(l);
  }

  /** Stores a new object; the caller has filled its metadata except resourceVersion. */
  create(storage: string, obj: KubeObject): KubeObject {
    const r = this.mustResource(storage);
    const stored = this.stamp(obj);
    const key = keyOf(r, stored);
    this.emit(r, { rv: this.rv, type: 'ADDED', key, object: stored, prev: undefined });
    this.indexOwners(storage, key, undefined, stored);
    return stored;
  }

  update(storage: string, obj: KubeObject, prev: KubeObject): KubeObject {
    const r = this.mustResource(storage);
    const stored = this.stamp(obj);
    const key = keyOf(r, stored);
    this.emit(r, { rv: this.rv, type: 'MODIFIED', key, object: stored, prev });
    this.indexOwners(storage, key, prev, stored);
    return stored;
  }

  remove(storage: string, prev: KubeObject): KubeObject {
    const r = this.mustResource(storage);
    const last = this.stamp({ ...prev, metadata: { ...prev.metadata } });
    const key = keyOf(r, last);
    this.emit(r, { rv: this.rv, type: 'DELETED', key, object: last, prev });
    this.unindexOwners(storage, key, prev);
    return last;
  }

  /** Objects whose ownerReferences name `uid`, as [storage, key] pairs. */
  dependentsOf(uid: string): [string, string][] {
    const s = this.dependents.get(uid);
    if (!s) return [];
    return [...s].map((x) => {
      const i = x.indexOf('\0');
      return [x.slice(0, i), x.slice(i + 1)];
    });
  }

  closeAll(): void {
    for (const r of this.resources.values()) for (const w of [...r.watchers]) w.terminate();
  }

  private mustResource(storage: string): ResourceStore {
    const r = this.resources.get(storage);
    if (!r) throw new Error(`no storage for ${storage}`);
    return r;
  }

  private stamp(obj: KubeObject): KubeObject {
    this.rv++;
    const out = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } };
    return deepFreeze(out);
  }

  private emit(r: ResourceStore, e: ChangeEvent): void {
    r.record(e);
    for (const w of r.watchers) {
      if (w.namespace === undefined || w.namespace === (e.object.metadata.namespace ?? '')) w.deliver(e);
    }
    for (const l of this.listeners) l(r.storage, e);
  }

  private indexOwners(storage: string, key: string, prev: KubeObject | undefined, next: KubeObject): void {
    const before = new Set((prev?.metadata.ownerReferences ?? []).map((o) => o.uid));
    const after = new Set((next.metadata.ownerReferences ?? []).map((o) => o.uid));
    const ref = `${storage}\0${key}`;
    for (const uid of before) if (!after.has(uid)) this.dependents.get(uid)?.delete(ref);
    for (const uid of after) {
      let s = this.dependents.get(uid);
      if (!s) {
        s = new Set();
        this.dependents.set(uid, s);
      }
      s.add(ref);
    }
  }

  private unindexOwners(storage: string, key: string, prev: KubeObject): void {
    const ref = `${storage}\0${key}`;
    for (const o of prev.metadata.ownerReferences ?? []) {
      const s = this.dependents.get(o.uid);
      s?.delete(ref);
      if (s && s.size === 0) this.dependents.delete(o.uid);
    }
  }
}

function keyOf(r: ResourceStore, o: KubeObject): string {
  return objectKey(r.namespaced ? o.metadata.namespace : undefined, o.metadata.name ?? '');
}
