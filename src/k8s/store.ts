/**
 * An indexed object store (client-go's cache.Indexer): objects by key
 * (`namespace/name`), plus named indexes from a value to the keys of the
 * objects that produce it (`byNamespace: shop -> {shop/web-1, ...}`), kept up
 * to date on every write, so lookups never scan the whole store.
 */
import { objectKey, type KubeObject } from './client.ts';

/** The index values of an object (empty: not in this index). */
export type IndexFunc<T> = (obj: T) => readonly string[];

export interface ReadStore<T> {
  get(key: string): T | undefined;
  /** The objects whose index function returned `value`. */
  byIndex(index: string, value: string): T[];
  /** How many objects `byIndex` would return, without building the list. */
  countIndex(index: string, value: string): number;
  list(): IterableIterator<T>;
  readonly size: number;
}

export class Store<T extends KubeObject> implements ReadStore<T> {
  private readonly items = new Map<string, T>();
  private readonly indexers: Record<string, IndexFunc<T>>;
  private readonly indices = new Map<string, Map<string, Set<string>>>();

  /** Index functions must be pure: the values an object was filed under are computed again to unfile it. */
  constructor(indexers: Record<string, IndexFunc<T>> = {}) {
    this.indexers = indexers;
    for (const name of Object.keys(indexers)) this.indices.set(name, new Map());
  }

  get size(): number {
    return this.items.size;
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  list(): IterableIterator<T> {
    return this.items.values();
  }

  keys(): IterableIterator<string> {
    return this.items.keys();
  }

  byIndex(index: string, value: string): T[] {
    const keys = this.index(index).get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const k of keys) {
      const o = this.items.get(k);
      if (o) out.push(o);
    }
    return out;
  }

  countIndex(index: string, value: string): number {
    return this.index(index).get(value)?.size ?? 0;
  }

  /** The values present in an index. */
  indexValues(index: string): IterableIterator<string> {
    return this.index(index).keys();
  }

  /** Insert or replace; returns the previous object. */
  upsert(obj: T): T | undefined {
    const key = objectKey(obj);
    const old = this.items.get(key);
    this.items.set(key, obj);
    this.reindex(key, old, obj);
    return old;
  }

  /** Remove by key; returns the removed object. */
  remove(key: string): T | undefined {
    const old = this.items.get(key);
    if (!old) return undefined;
    this.items.delete(key);
    this.reindex(key, old, undefined);
    return old;
  }

  clear(): void {
    this.items.clear();
    for (const m of this.indices.values()) m.clear();
  }

  private index(name: string): Map<string, Set<string>> {
    const idx = this.indices.get(name);
    if (!idx) throw new Error(`store: no index named ${name}`);
    return idx;
  }

  private reindex(key: string, old: T | undefined, obj: T | undefined): void {
    for (const [name, fn] of Object.entries(this.indexers)) {
      const idx = this.indices.get(name)!;
      const before = old ? fn(old) : [];
      const after = obj ? fn(obj) : [];
      if (before.length === after.length && before.every((v, i) => v === after[i])) continue;
      for (const v of before) {
        const set = idx.get(v);
        if (!set) continue;
        set.delete(key);
        if (set.size === 0) idx.delete(v);
      }
      for (const v of after) {
        let set = idx.get(v);
        if (!set) idx.set(v, (set = new Set()));
        set.add(key);
      }
    }
  }
}
