/**
 * Read-your-writes for the reconciler. After a reconcile writes, the next one
 * may start before the watch has delivered those writes to the cache (the
 * write's response and the watch event travel on different connections), and
 * would then create again (409 AlreadyExists), replace from a stale
 * resourceVersion (409 Conflict) or write the same status twice (and record
 * its Event twice). So each write's result is remembered until the informer
 * shows the cache has caught up: the event carrying the written
 * resourceVersion (watch events are ordered, so later changes by others come
 * after it), the delete event for a delete, or a relist. Entries also expire,
 * as a safety net. This is client-go's "expectations" idea, kept per object.
 */
import { objectKey, type KubeObject } from '../k8s/index.ts';
import type { PolicyObject } from './objects.ts';
import type { World } from './world.ts';

interface Entry<T> {
  /** undefined: deleted. */
  obj: T | undefined;
  at: number;
}

export class RecentWrites<T extends KubeObject> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly cached: (key: string) => KubeObject | undefined;

  /** `cached` looks an object up in the informer's store. */
  constructor(cached: (key: string) => KubeObject | undefined, opts: { ttlMs?: number; now?: () => number } = {}) {
    this.cached = cached;
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Remember a write: the object as the server returned it, or undefined for
   * a delete. `readVersion` is the resourceVersion the write was based on
   * (undefined for a create). If the cache has moved since, the watch got
   * there first (or someone else wrote): nothing to remember.
   */
  record(key: string, obj: T | undefined, readVersion: string | undefined): void {
    const e = this.live(key);
    const current = e ? e.obj : this.cached(key);
    this.entries.delete(key);
    if (current?.metadata.resourceVersion !== readVersion) return;
    this.entries.set(key, { obj, at: this.now() });
  }

  /** The informer stored `obj`: a remembered write of this version is now in the cache. */
  observe(obj: KubeObject): void {
    const key = objectKey(obj);
    const e = this.entries.get(key);
    if (e?.obj && e.obj.metadata.resourceVersion === obj.metadata.resourceVersion) this.entries.delete(key);
  }

  /** The informer saw `obj` deleted. */
  observeDelete(obj: KubeObject): void {
    const key = objectKey(obj);
    if (this.entries.get(key)?.obj === undefined) this.entries.delete(key);
  }

  /** After a relist the cache is as fresh as any write. */
  clear(): void {
    this.entries.clear();
  }

  private live(key: string): Entry<T> | undefined {
    const e = this.entries.get(key);
    if (e && this.now() - e.at > this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** One object: the remembered write if any, else the cached one. */
  get(key: string, cached: T | undefined): T | undefined {
    const e = this.live(key);
    return e ? e.obj : cached;
  }
}

/**
 * The reconciler's remembered writes: its policies' status. (Assignments are
 * written by the node writer, which keeps its own: nodes.ts.)
 */
export interface RecentPolicyWrites {
  policies: RecentWrites<PolicyObject>;
}

/** The world as the reconciler should see it: the caches with its own recent writes applied. */
export function withRecentWrites(world: World, recent: RecentPolicyWrites): World {
  return {
    policy: (ns, name) => recent.policies.get(`${ns}/${name}`, world.policy(ns, name)),
    namespace: (name) => world.namespace(name),
    node: (name) => world.node(name),
    podsInNamespace: (ns) => world.podsInNamespace(ns),
    service: (ns, name) => world.service(ns, name),
    endpointSlices: (ns, svc) => world.endpointSlices(ns, svc),
    assignmentsOf: (ns, policy) => world.assignmentsOf(ns, policy),
  };
}
