/**
 * The slim shapes the controller caches of the objects it watches, and the
 * transforms that make them. A real Pod is several KB of JSON (containers,
 * volumes, managedFields, conditions); the controller needs eight fields of
 * it. Slimming on arrival is what keeps 30,000 pods in a few tens of MB, and
 * comparing slim objects tells a relevant change (labels, node, IPs) from the
 * many that are not (a container restart count, a node heartbeat).
 */
import type { SniffAssignment } from '../api/index.ts';
import { stripManagedFields, type KubeObject } from '../k8s/index.ts';
import { jsonEqual } from '../util/json.ts';

type Labels = Record<string, string>;

export interface PodInfo extends KubeObject {
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; labels?: Labels; deletionTimestamp?: string };
  spec: { nodeName?: string; hostNetwork?: boolean };
  status: { phase?: string; ips: string[] };
}

export interface NodeInfo extends KubeObject {
  metadata: { name: string; uid?: string; resourceVersion?: string; labels?: Labels; deletionTimestamp?: string };
}

export interface NamespaceInfo extends KubeObject {
  metadata: { name: string; uid?: string; resourceVersion?: string; deletionTimestamp?: string };
  status: { phase?: string };
}

export interface ServiceInfo extends KubeObject {
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string };
}

export interface SliceEndpoint {
  addresses: string[];
  /** conditions.ready; absent counts as ready (discovery/v1 says consumers should). */
  ready: boolean;
  /** targetRef of kind Pod: `namespace/name`. */
  pod?: string;
}

export interface SlicePort {
  name?: string;
  port?: number;
  protocol: string;
}

export interface SliceInfo extends KubeObject {
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Labels };
  addressType?: string;
  endpoints: SliceEndpoint[];
  ports: SlicePort[];
}

/** A policy as stored: the server's object without managedFields; validated at reconcile time. */
export type PolicyObject = KubeObject & { spec?: unknown; status?: Record<string, unknown> };

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

