/**
 * The built-in kinds podtap reads and writes, and a client typed by kind.
 * Built-in kinds are used as plain JSON (their full types are not needed, and
 * the generated ones carry Date objects — see client.ts); the podtap.io kinds
 * and their typed clients are the API's (src/api/resources.ts).
 */
import type { KubeClient, KubeObject, ListOptions, PatchType, ResourceRef, WatchEvent, WatchOptions } from './client.ts';

export const Resources = {
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  endpointSlices: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
} as const satisfies Record<string, ResourceRef>;

/** One kind's operations, typed. Every call throws KubeApiError on an API error (see errors.ts). */
export class ResourceClient<T extends KubeObject> {
  readonly client: KubeClient;
  readonly ref: ResourceRef;

  constructor(client: KubeClient, ref: ResourceRef) {
    this.client = client;
    this.ref = ref;
  }

  /** Every object (paginated), e.g. `list({ namespace, labelSelector: 'podtap.io/node=n1' })`. */
  async list(opts: ListOptions = {}): Promise<T[]> {
    return (await this.client.list<T>(this.ref, opts)).items;
  }

  get(namespace: string | undefined, name: string): Promise<T> {
    return this.client.get<T>(this.ref, namespace, name);
  }

  create(obj: T): Promise<T> {
    return this.client.create(this.ref, obj);
  }

  /** Conditional on obj.metadata.resourceVersion: a stale one gets 409 Conflict. */
  replace(obj: T): Promise<T> {
    return this.client.replace(this.ref, obj);
  }

  delete(namespace: string | undefined, name: string, opts?: { uid?: string; resourceVersion?: string }): Promise<void> {
    return this.client.delete(this.ref, namespace, name, opts);
  }

  patch(namespace: string | undefined, name: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.client.patch<T>(this.ref, namespace, name, patch, type);
  }

  /** PUT the status subresource (spec changes in `obj` are ignored by the server). */
  replaceStatus(obj: T): Promise<T> {
    return this.client.replaceStatus(this.ref, obj);
  }

  /** PATCH the status subresource, e.g. patchStatus(ns, name, { status: { state: 'Attached' } }). */
  patchStatus(namespace: string | undefined, name: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.client.patchStatus<T>(this.ref, namespace, name, patch, type);
  }

  watch(opts: WatchOptions, onEvent: (event: WatchEvent<T>) => void): Promise<void> {
    return this.client.watch<T>(this.ref, opts, onEvent);
  }
}
