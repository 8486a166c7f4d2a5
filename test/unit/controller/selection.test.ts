import { describe, expect, it } from 'vitest';
import { slimNode, slimPod } from '../../../src/controller/objects.ts';
import { describeSkipped, selectPods } from '../../../src/controller/selection.ts';
import type { LabelSelector } from '../../../src/api/index.ts';
import { node, pod } from './fixtures.ts';

const nodes = new Map([node('node-a', { zone: 'a' }), node('node-b', { zone: 'b' }), node('node-c', { zone: 'a' })].map((n) => [n.metadata.name!, slimNode(n)]));
const none = { ips: new Set<string>(), pods: new Set<string>() };

interface Case {
  description: string;
  pods: ReturnType<typeof pod>[];
  podSelector?: LabelSelector;
  podNames?: string[];
  nodeSelector?: LabelSelector;
  exclude?: { ips: Set<string>; pods: Set<string> };
  expected: { byNode: Record<string, string[]>; matched: number; skipped?: Record<string, string[]> };
}

const cases: Case[] = [
  {
    description: 'matchLabels selects pods of the namespace, grouped by node and sorted by name',
    pods: [pod('web-2', { node: 'node-b' }), pod('web-1'), pod('db-1', { labels: { app: 'db' } }), pod('web-0', { node: 'node-b' })],
    expected: { byNode: { 'node-a': ['web-1'], 'node-b': ['web-0', 'web-2'] }, matched: 3 },
  },
  {
    description: 'an empty podSelector selects every pod',
    podSelector: {},
    pods: [pod('web-1'), pod('db-1', { labels: { app: 'db' } })],
    expected: { byNode: { 'node-a': ['db-1', 'web-1'] }, matched: 2 },
  },
  {
    description: 'matchExpressions are ANDed with matchLabels',
    podSelector: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['canary'] }] },
    pods: [pod('web-1', { labels: { app: 'web', tier: 'canary' } }), pod('web-2', { labels: { app: 'web', tier: 'main' } }), pod('web-3')],
    expected: { byNode: { 'node-a': ['web-2', 'web-3'] }, matched: 2 },
  },
  {
    description: 'nodeSelector keeps pods on matching nodes only',
    nodeSelector: { matchLabels: { zone: 'a' } },
    pods: [pod('web-1'), pod('web-2', { node: 'node-b' }), pod('web-3', { node: 'node-c' })],
    expected: { byNode: { 'node-a': ['web-1'], 'node-c': ['web-3'] }, matched: 3, skipped: { nodeNotMatched: ['web-2'] } },
  },
  {
    description: 'podNames keeps only the named pods among those selected',
    podSelector: {},
    podNames: ['web-2', 'db-1', 'gone-1'],
    pods: [pod('web-1'), pod('web-2', { node: 'node-b' }), pod('db-1', { labels: { app: 'db' } })],
    expected: { byNode: { 'node-a': ['db-1'], 'node-b': ['web-2'] }, matched: 2 },
  },
  {
    description: 'podNames and podSelector are ANDed',
    podNames: ['web-1', 'db-1'],
    pods: [pod('web-1'), pod('web-2'), pod('db-1', { labels: { app: 'db' } })],
    expected: { byNode: { 'node-a': ['web-1'] }, matched: 1 },
  },
  {
    description: 'pods on a node that is gone are left out',
    pods: [pod('web-1', { node: 'node-x' })],
    expected: { byNode: {}, matched: 1, skipped: { nodeNotFound: ['web-1'] } },
  },
  {
    description: 'pods that are not running, unscheduled or terminating are left out',
    pods: [pod('web-1', { phase: 'Pending' }), pod('web-2', { phase: 'Succeeded' }), pod('web-3', { node: undefined, phase: 'Pending' }), pod('web-4', { terminating: true }), pod('web-5')],
    expected: { byNode: { 'node-a': ['web-5'] }, matched: 5, skipped: { notRunning: ['web-1', 'web-2'], unscheduled: ['web-3'], terminating: ['web-4'] } },
  },
  {
    description: 'pods without an IP are left out',
    pods: [pod('web-1', { ips: [] }), pod('web-2')],
    expected: { byNode: { 'node-a': ['web-2'] }, matched: 2, skipped: { noIP: ['web-1'] } },
  },
  {
    description: 'hostNetwork pods are left out (no veth of their own)',
    pods: [pod('web-1', { hostNetwork: true }), pod('web-2')],
    expected: { byNode: { 'node-a': ['web-2'] }, matched: 2, skipped: { hostNetwork: ['web-1'] } },
  },
  {
    description: 'the collector is left out by IP and as a Service endpoint',
    exclude: { ips: new Set(['198.18.5.5']), pods: new Set(['shop/collector-0']) },
    podSelector: {},
    pods: [pod('collector-0', { ips: ['198.18.5.6'] }), pod('collector-1', { ips: ['198.18.5.5'] }), pod('web-1')],
    expected: { byNode: { 'node-a': ['web-1'] }, matched: 3, skipped: { collector: ['collector-0', 'collector-1'] } },
  },
];

describe('selectPods', () => {
  it.each(cases)('$description', ({ pods, podSelector, podNames, nodeSelector, exclude, expected }) => {
    const sel = selectPods({
      podSelector: podSelector ?? { matchLabels: { app: 'web' } },
      podNames,
      nodeSelector,
      pods: pods.map(slimPod),
      node: (n) => nodes.get(n),
      exclude: exclude ?? none,
    });
    const byNode = Object.fromEntries([...sel.byNode].map(([n, ps]) => [n, ps.map((p) => p.name)]));
    expect(byNode).toEqual(expected.byNode);
    expect(sel.matched).toBe(expected.matched);
    expect(sel.selected).toBe(Object.values(expected.byNode).flat().length);
    const skipped = Object.fromEntries(Object.entries(sel.skipped).map(([r, s]) => [r, s.names]));
    expect(skipped).toEqual(expected.skipped ?? {});
  });

  it('hands the agent pod name, uid and every IP', () => {
    const sel = selectPods({
      podSelector: {},
      pods: [slimPod(pod('web-1', { ips: ['198.18.0.1', '2001:db8::1'], uid: 'u1' }))],
      node: (n) => nodes.get(n),
      exclude: none,
    });
    expect(sel.byNode.get('node-a')).toEqual([{ name: 'web-1', uid: 'u1', ips: ['198.18.0.1', '2001:db8::1'] }]);
  });

  it('names at most five pods per reason, the smallest, whatever the cache order', () => {
    const pods = ['h', 'c', 'g', 'a', 'f', 'b', 'e', 'd'].map((n) => slimPod(pod(`web-${n}`, { hostNetwork: true })));
    const sel = selectPods({ podSelector: {}, pods, node: (n) => nodes.get(n), exclude: none });
    expect(sel.skipped.hostNetwork).toEqual({ count: 8, names: ['web-a', 'web-b', 'web-c', 'web-d', 'web-e'] });
    expect(describeSkipped(sel.skipped)).toBe('8 pods on the host network (no veth of their own to tap): web-a, web-b, web-c, web-d, web-e, and 3 more');
  });
});
