/**
 * Assignments in tests: read them as the components do (one per policy and
 * node, expanded from the stored SniffNodeAssignments), and write stored
 * objects from per-(policy, node) specs as the controller folds them.
 */
import {
  API_VERSION,
  NODE_ASSIGNMENT_KIND,
  assignmentsOfNode,
  foldNodeAssignments,
  nodeAssignmentLabels,
  nodeAssignmentName,
  sniffNodeAssignments,
  type SniffAssignment,
  type SniffAssignmentSpec,
  type SniffNodeAssignment,
} from '../../src/api/index.ts';
import type { KubeClient } from '../../src/k8s/index.ts';

/** Every assignment in @namespace, expanded from its node objects. */
export async function listAssignments(client: KubeClient, namespace: string): Promise<SniffAssignment[]> {
  return (await sniffNodeAssignments(client).list({ namespace })).flatMap((o) => assignmentsOfNode(o));
}

/** The stored objects of one node holding @specs (all for @nodeName), as the controller writes them. */
export function nodeAssignmentObjects(namespace: string, nodeName: string, specs: readonly SniffAssignmentSpec[], since = '2026-12-06T00:00:00Z'): SniffNodeAssignment[] {
  return foldNodeAssignments(nodeName, specs.map((spec) => ({ spec, since }))).map((spec, part) => ({
    apiVersion: API_VERSION,
    kind: NODE_ASSIGNMENT_KIND,
    metadata: { name: nodeAssignmentName(nodeName, part), namespace, labels: nodeAssignmentLabels(nodeName) },
    spec,
  }));
}