// Raw objects from the API, as far as the transforms read them.
type Raw = KubeObject & Record<string, unknown>;
type RawRecord = Record<string, unknown>;
const rec = (v: unknown): RawRecord => (typeof v === 'object' && v !== null ? (v as RawRecord) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function meta(raw: KubeObject, keep: readonly string[]): RawRecord {
  const m = raw.metadata as RawRecord;
  const out: RawRecord = {};
  for (const k of keep) if (m[k] !== undefined) out[k] = m[k];
  return out;
}

/**
 * One shared copy of equal JSON values (cached objects are never modified).
 * Every assignment of a policy carries the same capture config and policy
 * reference: with 26,000 assignments cached, sharing them saves tens of MB.
 * Values are held weakly, so a config no assignment uses any more goes.
 */
class Interner {
  private readonly values = new Map<string, WeakRef<object>>();
  private readonly registry = new FinalizationRegistry<string>((key) => {
    if (this.values.get(key)?.deref() === undefined) this.values.delete(key);
  });

  intern<T extends object>(value: T): T {
    const key = JSON.stringify(value);
    const hit = this.values.get(key)?.deref();
    if (hit) return hit as T;
    this.values.set(key, new WeakRef(value));
    this.registry.register(value, key);
    return value;
  }
}

const shared = new Interner();

/**
 * One copy of the strings many cached objects repeat (namespaces, node
 * names, phases): JSON.parse makes a new string for every occurrence.
 * Bounded: past the limit it starts over (only sharing is lost).
 */
const strings = new Map<string, string>();
export function internString(v: string): string;
export function internString(v: string | undefined): string | undefined;
export function internString(v: string | undefined): string | undefined {
  if (v === undefined) return v;
  const hit = strings.get(v);
  if (hit !== undefined) return hit;
  if (strings.size >= 50_000) strings.clear();
  strings.set(v, v);
  return v;
}

export function slimPod(raw: KubeObject): PodInfo {
  const r = raw as Raw;
  const spec = rec(r.spec);
  const status = rec(r.status);
  const podIPs = Array.isArray(status.podIPs) ? status.podIPs.map((p) => str(rec(p).ip)).filter((ip): ip is string => ip !== undefined) : [];
  const ip = str(status.podIP);
  const pod: PodInfo = {
    metadata: meta(raw, ['name', 'namespace', 'uid', 'resourceVersion', 'labels', 'deletionTimestamp']) as PodInfo['metadata'],
    spec: {},
    status: { ips: podIPs.length > 0 ? podIPs : ip ? [ip] : [] },
  };
  pod.metadata.namespace = internString(pod.metadata.namespace);
  // Pods of one ReplicaSet or StatefulSet carry the same labels: one object for all.
  if (pod.metadata.labels) pod.metadata.labels = shared.intern(pod.metadata.labels);
  const nodeName = str(spec.nodeName);
  if (nodeName) pod.spec.nodeName = internString(nodeName);
  if (spec.hostNetwork === true) pod.spec.hostNetwork = true;
  const phase = str(status.phase);
  if (phase) pod.status.phase = internString(phase);
  return pod;
}

export function slimNode(raw: KubeObject): NodeInfo {
  return { metadata: meta(raw, ['name', 'uid', 'resourceVersion', 'labels', 'deletionTimestamp']) as NodeInfo['metadata'] };
}

export function slimNamespace(raw: KubeObject): NamespaceInfo {
  const phase = str(rec((raw as Raw).status).phase);
  return { metadata: meta(raw, ['name', 'uid', 'resourceVersion', 'deletionTimestamp']) as NamespaceInfo['metadata'], status: phase ? { phase } : {} };
}

export function slimService(raw: KubeObject): ServiceInfo {
  return { metadata: meta(raw, ['name', 'namespace', 'uid', 'resourceVersion']) as ServiceInfo['metadata'] };
}

export function slimSlice(raw: KubeObject): SliceInfo {
  const r = raw as Raw;
  const endpoints: SliceEndpoint[] = (Array.isArray(r.endpoints) ? r.endpoints : []).map((e) => {
    const ep = rec(e);
    const ref = rec(ep.targetRef);
    const out: SliceEndpoint = {
      addresses: Array.isArray(ep.addresses) ? ep.addresses.filter((a): a is string => typeof a === 'string') : [],
      ready: rec(ep.conditions).ready !== false,
    };
    if (ref.kind === 'Pod' && str(ref.name)) out.pod = `${str(ref.namespace) ?? raw.metadata.namespace}/${str(ref.name)}`;
    return out;
  });
  const ports: SlicePort[] = (Array.isArray(r.ports) ? r.ports : []).map((p) => {
    const pr = rec(p);
    const out: SlicePort = { protocol: str(pr.protocol) ?? 'TCP' };
    if (str(pr.name)) out.name = str(pr.name)!;
    if (typeof pr.port === 'number') out.port = pr.port;
    return out;
  });
  const slice: SliceInfo = { metadata: meta(raw, ['name', 'namespace', 'resourceVersion', 'labels']) as SliceInfo['metadata'], endpoints, ports };
  const addressType = str(r.addressType);
  if (addressType) slice.addressType = addressType;
  return slice;
}


/**
 * Assignments are kept whole but for what only the agent reads (the list of
 * attached interfaces becomes its length, status.attachedInterfaces), with
 * the parts every assignment of a policy repeats shared.
 */
export function slimAssignment(raw: KubeObject): SniffAssignment {
  const a = stripManagedFields(raw) as unknown as SniffAssignment;
  const st = a.status;
  if (st?.interfaces) {
    st.attachedInterfaces ??= st.interfaces.length;
    delete st.interfaces;
  }
  a.metadata.namespace = internString(a.metadata.namespace);
  const labels = a.metadata.labels;
  if (labels) for (const k of Object.keys(labels)) labels[k] = internString(labels[k]!);
  if (a.spec?.nodeName) a.spec.nodeName = internString(a.spec.nodeName);
  if (a.spec?.config) a.spec.config = shared.intern(a.spec.config);
  if (a.spec?.policy) a.spec.policy = shared.intern(a.spec.policy);
  return a;
}

export function slimPolicy(raw: KubeObject): PolicyObject {
  return stripManagedFields(raw) as PolicyObject;
}

/** No labels and an empty map are the same labels. */
export function labelsEqual(a: Labels | undefined, b: Labels | undefined): boolean {
  return jsonEqual(a ?? {}, b ?? {});
}

function arraysEqual<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Same as far as pod selection is concerned. */
export function podEqual(a: PodInfo, b: PodInfo): boolean {
  return (
    a.metadata.uid === b.metadata.uid &&
    a.spec.nodeName === b.spec.nodeName &&
    a.spec.hostNetwork === b.spec.hostNetwork &&
    a.status.phase === b.status.phase &&
    (a.metadata.deletionTimestamp === undefined) === (b.metadata.deletionTimestamp === undefined) &&
    arraysEqual(a.status.ips, b.status.ips) &&
    labelsEqual(a.metadata.labels, b.metadata.labels)
  );
}

/** Nodes matter by their labels and existence only (not their 10-second heartbeats). */
export function nodeEqual(a: NodeInfo, b: NodeInfo): boolean {
  return a.metadata.uid === b.metadata.uid && labelsEqual(a.metadata.labels, b.metadata.labels);
}

export function namespaceEqual(a: NamespaceInfo, b: NamespaceInfo): boolean {
  return a.status.phase === b.status.phase && (a.metadata.deletionTimestamp === undefined) === (b.metadata.deletionTimestamp === undefined);
}

/** A Service matters by its existence only; its endpoints come from EndpointSlices. */
export function serviceEqual(a: ServiceInfo, b: ServiceInfo): boolean {
  return a.metadata.uid === b.metadata.uid;
}

export function sliceEqual(a: SliceInfo, b: SliceInfo): boolean {
  return (
    labelsEqual(a.metadata.labels, b.metadata.labels) &&
    a.endpoints.length === b.endpoints.length &&
    a.endpoints.every((e, i) => {
      const f = b.endpoints[i]!;
      return e.ready === f.ready && e.pod === f.pod && arraysEqual(e.addresses, f.addresses);
    }) &&
    a.ports.length === b.ports.length &&
    a.ports.every((p, i) => {
      const q = b.ports[i]!;
      return p.name === q.name && p.port === q.port && p.protocol === q.protocol;
    })
  );
}
