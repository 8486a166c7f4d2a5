/**
 * The controller's view of the cluster: what reconciliation reads, answered
 * from indexed stores (filled by informers in production, by hand in tests).
 * Every lookup is an index hit, never a scan of all pods or policies.
 */
import type { SniffAssignment } from '../api/index.ts';
import { Store, type IndexFunc, type KubeObject, type ReadStore } from '../k8s/index.ts';
import {
  SERVICE_NAME_LABEL,
  slimAssignment,
  slimNamespace,
  slimNode,
  slimPod,
  slimPolicy,
  slimService,
  slimSlice,
  type NamespaceInfo,
  type NodeInfo,
  type PodInfo,
  type PolicyObject,
  type ServiceInfo,
  type SliceInfo,
} from './objects.ts';

export interface World {
  policy(namespace: string, name: string): PolicyObject | undefined;
  namespace(name: string): NamespaceInfo | undefined;
  node(name: string): NodeInfo | undefined;
  podsInNamespace(namespace: string): readonly PodInfo[];
  service(namespace: string, name: string): ServiceInfo | undefined;
  /** EndpointSlices of a Service (label kubernetes.io/service-name). */
  endpointSlices(namespace: string, service: string): readonly SliceInfo[];
  /** Assignments made for a policy (by spec.policy; they live in the install namespace). */
  assignmentsOf(namespace: string, policyName: string): readonly SniffAssignment[];
}

export const BY_NAMESPACE = 'byNamespace';
export const BY_NODE = 'byNode';
export const BY_SERVICE = 'byService';
export const BY_POLICY = 'byPolicy';
/** Policies by the `namespace/name` of their collector Service. */
export const BY_COLLECTOR = 'byCollector';
/** Policies that have a nodeSelector (value "yes"): node label changes concern them. */
export const BY_NODE_SELECTOR = 'byNodeSelector';

const ns = (o: KubeObject) => (o.metadata.namespace ? [o.metadata.namespace] : []);

/**
 * The policy an assignment belongs to, `namespace/name`, from spec.policy
 * (labels hold hashed values for long names, so they cannot name it).
 */
export function policyKeyForAssignment(a: SniffAssignment): string | undefined {
  const p = a.spec?.policy;
  return p?.namespace && p.name ? `${p.namespace}/${p.name}` : undefined;
}

/** The collector Service a raw policy names, as `namespace/name` (defaulting to the policy's namespace). */
export function collectorServiceKey(p: PolicyObject): string | undefined {
  const spec = p.spec as { collector?: { service?: { name?: unknown; namespace?: unknown } } } | undefined;
  const svc = spec?.collector?.service;
  if (!svc || typeof svc.name !== 'string') return undefined;
  const svcNs = typeof svc.namespace === 'string' && svc.namespace ? svc.namespace : p.metadata.namespace;
  return `${svcNs}/${svc.name}`;
}

export const policyIndexers: Record<string, IndexFunc<PolicyObject>> = {
  [BY_NAMESPACE]: ns,
  [BY_COLLECTOR]: (p) => {
    const k = collectorServiceKey(p);
    return k ? [k] : [];
  },
  [BY_NODE_SELECTOR]: (p) => ((p.spec as { nodeSelector?: unknown } | undefined)?.nodeSelector ? ['yes'] : []),
};

export const podIndexers: Record<string, IndexFunc<PodInfo>> = {
  [BY_NAMESPACE]: ns,
  [BY_NODE]: (p) => (p.spec.nodeName ? [p.spec.nodeName] : []),
};

export const sliceIndexers: Record<string, IndexFunc<SliceInfo>> = {
  [BY_SERVICE]: (s) => {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    return svc ? [`${s.metadata.namespace}/${svc}`] : [];
  },
};

export const assignmentIndexers: Record<string, IndexFunc<SniffAssignment>> = {
  [BY_POLICY]: (a) => {
    const k = policyKeyForAssignment(a);
    return k ? [k] : [];
  },
};

export interface WorldStores {
  policies: ReadStore<PolicyObject>;
  pods: ReadStore<PodInfo>;
  nodes: ReadStore<NodeInfo>;
  namespaces: ReadStore<NamespaceInfo>;
  services: ReadStore<ServiceInfo>;
  slices: ReadStore<SliceInfo>;
  assignments: ReadStore<SniffAssignment>;
}

export class StoreWorld implements World {
  readonly stores: WorldStores;
  constructor(stores: WorldStores) {
    this.stores = stores;
  }
  policy(namespace: string, name: string): PolicyObject | undefined {
    return this.stores.policies.get(`${namespace}/${name}`);
  }
  namespace(name: string): NamespaceInfo | undefined {
    return this.stores.namespaces.get(name);
  }
  node(name: string): NodeInfo | undefined {
    return this.stores.nodes.get(name);
  }
  podsInNamespace(namespace: string): readonly PodInfo[] {
    return this.stores.pods.byIndex(BY_NAMESPACE, namespace);
  }
  service(namespace: string, name: string): ServiceInfo | undefined {
    return this.stores.services.get(`${namespace}/${name}`);
  }
  endpointSlices(namespace: string, service: string): readonly SliceInfo[] {
    return this.stores.slices.byIndex(BY_SERVICE, `${namespace}/${service}`);
  }
  assignmentsOf(namespace: string, policyName: string): readonly SniffAssignment[] {
    return this.stores.assignments.byIndex(BY_POLICY, `${namespace}/${policyName}`);
  }
}

export interface WorldObjects {
  policies?: KubeObject[];
  pods?: KubeObject[];
  nodes?: KubeObject[];
  namespaces?: KubeObject[];
  services?: KubeObject[];
  slices?: KubeObject[];
  assignments?: KubeObject[];
}

/** Writable stores with the production indexes (tests, benchmarks). */
export function newStores() {
  return {
    policies: new Store<PolicyObject>(policyIndexers),
    pods: new Store<PodInfo>(podIndexers),
    nodes: new Store<NodeInfo>(),
    namespaces: new Store<NamespaceInfo>(),
    services: new Store<ServiceInfo>(),
    slices: new Store<SliceInfo>(sliceIndexers),
    assignments: new Store<SniffAssignment>(assignmentIndexers),
  };
}

/** A World from raw objects, slimmed as the informers slim them (tests, benchmarks). */
export function worldFrom(objects: WorldObjects): { world: StoreWorld; stores: ReturnType<typeof newStores> } {
  const stores = newStores();
  const clone = <T>(o: T): T => structuredClone(o);
  for (const o of objects.policies ?? []) stores.policies.upsert(slimPolicy(clone(o)));
  for (const o of objects.pods ?? []) stores.pods.upsert(slimPod(o));
  for (const o of objects.nodes ?? []) stores.nodes.upsert(slimNode(o));
  for (const o of objects.namespaces ?? []) stores.namespaces.upsert(slimNamespace(o));
  for (const o of objects.services ?? []) stores.services.upsert(slimService(o));
  for (const o of objects.slices ?? []) stores.slices.upsert(slimSlice(o));
  for (const o of objects.assignments ?? []) stores.assignments.upsert(slimAssignment(clone(o)));
  return { world: new StoreWorld(stores), stores };
}
