import { describe, expect, it } from 'vitest';
import {
  LABEL_NODE,
  LABEL_POLICY,
  CaptureConfigSchema,
  SniffAssignmentSchema,
  assignmentLabels,
  assignmentName,
  captureConfig,
  labelValue,
  policyOwnerReference,
} from '../../../src/api/assignment.ts';
import { SniffPolicySpecSchema } from '../../../src/api/sniffpolicy.ts';

const dns1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelRe = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const long = (c: string, n: number) => c.repeat(n);

describe('assignmentName', () => {
  it.each([
    { description: 'short names join with a dot', input: ['web-debug', 'node-a'], expected: 'web-debug.node-a' },
    { description: 'a dotted node name stays readable', input: ['web-debug', 'ip-10-0-0-1.ec2.internal'], expected: 'web-debug.ip-10-0-0-1.ec2.internal' },
    { description: 'a dotted policy name is hashed (a.b + c vs a + b.c)', input: ['a.b', 'c'], expected: /^a\.b\.c-[0-9a-f]{10}$/ },
    { description: 'too long: prefix and hash', input: [long('p', 200), long('n', 200)], expected: new RegExp(`^${long('p', 200)}\\.n{41}-[0-9a-f]{10}$`) },
  ])('$description', ({ input, expected }) => {
    const name = assignmentName(input[0]!, input[1]!);
    if (typeof expected === 'string') expect(name).toBe(expected);
    else expect(name).toMatch(expected);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(dns1123);
    expect(assignmentName(input[0]!, input[1]!)).toBe(name); // deterministic
  });

  it.each([
    { description: 'dots moved between the names', input: [['a.b', 'c'], ['a', 'b.c']] },
    { description: 'long names differing only at the end', input: [[long('p', 200), `${long('n', 60)}1`], [long('p', 200), `${long('n', 60)}2`]] },
    { description: 'same node, other policy', input: [['web', 'node-a'], ['api', 'node-a']] },
  ])('distinct pairs get distinct names: $description', ({ input }) => {
    const [a, b] = input.map(([p, n]) => assignmentName(p!, n!));
    expect(a).not.toBe(b);
  });

  it('cuts a prefix so no label of the name ends in a dash or dot', () => {
    for (let cut = 230; cut < 245; cut++) {
      const name = assignmentName(`${long('a', cut)}-x`, 'node-b.c');
      expect(name, `cut ${cut}`).toMatch(dns1123);
      expect(name.length).toBeLessThanOrEqual(253);
    }
  });
});

describe('labels and owner', () => {
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

  it('labels carry the policy and the node', () => {
    expect(assignmentLabels('web-debug', 'node-a')).toEqual({ [LABEL_POLICY]: 'web-debug', [LABEL_NODE]: 'node-a', 'app.kubernetes.io/managed-by': 'podtap' });
  });

  it.each([
    {
      description: 'a stored policy',
      input: { metadata: { name: 'web-debug', uid: 'u-1' } },
      expected: { apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', name: 'web-debug', uid: 'u-1', controller: true, blockOwnerDeletion: true },
    },
    { description: 'a policy without uid', input: { metadata: { name: 'web-debug' } }, expected: /no name or uid/ },
  ])('policyOwnerReference: $description', ({ input, expected }) => {
    if (expected instanceof RegExp) expect(() => policyOwnerReference(input)).toThrow(expected);
    else expect(policyOwnerReference(input)).toEqual(expected);
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
        tunnel: { protocol: 'Geneve', vni: 0 },
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
        tunnel: { protocol: 'VXLAN', vni: 42 },
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
      metadata: { name: 'web-debug.node-a' },
      spec: { nodeName: 'node-a', policy: { name: 'web-debug', uid: 'u', generation: 1 }, config, pods: [], limits: { maxPackets: 0, maxBytes: 0 }, stopped: false },
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
      filter: NO_FILTER,
      sampling: { oneIn: 1 },
      rateLimit: { packetsPerSecond: 0, bytesPerSecond: 0 },
    });
  });
});
