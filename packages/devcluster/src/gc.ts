/**
 * The garbage collector, as kube-controller-manager's works at its API
 * surface: dependents are found by owner uid; when every owner of a
 * dependent is gone the dependent is deleted (in the background); when some
 * owners remain only the dangling reference is removed. Owners deleted with
 * `propagationPolicy=Orphan` have the reference removed from their
 * dependents before their `orphan` finalizer goes; owners deleted with
 * `Foreground` keep their `foregroundDeletion` finalizer until every
 * dependent is gone. A dependent created with a reference to an owner that
 * does not exist (wrong uid, other namespace) is collected too.
 * Work runs asynchronously after the write that caused it, never inside it.
 */
import type { Logger } from 'pino';
import type { Api } from './api.ts';
import { parseApiVersion, type ResourceDef } from './registry.ts';
import type { ChangeEvent } from './store.ts';
import type { KubeObject } from './objects.ts';

interface Location {
  storage: string;
  key: string;
  namespace: string | undefined;
}

export class GarbageCollector {
  private readonly api: Api;
  private readonly log: Logger;
  private readonly byUid = new Map<string, Location>();
  private readonly queue: (() => void)[] = [];
  private scheduled = false;
  private closed = false;

  constructor(api: Api, log: Logger) {
    this.api = api;
    this.log = log.child({ controller: 'garbage-collector' });
    api.store.onChange((storage, e) => this.observe(storage, e));
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
  }

  /** Resolves once the queue is empty (tests and orderly shutdown). */
  async idle(): Promise<void> {
    while (this.queue.length > 0 || this.scheduled) await new Promise((r) => setImmediate(r));
  }

  private observe(storage: string, e: ChangeEvent): void {
    const uid = e.object.metadata.uid;
    if (!uid) return;
    if (e.type === 'DELETED') {
      this.byUid.delete(uid);
      this.enqueue(() => this.collectDependents(uid));
      for (const o of e.object.metadata.ownerReferences ?? []) this.enqueue(() => this.checkForegroundOwner(o.uid));
      return;
    }
    this.byUid.set(uid, { storage, key: e.key, namespace: e.object.metadata.namespace });
    const finalizers = e.object.metadata.finalizers ?? [];
    if (e.object.metadata.deletionTimestamp) {
      if (finalizers.includes('orphan')) this.enqueue(() => this.orphan(uid));
      if (finalizers.includes('foregroundDeletion')) this.enqueue(() => this.foreground(uid));
    }
    const refs = e.object.metadata.ownerReferences ?? [];
    const prevRefs = e.prev?.metadata.ownerReferences ?? [];
    if (refs.length > 0 && (e.type === 'ADDED' || refs.some((r) => !prevRefs.some((p) => p.uid === r.uid)))) {
      this.enqueue(() => this.verifyOwners(storage, e.key));
    }
  }

  private enqueue(task: () => void): void {
    if (this.closed) return;
    this.queue.push(task);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    // A bounded batch per turn keeps the event loop serving requests.
    for (let n = 0; n < 500 && this.queue.length > 0; n++) {
      const task = this.queue.shift()!;
      try {
        task();
      } catch (err) {
        this.log.warn({ err }, 'garbage collection step failed');
      }
    }
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private defFor(storage: string): ResourceDef | undefined {
    const defs = this.api.registry.byStorage(storage);
    return defs.find((d) => d.isStorageVersion !== false && !d.toStorage) ?? defs[0];
  }

  private lookup(loc: Location): { def: ResourceDef; obj: KubeObject } | undefined {
    const def = this.defFor(loc.storage);
    if (!def) return undefined;
    const obj = this.api.storedByKey(def, loc.key);
    return obj ? { def, obj } : undefined;
  }

  private dependents(uid: string): { def: ResourceDef; obj: KubeObject }[] {
    const out: { def: ResourceDef; obj: KubeObject }[] = [];
    for (const [storage, key] of this.api.store.dependentsOf(uid)) {
      const found = this.lookup({ storage, key, namespace: undefined });
      if (found) out.push(found);
    }
    return out;
  }

  /** True when the owner a reference names exists with that uid where the dependent can see it. */
  private ownerExists(dep: KubeObject, ref: { apiVersion: string; kind: string; uid: string }): boolean | undefined {
    const { group } = parseApiVersion(ref.apiVersion);
    const ownerDef = this.api.registry.byGroupKind(group, ref.kind);
    // An owner of an unknown kind cannot be verified; the real collector leaves such dependents alone.
    if (!ownerDef) return undefined;
    const loc = this.byUid.get(ref.uid);
    if (!loc || loc.storage !== ownerDef.storage) return false;
    if (ownerDef.namespaced && loc.namespace !== dep.metadata.namespace) return false;
    return true;
  }

  private collectDependents(uid: string): void {
    for (const { def, obj } of this.dependents(uid)) this.resolve(def, obj);
  }

  /** Deletes a dependent whose owners are all gone, or drops the dangling references. */
  private resolve(def: ResourceDef, obj: KubeObject): void {
    const refs = obj.metadata.ownerReferences ?? [];
    const status = refs.map((r) => ({ ref: r, exists: this.ownerExists(obj, r) }));
    const absent = status.filter((s) => s.exists === false);
    if (absent.length === 0) return;
    if (absent.length === refs.length) {
      if (obj.metadata.deletionTimestamp) return;
      this.log.debug({ resource: def.resource, name: obj.metadata.name }, 'deleting dependent of a deleted owner');
      this.api.deleteObject(def, obj, 'Background');
      return;
    }
    const gone = new Set(absent.map((a) => a.ref.uid));
    this.api.internalUpdate(def, obj, (o) => {
      o.metadata.ownerReferences = (o.metadata.ownerReferences ?? []).filter((r) => !gone.has(r.uid));
    });
  }

  private verifyOwners(storage: string, key: string): void {
    const found = this.lookup({ storage, key, namespace: undefined });
    if (found) this.resolve(found.def, found.obj);
  }

  private removeFinalizer(uid: string, finalizer: string): void {
    const loc = this.byUid.get(uid);
    const found = loc && this.lookup(loc);
    if (!found) return;
    this.api.internalUpdate(found.def, found.obj, (o) => {
      o.metadata.finalizers = (o.metadata.finalizers ?? []).filter((f) => f !== finalizer);
      if (o.metadata.finalizers.length === 0) delete o.metadata.finalizers;
    });
  }

  private orphan(uid: string): void {
    for (const { def, obj } of this.dependents(uid)) {
      this.api.internalUpdate(def, obj, (o) => {
        o.metadata.ownerReferences = (o.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
        if (o.metadata.ownerReferences.length === 0) delete o.metadata.ownerReferences;
      });
    }
    this.removeFinalizer(uid, 'orphan');
  }

  private foreground(uid: string): void {
    const deps = this.dependents(uid);
    if (deps.length === 0) {
      this.removeFinalizer(uid, 'foregroundDeletion');
      return;
    }
    for (const { def, obj } of deps) {
      if (!obj.metadata.deletionTimestamp) this.api.deleteObject(def, obj, 'Foreground');
    }
  }

  /** A dependent went away: its foreground-deleting owner may now be finished. */
  private checkForegroundOwner(uid: string): void {
    const loc = this.byUid.get(uid);
    const found = loc && this.lookup(loc);
    if (!found) return;
    const m = found.obj.metadata;
    if (m.deletionTimestamp && (m.finalizers ?? []).includes('foregroundDeletion')) this.foreground(uid);
  }
}
