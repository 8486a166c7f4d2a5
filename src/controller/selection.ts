/**
 * Which pods a policy captures, and on which nodes. Pure: reads the pods of
 * the policy's namespace and the nodes, returns the selection and, for each
 * pod the podSelector matched but that is left out, why (so the status can
 * say it). A pod is captured when it is
 * - matched by spec.podSelector (pods of the policy's namespace only) and,
 *   when the policy names pods (spec.podNames), one of those,
 * - not terminating, Running, scheduled and with an IP,
 * - not on the host network (its traffic crosses no veth of its own: there
 *   is nothing to attach to without capturing the whole node),
 * - not the collector (by IP or as an endpoint of the collector Service:
 *   podtap must never mirror its own tunnel),
 * - on a node that exists and matches spec.nodeSelector.
 */
import type { AssignedPod, LabelSelector } from '../api/index.ts';
import { matchesSelector } from '../k8s/index.ts';
import type { CollectorExclusions } from './collector.ts';
import type { NodeInfo, PodInfo } from './objects.ts';
import { byCodePoint } from '../util/compare.ts';

export const SkipReasons = ['terminating', 'notRunning', 'unscheduled', 'hostNetwork', 'noIP', 'collector', 'nodeNotFound', 'nodeNotMatched'] as const;
export type SkipReason = (typeof SkipReasons)[number];

/** What each skip reason means, for status messages. */
export const SkipText: Record<SkipReason, string> = {
  terminating: 'terminating',
  notRunning: 'not running',
  unscheduled: 'not scheduled',
  hostNetwork: 'on the host network (no veth of their own to tap)',
  noIP: 'without an IP yet',
  collector: 'the collector itself',
  nodeNotFound: 'on a node that no longer exists',
  nodeNotMatched: 'on nodes not matching spec.nodeSelector',
};

/** At most this many pod names are kept per skip reason (for messages). */
const MAX_NAMES = 5;

export interface Selection {
  /** node -> its selected pods, sorted by name. */
  byNode: Map<string, AssignedPod[]>;
  /** Pods captured. */
  selected: number;
  /** Pods the podSelector (and podNames) matched (captured or not). */
  matched: number;
  /** What selected them, for messages: "spec.podSelector" or "spec.podSelector and spec.podNames". */
  criteria: string;
  /** Per reason: how many matched pods were left out, and the first few names. */
  skipped: Partial<Record<SkipReason, { count: number; names: string[] }>>;
}

export interface SelectionInput {
  podSelector: LabelSelector;
  /** only pods of these names (spec.podNames) */
  podNames?: readonly string[] | undefined;
  nodeSelector?: LabelSelector | undefined;
  pods: Iterable<PodInfo>;
  node(name: string): NodeInfo | undefined;
  exclude: CollectorExclusions;
}

function skipReason(pod: PodInfo, exclude: CollectorExclusions): SkipReason | undefined {
  if (pod.metadata.deletionTimestamp) return 'terminating';
  if (!pod.spec.nodeName) return 'unscheduled';
  if (pod.status.phase !== 'Running') return 'notRunning';
  if (pod.spec.hostNetwork) return 'hostNetwork';
  if (pod.status.ips.length === 0) return 'noIP';
  if (exclude.pods.has(`${pod.metadata.namespace}/${pod.metadata.name}`)) return 'collector';
  for (const ip of pod.status.ips) if (exclude.ips.has(ip)) return 'collector';
  return undefined;
}

export function selectPods(input: SelectionInput): Selection {
  const byNode = new Map<string, AssignedPod[]>();
  const skipped: Selection['skipped'] = {};
  const nodeOk = new Map<string, SkipReason | undefined>(); // per node: why its pods are left out
  let matched = 0;
  let selected = 0;
  const skip = (reason: SkipReason, name: string) => {
    const s = (skipped[reason] ??= { count: 0, names: [] });
    s.count++;
    // Keep the smallest names, so the message does not depend on cache order.
    if (s.names.length < MAX_NAMES) s.names.push(name);
    else if (name < s.names[MAX_NAMES - 1]!) s.names[MAX_NAMES - 1] = name;
    else return;
    s.names.sort();
  };
  const names = input.podNames ? new Set(input.podNames) : undefined;
  for (const pod of input.pods) {
    if (names && !names.has(pod.metadata.name)) continue;
    if (!matchesSelector(input.podSelector, pod.metadata.labels)) continue;
    matched++;
    const why = skipReason(pod, input.exclude);
    if (why) {
      skip(why, pod.metadata.name);
      continue;
    }
    const nodeName = pod.spec.nodeName!;
    let nodeWhy: SkipReason | undefined;
    if (nodeOk.has(nodeName)) nodeWhy = nodeOk.get(nodeName);
    else {
      const node = input.node(nodeName);
      nodeWhy = !node ? 'nodeNotFound' : input.nodeSelector && !matchesSelector(input.nodeSelector, node.metadata.labels) ? 'nodeNotMatched' : undefined;
      nodeOk.set(nodeName, nodeWhy);
    }
    if (nodeWhy) {
      skip(nodeWhy, pod.metadata.name);
      continue;
    }
    let list = byNode.get(nodeName);
    if (!list) byNode.set(nodeName, (list = []));
    list.push({ name: pod.metadata.name, uid: pod.metadata.uid, ips: pod.status.ips.slice(0, 8) });
    selected++;
  }
  for (const list of byNode.values()) list.sort((a, b) => byCodePoint(a.name, b.name));
  return { byNode, selected, matched, skipped, criteria: names ? 'spec.podSelector and spec.podNames' : 'spec.podSelector' };
}

/** "2 pods on the host network (no veth of their own to tap): a, b; 1 pod not running: c". */
export function describeSkipped(skipped: Selection['skipped'], reasons: readonly SkipReason[] = SkipReasons): string {
  const parts: string[] = [];
  for (const r of reasons) {
    const s = skipped[r];
    if (!s) continue;
    const more = s.count > s.names.length ? `, and ${s.count - s.names.length} more` : '';
    parts.push(`${s.count} ${s.count === 1 ? 'pod' : 'pods'} ${SkipText[r]}: ${s.names.join(', ')}${more}`);
  }
  return parts.join('; ');
}
