/**
 * The EndpointSlice and Endpoints controllers, reduced to what API clients
 * observe: for every Service with a selector, the pods of its namespace
 * that match it and have an IP become endpoints (ready from the pod's Ready
 * condition, terminating from its deletionTimestamp), grouped by address
 * family and resolved target ports, at most 100 per slice, in slices labelled
 * `kubernetes.io/service-name` and owned by the Service (so the garbage
 * collector removes them with it); the legacy Endpoints object mirrors them.
 * Services without a selector are left to whoever manages their endpoints.
 */
import type { Logger } from 'pino';
import { defaultWriteOptions, type Api } from './api.ts';
import { deepEqual, isPlainObject, type KubeObject } from './objects.ts';
import type { ResourceDef } from './registry.ts';
import type { ChangeEvent } from './store.ts';
import { matchLabels, type LabelSelector } from './selectors.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'endpointslice-controller.k8s.io';
const MAX_ENDPOINTS_PER_SLICE = 100;

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

interface SlicePort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

interface Endpoint {
  addresses: string[];
  conditions: { ready: boolean; serving: boolean; terminating: boolean };
  nodeName?: string;
  targetRef: { kind: 'Pod'; namespace: string; name: string; uid: string };
}

interface Group {
  addressType: 'IPv4' | 'IPv6';
  ports: SlicePort[];
  endpoints: Endpoint[];
}

function selectorOf(svc: KubeObject): LabelSelector | undefined {
  const sel = (svc.spec as { selector?: Record<string, string> } | undefined)?.selector;
  if (!isPlainObject(sel) || Object.keys(sel).length === 0) return undefined;
  return Object.entries(sel).map(([key, value]) => ({ key, op: 'Equals' as const, values: [String(value)] }));
}

function podIps(pod: KubeObject): string[] {
  const st = (pod.status ?? {}) as { podIP?: string; podIPs?: { ip: string }[] };
  const ips = Array.isArray(st.podIPs) ? st.podIPs.map((p) => p.ip).filter(Boolean) : [];
  if (ips.length === 0 && st.podIP) ips.push(st.podIP);
  return ips;
}

