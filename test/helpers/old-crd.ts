/**
 * podtap 0.1's CRD of per-(policy, node) SniffAssignments, which `podtap crds
 * prune` deletes on upgrade: its names as 0.1 had them, its schema left open
 * (what the tests of the upgrade need is an object of it to see go).
 */
import { OBSOLETE_CRDS } from '../../src/cli/crds.ts';
import type { KubeObject, ResourceRef } from '../../src/k8s/index.ts';

export const OLD_ASSIGNMENTS: ResourceRef = { group: 'podtap.io', version: 'v1alpha1', plural: 'sniffassignments', kind: 'SniffAssignment', namespaced: true };

export const OLD_ASSIGNMENTS_CRD: KubeObject & { spec: unknown } = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: OBSOLETE_CRDS[0] },
  spec: {
    group: OLD_ASSIGNMENTS.group,
    scope: 'Namespaced',
    names: { plural: OLD_ASSIGNMENTS.plural, singular: 'sniffassignment', kind: OLD_ASSIGNMENTS.kind, listKind: 'SniffAssignmentList', shortNames: ['sna'] },
    versions: [{ name: OLD_ASSIGNMENTS.version, served: true, storage: true, subresources: { status: {} }, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};
