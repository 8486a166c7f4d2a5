/** The podtap.io kinds on the API server, and a typed client for each. */
import { ResourceClient, type KubeClient, type ResourceRef } from '../k8s/index.ts';
import type { SniffNodeAssignment } from './assignment.ts';
import { GROUP, VERSION, type SniffPolicy } from './sniffpolicy.ts';

export const PodtapResources = {
  sniffPolicies: { group: GROUP, version: VERSION, plural: 'sniffpolicies', kind: 'SniffPolicy', namespaced: true },
  sniffNodeAssignments: { group: GROUP, version: VERSION, plural: 'sniffnodeassignments', kind: 'SniffNodeAssignment', namespaced: true },
} as const satisfies Record<string, ResourceRef>;

export function sniffPolicies(client: KubeClient): ResourceClient<SniffPolicy> {
  return new ResourceClient<SniffPolicy>(client, PodtapResources.sniffPolicies);
}

export function sniffNodeAssignments(client: KubeClient): ResourceClient<SniffNodeAssignment> {
  return new ResourceClient<SniffNodeAssignment>(client, PodtapResources.sniffNodeAssignments);
}