function podReady(pod: KubeObject): boolean {
  const conds = (pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

function containerPort(pod: KubeObject, name: string): number | undefined {
  const containers = ((pod.spec as { containers?: { ports?: { name?: string; containerPort: number }[] }[] } | undefined)?.containers ?? []);
  for (const c of containers) for (const p of c.ports ?? []) if (p.name === name) return p.containerPort;
  return undefined;
}

export class EndpointsController {
  private readonly api: Api;
  private readonly log: Logger;
  private readonly dirty = new Set<string>();
  private scheduled = false;
  private closed = false;

  constructor(api: Api, log: Logger) {
    this.api = api;
    this.log = log.child({ controller: 'endpointslice' });
    api.store.onChange((storage, e) => this.observe(storage, e));
  }

  close(): void {
    this.closed = true;
  }

  private def(group: string, resource: string): ResourceDef {
    return this.api.registry.get(group, 'v1', resource)!;
  }

  private observe(storage: string, e: ChangeEvent): void {
    if (storage === '/services') {
      this.enqueue(e.key);
    } else if (storage === '/pods') {
      const ns = e.object.metadata.namespace ?? '';
      for (const svc of this.api.resourceStore(this.def('', 'services')).values(ns)) {
        const sel = selectorOf(svc);
        if (!sel) continue;
        if (matchLabels(sel, e.object.metadata.labels) || (e.prev && matchLabels(sel, e.prev.metadata.labels))) {
          this.enqueue(`${ns}/${svc.metadata.name}`);
        }
      }
    }
  }

  private enqueue(key: string): void {
    if (this.closed) return;
    this.dirty.add(key);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    const keys = [...this.dirty];
    this.dirty.clear();
    for (const key of keys) {
      if (this.closed) return;
      try {
        this.sync(key);
      } catch (err) {
        this.log.warn({ err, service: key }, 'endpoints sync failed');
      }
    }
  }

  private sync(key: string): void {
    const [ns, name] = key.split('/') as [string, string];
    const svcDef = this.def('', 'services');
    const svc = this.api.resourceStore(svcDef).get(ns, name);
    const epDef = this.def('', 'endpoints');
    const existingEp = this.api.resourceStore(epDef).get(ns, name);
    if (!svc || !selectorOf(svc)) {
      // Slices go with their owner (garbage collector); the Endpoints object is deleted here.
      if (existingEp && !svc) this.api.deleteObject(epDef, existingEp, 'Background');
      return;
    }
    if (svc.metadata.deletionTimestamp) return;
    const groups = this.desired(svc);
    this.syncSlices(svc, groups);
    this.syncEndpoints(svc, groups, existingEp);
  }

  private desired(svc: KubeObject): Group[] {
    const sel = selectorOf(svc)!;
    const spec = svc.spec as { ports?: ServicePort[]; publishNotReadyAddresses?: boolean; ipFamilies?: string[] };
    const families = new Set(spec.ipFamilies ?? ['IPv4']);
    const groups = new Map<string, Group>();
    const pods = [...this.api.resourceStore(this.def('', 'pods')).values(svc.metadata.namespace)]
      .filter((p) => matchLabels(sel, p.metadata.labels))
      .sort((a, b) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1));
    for (const pod of pods) {
      const phase = (pod.status as { phase?: string } | undefined)?.phase;
      if (phase === 'Succeeded' || phase === 'Failed') continue;
      const ports: SlicePort[] = [];
      for (const p of spec.ports ?? []) {
        const target = p.targetPort ?? p.port;
        const port = typeof target === 'number' ? target : /^\d+$/.test(target) ? Number(target) : containerPort(pod, target);
        if (port === undefined) continue;
        const sp: SlicePort = { name: p.name ?? '', port, protocol: p.protocol ?? 'TCP' };
        if (p.appProtocol) sp.appProtocol = p.appProtocol;
        ports.push(sp);
      }
      const ready = podReady(pod) && !pod.metadata.deletionTimestamp;
      for (const ip of podIps(pod)) {
        const addressType = ip.includes(':') ? 'IPv6' : 'IPv4';
        if (!families.has(addressType)) continue;
        const gk = `${addressType}|${JSON.stringify(ports)}`;
        let g = groups.get(gk);
        if (!g) {
          g = { addressType, ports, endpoints: [] };
          groups.set(gk, g);
        }
        const ep: Endpoint = {
          addresses: [ip],
          conditions: { ready: ready || spec.publishNotReadyAddresses === true, serving: podReady(pod), terminating: pod.metadata.deletionTimestamp !== undefined },
          targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid ?? '' },
        };
        const node = (pod.spec as { nodeName?: string } | undefined)?.nodeName;
        if (node) ep.nodeName = node;
        g.endpoints.push(ep);
      }
    }
    return [...groups.values()];
  }

  private syncSlices(svc: KubeObject, groups: Group[]): void {
    const ns = svc.metadata.namespace ?? '';
    const sliceDef = this.def('discovery.k8s.io', 'endpointslices');
    const store = this.api.resourceStore(sliceDef);
    const existing = [...store.values(ns)]
      .filter((s) => s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name && s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY)
      .sort((a, b) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1));
    const wanted: { addressType: string; ports: SlicePort[]; endpoints: Endpoint[] }[] = [];
    for (const g of groups) {
      for (let i = 0; i < g.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) {
        wanted.push({ addressType: g.addressType, ports: g.ports, endpoints: g.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
      }
    }
    // A service with no endpoints still gets one (empty) slice, as the real controller keeps.
    if (wanted.length === 0) wanted.push({ addressType: 'IPv4', ports: [], endpoints: [] });
    const unused = [...existing];
    for (const w of wanted) {
      const idx = unused.findIndex((s) => s.addressType === w.addressType);
      const labels = { ...(svc.metadata.labels ?? {}), [SERVICE_NAME_LABEL]: svc.metadata.name ?? '', [MANAGED_BY_LABEL]: MANAGED_BY };
      if (idx >= 0) {
        const s = unused.splice(idx, 1)[0]!;
        if (!deepEqual(s.endpoints ?? [], w.endpoints) || !deepEqual(s.ports ?? [], w.ports) || !deepEqual(s.metadata.labels, labels)) {
          this.api.internalUpdate(sliceDef, s, (o) => {
            o.endpoints = w.endpoints;
            o.ports = w.ports;
            o.metadata.labels = labels;
          });
        }
        continue;
      }
      this.api.create(
        sliceDef,
        ns,
        {
          metadata: {
            generateName: `${svc.metadata.name}-`,
            labels,
            ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }],
          },
          addressType: w.addressType,
          endpoints: w.endpoints,
          ports: w.ports,
        },
        { ...defaultWriteOptions(), fieldManager: 'endpointslice-controller' },
      );
    }
    for (const s of unused) this.api.deleteObject(sliceDef, s, 'Background');
  }

  private syncEndpoints(svc: KubeObject, groups: Group[], existing: KubeObject | undefined): void {
    const epDef = this.def('', 'endpoints');
    const subsets = groups
      .filter((g) => g.addressType === 'IPv4' || groups.every((x) => x.addressType === 'IPv6'))
      .map((g) => {
        const addr = (e: Endpoint) => {
          const a: Record<string, unknown> = { ip: e.addresses[0], targetRef: e.targetRef };
          if (e.nodeName) a.nodeName = e.nodeName;
          return a;
        };
        const subset: Record<string, unknown> = {};
        const ready = g.endpoints.filter((e) => e.conditions.ready).map(addr);
        const notReady = g.endpoints.filter((e) => !e.conditions.ready).map(addr);
        if (ready.length) subset.addresses = ready;
        if (notReady.length) subset.notReadyAddresses = notReady;
        subset.ports = g.ports.map((p) => (p.name ? { name: p.name, port: p.port, protocol: p.protocol } : { port: p.port, protocol: p.protocol }));
        return subset;
      })
      .filter((s) => s.addresses || s.notReadyAddresses);
    const labels = { ...(svc.metadata.labels ?? {}), 'endpointslice.kubernetes.io/skip-mirror': 'true' };
    if (existing) {
      if (deepEqual(existing.subsets ?? [], subsets) && deepEqual(existing.metadata.labels, labels)) return;
      this.api.internalUpdate(epDef, existing, (o) => {
        if (subsets.length) o.subsets = subsets;
        else delete o.subsets;
        o.metadata.labels = labels;
      });
      return;
    }
    const body: Record<string, unknown> = { metadata: { name: svc.metadata.name, labels } };
    if (subsets.length) body.subsets = subsets;
    this.api.create(epDef, svc.metadata.namespace, body, { ...defaultWriteOptions(), fieldManager: 'endpoint-controller' });
  }
}
