import { describe, expect, it } from 'vitest';
import {
  LABEL_NODE,
  LABEL_POLICY,
  LABEL_POLICY_NAMESPACE,
  CaptureConfigSchema,
  SniffAssignmentSchema,
  assignmentLabels,
  assignmentName,
  captureConfig,
  labelValue,
} from '../../../src/api/assignment.ts';
import { SniffPolicySpecSchema } from '../../../src/api/sniffpolicy.ts';

const dns1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelRe = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const long = (c: string, n: number) => c.repeat(n);

describe('assignmentName', () => {
  it.each([
    { description: 'short names join with dots', input: ['shop', 'web-debug', 'node-a'], expected: 'shop.web-debug.node-a' },
    { description: 'a dotted node name stays readable', input: ['shop', 'web-debug', 'ip-10-0-0-1.ec2.internal'], expected: 'shop.web-debug.ip-10-0-0-1.ec2.internal' },
    { description: 'a dotted policy name is hashed (a.b + c vs a + b.c)', input: ['shop', 'a.b', 'c'], expected: /^shop\.a\.b\.c-[0-9a-f]{10}$/ },
    { description: 'too long: prefix and hash', input: ['shop', long('p', 200), long('n', 200)], expected: new RegExp(`^shop\\.${long('p', 200)}\\.n{36}-[0-9a-f]{10}$`) },
  ])('$description', ({ input, expected }) => {
    const name = assignmentName(input[0]!, input[1]!, input[2]!);
    if (typeof expected === 'string') expect(name).toBe(expected);
    else expect(name).toMatch(expected);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(dns1123);
    expect(assignmentName(input[0]!, input[1]!, input[2]!)).toBe(name); // deterministic
  });

  it.each([
    { description: 'dots moved between the names', input: [['shop', 'a.b', 'c'], ['shop', 'a', 'b.c']] },
    { description: 'long names differing only at the end', input: [['shop', long('p', 200), `${long('n', 60)}1`], ['shop', long('p', 200), `${long('n', 60)}2`]] },
    { description: 'same node, other policy', input: [['shop', 'web', 'node-a'], ['shop', 'api', 'node-a']] },
    // the install namespace holds every namespace's assignments
    { description: 'same policy name and node, other namespace', input: [['shop', 'web', 'node-a'], ['bank', 'web', 'node-a']] },
    { description: 'other namespace, long names', input: [['shop', long('p', 200), long('n', 60)], ['bank', long('p', 200), long('n', 60)]] },
  ])('distinct triples get distinct names: $description', ({ input }) => {
    const [a, b] = input.map(([ns, p, n]) => assignmentName(ns!, p!, n!));
    expect(a).not.toBe(b);
  });

  it('cuts a prefix so no label of the name ends in a dash or dot', () => {
    for (let cut = 230; cut < 245; cut++) {
      const name = assignmentName('shop', `${long('a', cut)}-x`, 'node-b.c');
      expect(name, `cut ${cut}`).toMatch(dns1123);
      expect(name.length).toBeLessThanOrEqual(253);
    }
  });
});

describe('labels', () => {
  it.each([
    { description: 'a short name as is', input: 'node-a', expected: 'node-a' },
    { description: 'a dotted name as is', input: 'ip-10-0-0-1.ec2.internal', expected: 'ip-10-0-0-1.ec2.internal' },
    { description: 'a 64-character name hashed to 63', input: long('n', 64), expected: new RegExp(`^${long('n', 52)}-[0-9a-f]{10}$`) },
  ])('labelValue: $description', ({ input, expected }) => {
    const v = labelValue(input);
    if (typeof expected === 'string') expect(v).toBe(expected);
    else expect(v).toMatch(expected);
    expect(v.length).toBeLessThanOrEqual(63);
    expect(v).toMatch(labelRe);
  });

  it('labels carry the policy, its namespace and the node', () => {
    expect(assignmentLabels('shop', 'web-debug', 'node-a')).toEqual({
      [LABEL_POLICY_NAMESPACE]: 'shop',
      [LABEL_POLICY]: 'web-debug',
      [LABEL_NODE]: 'node-a',
      'app.kubernetes.io/managed-by': 'podtap',
    });
  });
});

