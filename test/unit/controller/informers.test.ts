import { describe, expect, it } from 'vitest';
import { policyKeysForNode, policyKeysForPod, policyKeysForService } from '../../../src/controller/informers.ts';
import { nodeEqual, podEqual, slimAssignment, slimNode, slimPod, sliceEqual, slimSlice } from '../../../src/controller/objects.ts';
import { policyKeyForAssignment, worldFrom } from '../../../src/controller/world.ts';
import type { KubeObject } from '../../../src/k8s/index.ts';
import { NS, node, pod, policy, slice } from './fixtures.ts';

const policies = [
  policy({}, { name: 'web' }),
  policy({ podSelector: { matchLabels: { app: 'db' } } }, { name: 'db' }),
  policy({ podSelector: {} }, { name: 'all' }),
  policy({ podSelector: {}, podNames: ['web-9'] }, { name: 'one-pod' }),
  policy({ podSelector: { matchLabels: { app: 'web' } } }, { name: 'other-ns', ns: 'elsewhere' }),
  policy({ podSelector: { matchLabels: { app: 'x' } }, nodeSelector: { matchLabels: { zone: 'a' } } }, { name: 'zoned' }),
  policy({ podSelector: { matchLabels: { app: 'x' } }, collector: { service: { name: 'col' } } }, { name: 'by-svc' }),
  policy({ podSelector: { matchLabels: { app: 'x' } }, collector: { service: { name: 'col', namespace: 'podtap-system' } } }, { name: 'by-svc-ns' }),
];
const { stores } = worldFrom({ policies, pods: [pod('web-1', { node: 'node-a' }), pod('db-1', { labels: { app: 'db' }, node: 'node-b' })] });
const keys = (l: string[]) => [...l].sort();

describe('event → policy keys', () => {
  it.each([
    { description: 'a new pod: policies of its namespace that select it', old: undefined, now: pod('web-2'), expected: [`${NS}/all`, `${NS}/web`] },
    { description: 'a relabelled pod: policies matching the old or the new labels', old: pod('web-2'), now: pod('web-2', { labels: { app: 'db' } }), expected: [`${NS}/all`, `${NS}/db`, `${NS}/web`] },
    { description: 'a deleted pod: policies that selected it', old: pod('db-2', { labels: { app: 'db' } }), now: undefined, expected: [`${NS}/all`, `${NS}/db`] },
    { description: 'a pod in a namespace without policies', old: undefined, now: pod('web-1', { ns: 'quiet' }), expected: [] },
    { description: 'a pod a policy names: that policy too', old: undefined, now: pod('web-9'), expected: [`${NS}/all`, `${NS}/one-pod`, `${NS}/web`] },
  ])('pod: $description', ({ old, now, expected }) => {
    expect(keys(policyKeysForPod(stores, old && slimPod(old), now && slimPod(now)))).toEqual(expected);
  });

  it.each([
    { description: 'policies selecting pods on it, and those with a nodeSelector', input: 'node-a', expected: [`${NS}/all`, `${NS}/web`, `${NS}/zoned`] },
    { description: 'a node without pods: only nodeSelector policies', input: 'node-z', expected: [`${NS}/zoned`] },
  ])('node: $description', ({ input, expected }) => {
    expect(keys(policyKeysForNode(stores, input))).toEqual(expected);
  });

  it.each([
    { description: 'a collector Service in the policy namespace', input: [NS, 'col'], expected: [`${NS}/by-svc`] },
    { description: 'a collector Service elsewhere', input: ['podtap-system', 'col'], expected: [`${NS}/by-svc-ns`] },
    { description: 'any other Service', input: [NS, 'web'], expected: [] },
  ])('service: $description', ({ input, expected }) => {
    expect(policyKeysForService(stores, input[0]!, input[1]!)).toEqual(expected);
  });

  it('an assignment: its policy, by spec.policy (in another namespace, with a hashed label)', () => {
    const long = 'p'.repeat(70);
    const a = slimAssignment({
      metadata: { name: 'x', namespace: 'podtap-system', labels: { 'podtap.io/policy': 'ppp-hash' } },
      spec: { nodeName: 'n', policy: { namespace: NS, name: long, uid: 'u', generation: 1 } },
    } as KubeObject);
    expect(policyKeyForAssignment(a)).toBe(`${NS}/${long}`);
  });
});

describe('slim objects make irrelevant updates silent', () => {
  const withStatus = (o: KubeObject, status: Record<string, unknown>) => ({ ...structuredClone(o), status: { ...(o as { status?: object }).status, ...status } }) as KubeObject;
  const pods = (a: KubeObject, b: KubeObject) => podEqual(slimPod(a), slimPod(b));
  const nodes = (a: KubeObject, b: KubeObject) => nodeEqual(slimNode(a), slimNode(b));
  const slices = (a: KubeObject, b: KubeObject) => sliceEqual(slimSlice(a), slimSlice(b));
  it.each([
    { description: 'pod: a container restart is not a change', equal: () => pods(pod('web-1'), withStatus(pod('web-1'), { containerStatuses: [{ restartCount: 3 }] })), expected: true },
    { description: 'pod: a new IP is', equal: () => pods(pod('web-1'), pod('web-1', { ips: ['198.18.3.3'] })), expected: false },
    { description: 'pod: new labels are', equal: () => pods(pod('web-1'), pod('web-1', { labels: { app: 'api' } })), expected: false },
    { description: 'pod: terminating is', equal: () => pods(pod('web-1'), pod('web-1', { terminating: true })), expected: false },
    { description: 'node: a heartbeat is not a change', equal: () => nodes(node('n1'), withStatus(node('n1'), { conditions: [{ type: 'Ready', lastHeartbeatTime: 'now' }] })), expected: true },
    { description: 'node: a label is', equal: () => nodes(node('n1'), node('n1', { zone: 'b' })), expected: false },
    { description: 'slice: an endpoint turning unready is', equal: () => slices(slice('s', 'col', [{ ip: '198.18.1.1' }]), slice('s', 'col', [{ ip: '198.18.1.1', ready: false }])), expected: false },
  ])('$description', ({ equal, expected }) => {
    expect(equal()).toBe(expected);
  });

  it('a slim pod keeps only what selection reads', () => {
    expect(slimPod(pod('web-1', { ips: ['198.18.0.1', '2001:db8::1'] }))).toEqual({
      metadata: { name: 'web-1', namespace: NS, uid: 'uid-web-1', resourceVersion: expect.any(String), labels: { app: 'web' } },
      spec: { nodeName: 'node-a' },
      status: { phase: 'Running', ips: ['198.18.0.1', '2001:db8::1'] },
    });
  });
});
