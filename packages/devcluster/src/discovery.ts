/**
 * API discovery, both forms kubectl 1.32 understands: the legacy documents
 * (/api, /apis, /apis/<group>, /apis/<group>/<version> → APIVersions,
 * APIGroupList, APIGroup, APIResourceList) and aggregated discovery
 * (apidiscovery.k8s.io/v2 and v2beta1 APIGroupDiscoveryList), which
 * kubectl asks for first on /api and /apis and recognises by the response
 * Content-Type. Both are built from the registry on request, so a CRD
 * shows up as soon as it is served.
 */
import type { Registry, ResourceDef } from './registry.ts';

/** kube-apiserver's group order; custom groups follow, by name. */
const groupPriority = [
  '',
  'apiregistration.k8s.io',
  'apps',
  'events.k8s.io',
  'authentication.k8s.io',
  'authorization.k8s.io',
  'autoscaling',
  'batch',
  'certificates.k8s.io',
  'networking.k8s.io',
  'policy',
  'rbac.authorization.k8s.io',
  'storage.k8s.io',
  'admissionregistration.k8s.io',
  'apiextensions.k8s.io',
  'scheduling.k8s.io',
  'coordination.k8s.io',
  'node.k8s.io',
  'discovery.k8s.io',
  'flowcontrol.apiserver.k8s.io',
];

export function orderedGroups(registry: Registry): string[] {
  return registry
    .groups()
    .filter((g) => g !== '')
    .sort((a, b) => {
      const pa = groupPriority.indexOf(a);
      const pb = groupPriority.indexOf(b);
      if (pa >= 0 && pb >= 0) return pa - pb;
      if (pa >= 0) return -1;
      if (pb >= 0) return 1;
      return a < b ? -1 : a > b ? 1 : 0;
    });
}

const subresourceVerbs = ['get', 'patch', 'update'];

function gv(group: string, version: string): string {
  return group ? `${group}/${version}` : version;
}

export function apiVersions(serverAddress: string): unknown {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupDoc(registry: Registry, group: string): Record<string, unknown> {
  const versions = registry.versions(group).map((v) => ({ groupVersion: gv(group, v), version: v }));
  return { name: group, versions, preferredVersion: versions[0] };
}

export function apiGroupList(registry: Registry): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: orderedGroups(registry).map((g) => groupDoc(registry, g)) };
}

export function apiGroup(registry: Registry, group: string): unknown | undefined {
  if (!registry.versions(group).length) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupDoc(registry, group) };
}

function sortedResources(defs: ResourceDef[]): ResourceDef[] {
  return [...defs].sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
}

export function apiResourceList(registry: Registry, group: string, version: string): unknown | undefined {
  if (!registry.hasGroupVersion(group, version)) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const d of sortedResources(registry.resources(group, version))) {
    const r: Record<string, unknown> = {
      name: d.resource,
      singularName: d.singular,
      namespaced: d.namespaced,
      kind: d.kind,
      verbs: d.verbs,
    };
    if (d.shortNames.length) r.shortNames = d.shortNames;
    if (d.categories.length) r.categories = d.categories;
    resources.push(r);
    if (d.status) resources.push({ name: `${d.resource}/status`, singularName: '', namespaced: d.namespaced, kind: d.kind, verbs: subresourceVerbs });
    if (d.scale) {
      resources.push({ name: `${d.resource}/scale`, singularName: '', namespaced: d.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: subresourceVerbs });
    }
    for (const x of d.extraSubresources ?? []) {
      resources.push({ name: `${d.resource}/${x.name}`, singularName: '', namespaced: d.namespaced, kind: x.kind, verbs: x.verbs });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv(group, version), resources };
}

function discoveryResource(d: ResourceDef): Record<string, unknown> {
  const r: Record<string, unknown> = {
    resource: d.resource,
    responseKind: { group: d.group, version: d.version, kind: d.kind },
    scope: d.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: d.singular,
    verbs: d.verbs,
  };
  if (d.shortNames.length) r.shortNames = d.shortNames;
  if (d.categories.length) r.categories = d.categories;
  const subs: Record<string, unknown>[] = [];
  if (d.status) subs.push({ subresource: 'status', responseKind: { group: d.group, version: d.version, kind: d.kind }, verbs: subresourceVerbs });
  if (d.scale) subs.push({ subresource: 'scale', responseKind: { group: 'autoscaling', version: 'v1', kind: 'Scale' }, verbs: subresourceVerbs });
  for (const x of d.extraSubresources ?? []) subs.push({ subresource: x.name, responseKind: { group: d.group, version: d.version, kind: x.kind }, verbs: x.verbs });
  if (subs.length) r.subresources = subs;
  return r;
}

function discoveryGroup(registry: Registry, group: string): Record<string, unknown> {
  const metadata: Record<string, unknown> = { creationTimestamp: null };
  if (group) metadata.name = group;
  return {
    metadata,
    versions: registry.versions(group).map((v) => ({
      version: v,
      resources: sortedResources(registry.resources(group, v)).map(discoveryResource),
      freshness: 'Current',
    })),
  };
}

export type AggregatedVersion = 'v2' | 'v2beta1';

export function aggregatedContentType(v: AggregatedVersion): string {
  return `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`;
}

/** `/api` (core only) or `/apis` (every other group) in aggregated form. */
export function aggregatedDiscovery(registry: Registry, legacy: boolean, v: AggregatedVersion): unknown {
  const groups = legacy ? [''] : orderedGroups(registry);
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${v}`,
    metadata: {},
    items: groups.map((g) => discoveryGroup(registry, g)),
  };
}