const NO_FILTER = { protocols: [], ports: [], cidrs: [], tcpFlags: [] };

describe('captureConfig', () => {
  it.each([
    {
      description: 'every default applied, the collector as resolved',
      input: { spec: { collector: { service: { name: 'podtap-collector' } } }, collector: { address: '198.18.9.2', port: 6081 } },
      expected: {
        hooks: ['ingress', 'egress'],
        filter: NO_FILTER,
        sampling: { oneIn: 1 },
        snapLength: 0,
        rateLimit: { packetsPerSecond: 0, bytesPerSecond: 0 },
        tunnel: { protocol: 'Geneve', vni: 0, largeFrames: 'Segment' },
        mtu: 0,
        collector: { address: '198.18.9.2', port: 6081 },
      },
    },
    {
      description: 'filter, sampling and rate limit carried over, the rest defaulted',
      input: {
        spec: { collector: { address: '198.18.9.2' }, tunnel: { protocol: 'VXLAN', vni: 42 }, filter: { protocols: ['TCP'] }, sampling: { oneIn: 10 }, rateLimit: { packetsPerSecond: 100 } },
        collector: { address: '198.18.9.2', port: 4789 },
      },
      expected: {
        hooks: ['ingress', 'egress'],
        filter: { ...NO_FILTER, protocols: ['TCP'] },
        sampling: { oneIn: 10 },
        snapLength: 0,
        rateLimit: { packetsPerSecond: 100, bytesPerSecond: 0 },
        tunnel: { protocol: 'VXLAN', vni: 42, largeFrames: 'Segment' },
        mtu: 0,
        collector: { address: '198.18.9.2', port: 4789 },
      },
    },
  ])('$description', ({ input, expected }) => {
    const config = captureConfig(SniffPolicySpecSchema.parse(input.spec), input.collector);
    expect(config).toEqual(expected);
    const doc = {
      apiVersion: 'podtap.io/v1alpha1',
      kind: 'SniffAssignment',
      metadata: { name: 'shop.web-debug.node-a', namespace: 'podtap-system' },
      spec: { nodeName: 'node-a', policy: { namespace: 'shop', name: 'web-debug', uid: 'u', generation: 1 }, config, pods: [], limits: { maxPackets: 0, maxBytes: 0 }, stopped: false },
    };
    expect(SniffAssignmentSchema.parse(doc).spec.config).toEqual(expected);
  });

  it.each([
    { description: 'Ingress (to the pod): the host-side veth\'s egress hook', input: ['Ingress'] as const, expected: ['egress'] },
    { description: 'Egress (from the pod): its ingress hook', input: ['Egress'] as const, expected: ['ingress'] },
    { description: 'both, in either order: both hooks, ingress first', input: ['Egress', 'Ingress'] as const, expected: ['ingress', 'egress'] },
  ])('policyTypes $description', ({ input, expected }) => {
    const spec = SniffPolicySpecSchema.parse({ collector: { address: '198.18.9.2' }, policyTypes: input });
    expect(captureConfig(spec, { address: '198.18.9.2', port: 6081 }).hooks).toEqual(expected);
  });

  it('refuses a config of podtap 0.1 (config.direction named the hooks): no hook is guessed', () => {
    const older = { direction: 'Ingress', snapLength: 0, tunnel: { protocol: 'Geneve', vni: 0 }, mtu: 0, collector: { address: '198.18.9.2', port: 6081 } };
    const r = CaptureConfigSchema.safeParse(older);
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toEqual(['hooks']);
  });

  it('fills in the defaults of a config written before they were (an older controller)', () => {
    const older = { hooks: ['egress'], snapLength: 0, tunnel: { protocol: 'Geneve', vni: 0 }, mtu: 0, collector: { address: '198.18.9.2', port: 6081 } };
    expect(CaptureConfigSchema.parse(older)).toEqual({
      ...older,
      tunnel: { ...older.tunnel, largeFrames: 'Segment' },
      filter: NO_FILTER,
      sampling: { oneIn: 1 },
      rateLimit: { packetsPerSecond: 0, bytesPerSecond: 0 },
    });
  });
});
