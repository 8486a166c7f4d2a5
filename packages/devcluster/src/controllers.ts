/**
 * The in-process stand-ins for the controllers a real control plane runs
 * next to the API server and that API clients can observe:
 * - CRD establishment: an accepted CRD's versions are served as soon as it
 *   is stored, then its status gets NamesAccepted/Established; a deleted
 *   CRD keeps its cleanup finalizer until its custom resources are gone;
 * - namespace lifecycle: a deleted namespace is Terminating until the
 *   objects in it are deleted, then its `kubernetes` finalizer is removed;
 *   every new namespace gets its `default` ServiceAccount;
 * - the kubelet's side of graceful pod deletion (containers stop at once).
 */
import type { Logger } from 'pino';
import { defaultWriteOptions, NAMESPACE_STORAGE, type Api } from './api.ts';
import { CRD_CLEANUP_FINALIZER, CRD_STORAGE, defsFromCrd, establishedStatus } from './crd.ts';
import type { ChangeEvent } from './store.ts';
import { deepEqual, type KubeObject } from './objects.ts';
import type { ResourceDef } from './registry.ts';

export class Controllers {
  private readonly api: Api;
  private readonly log: Logger;
  /** CRD name → the storage its resources use. */
  private readonly crdStorage = new Map<string, string>();
  private readonly terminatingCrds = new Map<string, string>();
  private readonly terminatingNamespaces = new Set<string>();
  private readonly pending = new Set<string>();
  private closed = false;
  private readonly podTerminationMs: number;

  constructor(api: Api, log: Logger, opts: { podTerminationMs?: number } = {}) {
    this.api = api;
    this.log = log.child({ controller: 'control-plane' });
    this.podTerminationMs = opts.podTerminationMs ?? 200;
    api.store.onChange((storage, e) => this.observe(storage, e));
  }

  close(): void {
    this.closed = true;
  }

  private later(key: string, fn: () => void): void {
    if (this.closed || this.pending.has(key)) return;
    this.pending.add(key);
    setImmediate(() => {
      this.pending.delete(key);
      if (this.closed) return;
      try {
        fn();
      } catch (err) {
        this.log.warn({ err, key }, 'controller step failed');
      }
    });
  }

  private observe(storage: string, e: ChangeEvent): void {
    if (storage === '/pods') this.observePod(e);
    if (storage === CRD_STORAGE) this.observeCrd(e);
    if (storage === NAMESPACE_STORAGE) this.observeNamespace(e);
    if (e.type === 'DELETED') {
      const ns = e.object.metadata.namespace;
      if (ns && this.terminatingNamespaces.has(ns)) this.later(`ns:${ns}`, () => this.finishNamespace(ns));
      for (const [crd, s] of this.terminatingCrds) if (s === storage) this.later(`crd:${crd}`, () => this.finishCrd(crd));
    }
  }

  // ---- pods ------------------------------------------------------------------

  /**
   * The kubelet's part of graceful deletion: containers "stop" after
   * `podTerminationMs`, then the pod is deleted with grace period 0 (its
   * finalizers, if any, still hold it).
   */
  private observePod(e: ChangeEvent): void {
    const m = e.object.metadata;
    if (e.type === 'DELETED' || !m.deletionTimestamp || !(m.deletionGracePeriodSeconds! > 0)) return;
    const uid = m.uid;
    const key = `kubelet:${e.key}:${uid}:${m.deletionGracePeriodSeconds}`;
    if (this.pending.has(key) || this.closed) return;
    this.pending.add(key);
    const timer = setTimeout(() => {
      this.pending.delete(key);
      if (this.closed) return;
      try {
        const def = this.api.registry.get('', 'v1', 'pods')!;
        const pod = this.api.storedByKey(def, e.key);
        if (pod && pod.metadata.uid === uid && pod.metadata.deletionTimestamp) this.api.deleteObject(def, pod, undefined, { gracePeriodSeconds: 0 });
      } catch (err) {
        this.log.warn({ err, pod: e.key }, 'finishing a pod deletion failed');
      }
    }, Math.min(this.podTerminationMs, (m.deletionGracePeriodSeconds ?? 0) * 1000));
    timer.unref();
  }

  // ---- CRDs ------------------------------------------------------------------

  private crdDef(): ResourceDef {
    return this.api.registry.get('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')!;
  }

  private unregister(name: string): void {
    for (const d of this.api.registry.all()) {
      if (d.custom?.crdName === name) this.api.registry.remove(d.group, d.version, d.resource);
    }
  }

  /** Serves the CRD's versions; runs inside the write so the next request sees them. */
  private register(crd: KubeObject): void {
    const name = crd.metadata.name ?? '';
    const defs = defsFromCrd(crd);
    const storage = defs[0]?.storage;
    const previous = this.crdStorage.get(name);
    this.unregister(name);
    if (previous && previous !== storage) this.api.store.drop(previous);
    const storageVersion = defs.find((d) => d.isStorageVersion) ?? defs[0];
    for (const d of defs) {
      if (storageVersion && d !== storageVersion) {
        const to = `${storageVersion.group}/${storageVersion.version}`;
        const from = `${d.group}/${d.version}`;
        d.toStorage = (o) => ({ ...o, apiVersion: to });
        d.fromStorage = (o) => (o.apiVersion === from ? o : { ...o, apiVersion: from });
      } else {
        const self = `${d.group}/${d.version}`;
        d.fromStorage = (o) => (o.apiVersion === self ? o : { ...o, apiVersion: self });
      }
      this.api.registry.add(d);
    }
    if (storage && defs[0]) {
      this.api.store.ensure(storage, defs[0].namespaced);
      this.crdStorage.set(name, storage);
    }
  }

