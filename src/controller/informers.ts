/**
 * The controller's informers and their handlers. Handlers only map a change
 * to the policy keys (`namespace/name`) it may concern and enqueue them;
 * reconcile reads the caches. Each mapping is an index lookup:
 * - a policy → itself (status-only updates, which the controller writes
 *   itself, are ignored: the generation did not change);
 * - a pod → the policies of its namespace whose podSelector matched its old
 *   or its new labels (a pod relabelled out must leave the old selection);
 * - a node → the policies with pods on it, and those with a nodeSelector;
 * - a Service or EndpointSlice → the policies whose collector names it;
 * - a namespace → its policies (terminating: stop creating assignments);
 * - an assignment → its policy; one added (the echo of the controller's
 *   own write) or an update that only changed its status (an agent's
 *   report) is coalesced for a moment, so a thousand nodes reporting
 *   together cause one status write, not a thousand.
 * Slimming (objects.ts) makes irrelevant updates (heartbeats, restart
 * counts) equal to the cached object, and so silent.
 */
import { AssignmentView, PodtapResources, type SniffAssignment } from '../api/index.ts';
import { jsonEqual } from '../util/json.ts';
import { Informer, matchesSelector, Resources, type KubeClient, type LabelSelector } from '../k8s/index.ts';
import type { Logger } from '../util/log.ts';
import {
  SERVICE_NAME_LABEL,
  labelsEqual,
  namespaceEqual,
  nodeEqual,
  podEqual,
  serviceEqual,
  sliceEqual,
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
import {
  BY_COLLECTOR,
  BY_NAMESPACE,
  BY_NODE,
  BY_NODE_SELECTOR,
  StoreWorld,
  assignmentIndexers,
  policyKeyForAssignment,
  podIndexers,
  policyIndexers,
  sliceIndexers,
  type WorldStores,
} from './world.ts';

export interface Enqueuer {
  /** Reconcile soon. */
  add(key: string): void;
  /** Reconcile after ms (the earliest of several wins). */
  addAfter(key: string, ms: number): void;
}

export function policyKey(p: { metadata: { namespace?: string; name?: string } }): string {
  return `${p.metadata.namespace ?? ''}/${p.metadata.name ?? ''}`;
}

/** Whether a raw policy selects a pod (podNames, podSelector); a malformed spec counts as a match (reconcile reports it). */
function selects(p: PolicyObject, pod: PodInfo): boolean {
  const spec = p.spec as { podSelector?: unknown; podNames?: unknown } | undefined;
  if (Array.isArray(spec?.podNames) && !spec.podNames.includes(pod.metadata.name)) return false;
  const labels = pod.metadata.labels;
  const sel = spec?.podSelector;
  if (sel === undefined) return true;
  try {
    return typeof sel !== 'object' || sel === null || matchesSelector(sel as LabelSelector, labels);
  } catch {
    return true;
  }
}

/** Policies a pod change concerns: those of its namespace that matched its old or its new labels. */
export function policyKeysForPod(stores: Pick<WorldStores, 'policies'>, old: PodInfo | undefined, pod: PodInfo | undefined): string[] {
  const ns = (pod ?? old)?.metadata.namespace;
  if (!ns) return [];
  const keys: string[] = [];
  for (const p of stores.policies.byIndex(BY_NAMESPACE, ns)) {
    if ((pod && selects(p, pod)) || (old && selects(p, old))) keys.push(policyKey(p));
  }
  return keys;
}

/** Policies a node change concerns: those selecting pods on it, and those with a nodeSelector. */
export function policyKeysForNode(stores: Pick<WorldStores, 'policies' | 'pods'>, node: string): string[] {
  const keys = new Set<string>();
  for (const p of stores.policies.byIndex(BY_NODE_SELECTOR, 'yes')) keys.add(policyKey(p));
  const byNs = new Map<string, PolicyObject[]>();
  for (const pod of stores.pods.byIndex(BY_NODE, node)) {
    const ns = pod.metadata.namespace;
    let policies = byNs.get(ns);
    if (!policies) byNs.set(ns, (policies = stores.policies.byIndex(BY_NAMESPACE, ns)));
    for (const p of policies) if (selects(p, pod)) keys.add(policyKey(p));
  }
  return [...keys];
}

/** Policies whose collector is the Service `namespace/name`. */
export function policyKeysForService(stores: Pick<WorldStores, 'policies'>, namespace: string, name: string): string[] {
  return stores.policies.byIndex(BY_COLLECTOR, `${namespace}/${name}`).map(policyKey);
}

export interface ControllerInformers {
  policies: Informer<PolicyObject>;
  pods: Informer<PodInfo>;
  nodes: Informer<NodeInfo>;
  namespaces: Informer<NamespaceInfo>;
  services: Informer<ServiceInfo>;
  slices: Informer<SliceInfo>;
  assignments: AssignmentView;
  world: StoreWorld;
  start(): void;
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(): Promise<void>;
}

export interface InformerSetOptions {
  client: KubeClient;
  queue: Enqueuer;
  logger: Logger;
  /** The install namespace: the only one whose assignments are watched (and written). */
  assignmentNamespace: string;
  /** How long status-only assignment updates are coalesced (default 1 s). */
  statusCoalesceMs?: number | undefined;
  pageSize?: number | undefined;
}

export function createInformers(opts: InformerSetOptions): ControllerInformers {
  const { client, queue, logger } = opts;
  const coalesce = opts.statusCoalesceMs ?? 1000;
  const common = { client, logger, pageSize: opts.pageSize };
  const policies = new Informer<PolicyObject>({ ...common, resource: PodtapResources.sniffPolicies, transform: slimPolicy, indexers: policyIndexers });
  // Pods are the big list: smaller pages keep each page's JSON text (a large object V8 frees late) small.
  const pods = new Informer<PodInfo>({ ...common, pageSize: opts.pageSize ?? 100, resource: Resources.pods, transform: slimPod, equal: podEqual, indexers: podIndexers });
  const nodes = new Informer<NodeInfo>({ ...common, resource: Resources.nodes, transform: slimNode, equal: nodeEqual });
  const namespaces = new Informer<NamespaceInfo>({ ...common, resource: Resources.namespaces, transform: slimNamespace, equal: namespaceEqual });
  const services = new Informer<ServiceInfo>({ ...common, resource: Resources.services, transform: slimService, equal: serviceEqual });
  const slices = new Informer<SliceInfo>({ ...common, resource: Resources.endpointSlices, transform: slimSlice, equal: sliceEqual, indexers: sliceIndexers });
  // Only the install namespace's: an assignment anywhere else is nobody's work order.
  // (expanded from the stored SniffNodeAssignments: one per policy and node)
  const assignments = new AssignmentView({
    client,
    logger,
    namespace: opts.assignmentNamespace,
    transform: slimAssignment,
    indexers: assignmentIndexers,
    // a node's object changes for every policy on it: only this policy's entry matters
    equal: (a, b) => jsonEqual(a.spec, b.spec) && jsonEqual(a.status, b.status),
  });
  const stores: WorldStores = {
    policies: policies.store,
    pods: pods.store,
    nodes: nodes.store,
    namespaces: namespaces.store,
    services: services.store,
    slices: slices.store,
    assignments: assignments.store,
  };
  const addAll = (keys: Iterable<string>) => {
    for (const k of keys) queue.add(k);
  };

  policies.on({
    add: (p) => queue.add(policyKey(p)),
    update: (old, p) => {
      const spec = old.metadata.generation !== p.metadata.generation;
      const deleting = (old.metadata.deletionTimestamp === undefined) !== (p.metadata.deletionTimestamp === undefined);
      if (spec || deleting || !labelsEqual(old.metadata.labels, p.metadata.labels)) queue.add(policyKey(p));
    },
    delete: (p) => queue.add(policyKey(p)),
  });
  pods.on({
    add: (p) => addAll(policyKeysForPod(stores, undefined, p)),
    update: (old, p) => addAll(policyKeysForPod(stores, old, p)),
    delete: (p) => addAll(policyKeysForPod(stores, p, undefined)),
  });
  const onNode = (n: NodeInfo) => addAll(policyKeysForNode(stores, n.metadata.name));
  nodes.on({ add: onNode, update: (_old, n) => onNode(n), delete: onNode });
  const onNamespace = (n: NamespaceInfo) => addAll(stores.policies.byIndex(BY_NAMESPACE, n.metadata.name).map(policyKey));
  namespaces.on({ update: (_old, n) => onNamespace(n), delete: onNamespace });
  const onService = (s: ServiceInfo) => addAll(policyKeysForService(stores, s.metadata.namespace, s.metadata.name));
  services.on({ add: onService, update: (_old, s) => onService(s), delete: onService });
  const onSlice = (s: SliceInfo) => {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (svc) addAll(policyKeysForService(stores, s.metadata.namespace, svc));
  };
  slices.on({
    add: onSlice,
    update: (old, s) => {
      onSlice(s);
      if (old.metadata.labels?.[SERVICE_NAME_LABEL] !== s.metadata.labels?.[SERVICE_NAME_LABEL]) onSlice(old);
    },
    delete: onSlice,
  });
  const onAssignment = (a: SniffAssignment) => {
    const k = policyKeyForAssignment(a);
    if (k) queue.add(k);
  };
  assignments.on({
    // Mostly the echo of the node writer's own write: coalesced like a report,
    // or at 1,000 nodes the echoes keep the policy queue busy and hold back
    // the node writes still to come (nodes.ts).
    add: (a) => {
      const k = policyKeyForAssignment(a);
      if (k) queue.addAfter(k, coalesce);
    },
    update: (old, a) => {
      const k = policyKeyForAssignment(a);
      const ko = policyKeyForAssignment(old);
      if (ko && ko !== k) queue.add(ko);
      if (!k) return;
      // (the generation is the node object's: another policy's entry moves it too)
      const statusOnly = jsonEqual(old.spec, a.spec) && labelsEqual(old.metadata.labels, a.metadata.labels);
      if (statusOnly && coalesce > 0) queue.addAfter(k, coalesce);
      else queue.add(k);
    },
    delete: onAssignment,
  });

  const all = [policies, pods, nodes, namespaces, services, slices, assignments];
  return {
    policies,
    pods,
    nodes,
    namespaces,
    services,
    slices,
    assignments,
    world: new StoreWorld(stores),
    start: () => {
      for (const i of all) i.start();
    },
    stop: async () => {
      await Promise.all(all.map((i) => i.stop()));
    },
    hasSynced: () => all.every((i) => i.hasSynced()),
    waitForSync: async () => {
      await Promise.all(all.map((i) => i.waitForSync()));
    },
  };
}
