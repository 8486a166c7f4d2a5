/** Builders of raw Kubernetes objects for the controller's tables. */
import type { KubeObject } from '../../../src/k8s/index.ts';

export const NS = 'shop';
/** Where the controller writes assignments (podtap's own namespace). */
export const INSTALL_NS = 'podtap-system';
/** What the tests' policies may name: their namespace's Service "collector" and the test networks. */
export const DESTINATIONS = { services: ['shop/collector'], cidrs: ['198.18.0.0/15', '2001:db8::/32'] };
export const POLICY_UID = 'uid-policy-1';

let uidSeq = 0;

export interface PodOpts {
  ns?: string;
  labels?: Record<string, string>;
  node?: string | undefined;
  phase?: string;
  ips?: string[];
  hostNetwork?: boolean;
  terminating?: boolean;
  uid?: string;
}

export function pod(name: string, o: PodOpts = {}): KubeObject {
  const ips = o.ips ?? [`198.18.0.${10 + (name.length % 200)}`];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: o.ns ?? NS,
      uid: o.uid ?? `uid-${name}`,
      resourceVersion: String(++uidSeq),
      labels: o.labels ?? { app: 'web' },
      ...(o.terminating ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}),
      managedFields: [{ manager: 'kubelet' }],
    },
    spec: { ...(o.node === undefined && 'node' in o ? {} : { nodeName: o.node ?? 'node-a' }), ...(o.hostNetwork ? { hostNetwork: true } : {}), containers: [{ name: 'c', image: 'x' }] },
    status: { phase: o.phase ?? 'Running', ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}) },
  } as KubeObject;
}

export function node(name: string, labels: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, uid: `uid-${name}`, labels: { 'kubernetes.io/hostname': name, ...labels } } } as KubeObject;
}

export function namespace(name: string, terminating = false): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, uid: `uid-ns-${name}`, ...(terminating ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}) },
    status: { phase: terminating ? 'Terminating' : 'Active' },
  } as KubeObject;
}

export function policy(spec: Record<string, unknown>, o: { name?: string; ns?: string; generation?: number; status?: Record<string, unknown>; uid?: string; deleting?: boolean } = {}): KubeObject {
  return {
    apiVersion: 'podtap.io/v1alpha1',
    kind: 'SniffPolicy',
    metadata: {
      name: o.name ?? 'web-debug',
      namespace: o.ns ?? NS,
      uid: o.uid ?? POLICY_UID,
      generation: o.generation ?? 1,
      resourceVersion: '100',
      ...(o.deleting ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}),
    },
    spec: { collector: { address: '198.18.9.9' }, podSelector: { matchLabels: { app: 'web' } }, ...spec },
    ...(o.status ? { status: o.status } : {}),
  } as KubeObject;
}

export function service(name: string, ns = NS): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, uid: `uid-svc-${name}` }, spec: { clusterIP: '10.96.0.10' } } as KubeObject;
}

export interface EndpointOpts {
  ip: string;
  ready?: boolean;
  pod?: string;
}

export function slice(name: string, svc: string, endpoints: EndpointOpts[], ports: { name?: string; port: number; protocol?: string }[] = [], ns = NS): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: endpoints.some((e) => e.ip.includes(':')) ? 'IPv6' : 'IPv4',
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: e.ready === undefined ? {} : { ready: e.ready },
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace: ns } } : {}),
    })),
    ports,
  } as KubeObject;
}
