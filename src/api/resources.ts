/** The podtap.io kinds on the API server, and a typed client for each. */
import { ResourceClient, type KubeClient, type ResourceRef } from '../k8s/index.ts';
import type { SniffAssignment } from './assignment.ts';
import { GROUP, VERSION, type SniffPolicy } from './sniffpolicy.ts';

export const PodtapResources = {
  sniffPolicies: { group: GROUP, version: VERSION, plural: 'sniffpolicies', kind: 'SniffPolicy', namespaced: true },
  sniffAssignments: { group: GROUP, version: VERSION, plural: 'sniffassignments', kind: 'SniffAssignment', namespaced: true },
} as const satisfies Record<string, ResourceRef>;

export function sniffPolicies(client: KubeClient): ResourceClient<SniffPolicy> {
  return new ResourceClient<SniffPolicy>(client, PodtapResources.sniffPolicies);
}

export function sniffAssignments(client: KubeClient): ResourceClient<SniffAssignment> {
  return new ResourceClient<SniffAssignment>(client, PodtapResources.sniffAssignments);
}