  private observeCrd(e: ChangeEvent): void {
    const crd = e.object;
    const name = crd.metadata.name ?? '';
    if (e.type === 'DELETED') {
      this.unregister(name);
      const storage = this.crdStorage.get(name);
      if (storage) this.api.store.drop(storage);
      this.crdStorage.delete(name);
      this.terminatingCrds.delete(name);
      return;
    }
    const specChanged = !e.prev || !deepEqual(e.prev.spec, crd.spec);
    if (specChanged || !this.crdStorage.has(name)) {
      try {
        this.register(crd);
      } catch (err) {
        this.log.error({ err, crd: name }, 'cannot serve custom resource definition');
      }
    }
    const terminating = crd.metadata.deletionTimestamp !== undefined;
    if (terminating && (crd.metadata.finalizers ?? []).includes(CRD_CLEANUP_FINALIZER)) {
      const storage = this.crdStorage.get(name);
      if (storage) this.terminatingCrds.set(name, storage);
      this.later(`crd:${name}`, () => this.finishCrd(name));
    }
    this.later(`crd-status:${name}`, () => this.establish(name));
  }

  private establish(name: string): void {
    const def = this.crdDef();
    const crd = this.api.resourceStore(def).get(undefined, name);
    if (!crd) return;
    const status = establishedStatus(crd, crd.metadata.deletionTimestamp !== undefined);
    this.api.internalUpdate(def, crd, (o) => {
      if (!deepEqual(stripTimes(o.status), stripTimes(status))) o.status = status;
    });
  }

  /** Deletes the CRD's objects; once none is left, releases the CRD. */
  private finishCrd(name: string): void {
    const storage = this.terminatingCrds.get(name);
    const def = this.crdDef();
    const crd = this.api.resourceStore(def).get(undefined, name);
    if (!crd || !storage) return;
    const crDef = this.api.registry.byStorage(storage)[0];
    const r = crDef ? this.api.resourceStore(crDef) : undefined;
    if (crDef && r && r.size > 0) {
      for (const o of [...r.values(undefined)]) if (!o.metadata.deletionTimestamp) this.api.deleteObject(crDef, o, 'Background');
      if (r.size > 0) return;
    }
    this.api.internalUpdate(def, crd, (o) => {
      o.metadata.finalizers = (o.metadata.finalizers ?? []).filter((f) => f !== CRD_CLEANUP_FINALIZER);
      if (o.metadata.finalizers.length === 0) delete o.metadata.finalizers;
    });
  }

  // ---- namespaces ----------------------------------------------------------------

  private observeNamespace(e: ChangeEvent): void {
    const name = e.object.metadata.name ?? '';
    if (e.type === 'DELETED') {
      this.terminatingNamespaces.delete(name);
      return;
    }
    if (e.type === 'ADDED') this.later(`sa:${name}`, () => this.defaultServiceAccount(name));
    if (e.object.metadata.deletionTimestamp && !this.terminatingNamespaces.has(name)) {
      this.terminatingNamespaces.add(name);
      this.later(`ns:${name}`, () => this.finishNamespace(name));
    }
  }

  /** The service account controller's `default` ServiceAccount of every namespace. */
  private defaultServiceAccount(namespace: string): void {
    const saDef = this.api.registry.get('', 'v1', 'serviceaccounts')!;
    const ns = this.api.store.resource(NAMESPACE_STORAGE)?.get(undefined, namespace);
    if (!ns || ns.metadata.deletionTimestamp || this.api.resourceStore(saDef).get(namespace, 'default')) return;
    this.api.create(saDef, namespace, { metadata: { name: 'default' } }, { ...defaultWriteOptions(), fieldManager: 'kube-controller-manager' });
  }

  private finishNamespace(name: string): void {
    const nsDef = this.api.registry.get('', 'v1', 'namespaces')!;
    const ns = this.api.resourceStore(nsDef).get(undefined, name);
    if (!ns || !ns.metadata.deletionTimestamp) return;
    let remaining = 0;
    const seen = new Set<string>();
    for (const def of this.api.registry.all()) {
      if (!def.namespaced || seen.has(def.storage) || def.toStorage) continue;
      seen.add(def.storage);
      const r = this.api.resourceStore(def);
      for (const o of [...r.values(name)]) {
        if (!o.metadata.deletionTimestamp) this.api.deleteObject(def, o, 'Background');
      }
      remaining += r.namespaceCount(name);
    }
    if (remaining > 0) return;
    this.api.internalUpdate(nsDef, ns, (o) => {
      const spec = (o.spec ?? {}) as { finalizers?: string[] };
      spec.finalizers = (spec.finalizers ?? []).filter((f) => f !== 'kubernetes');
      if (spec.finalizers.length === 0) delete spec.finalizers;
      o.spec = spec;
    });
  }
}

function stripTimes(status: unknown): unknown {
  const s = status as { conditions?: Record<string, unknown>[] } | undefined;
  if (!s || !Array.isArray(s.conditions)) return s;
  return { ...s, conditions: s.conditions.map((c) => ({ ...c, lastTransitionTime: undefined })) };
}
