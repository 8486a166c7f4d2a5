import { describe, expect, it } from 'vitest';
import {
  ANNOTATION_OBJECT,
  LABEL_NODE,
  LABEL_POLICY,
  LABEL_POLICY_NAMESPACE,
  MAX_ENTRIES_PER_OBJECT,
  MAX_NODE_OBJECT_BYTES,
  CaptureConfigSchema,
  SniffAssignmentSchema,
  SniffNodeAssignmentSpecSchema,
  assignmentLabels,
  assignmentName,
  assignmentsOfNode,
  captureConfig,
  configId,
  foldNodeAssignments,
  labelValue,
  nodeAssignmentName,
  type CaptureConfig,
  type SniffAssignmentSpec,
  type SniffNodeAssignment,
} from '../../../src/api/assignment.ts';
import { SniffPolicySpecSchema } from '../../../src/api/sniffpolicy.ts';
import { canonicalJson } from '../../../src/util/json.ts';

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

/** A resolved capture config towards @address (policy defaults otherwise). */
const configTo = (address: string, over: object = {}): CaptureConfig =>
  captureConfig(SniffPolicySpecSchema.parse({ collector: { address }, ...over }), { address, port: 6081 });

/** The assignment of policy @ns/@name on node-a, with @pods pods. */
function specOf(ns: string, name: string, config: CaptureConfig = configTo('198.18.9.2'), pods = 1): SniffAssignmentSpec {
  return {
    nodeName: 'node-a',
    policy: { namespace: ns, name, uid: `uid-${ns}-${name}`, generation: 1 },
    config,
    // (names and uids as long as a Deployment's pods have)
    pods: Array.from({ length: pods }, (_, i) => ({
      name: `${name}-5d8f7c9b4-${i.toString(36).padStart(5, '0')}`,
      uid: `6b1f0c5e-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      ips: [`198.18.${(i >> 8) & 255}.${i & 255}`, `2001:db8::${i.toString(16)}`],
    })),
    limits: { maxPackets: 0, maxBytes: 0 },
    stopped: false,
  };
}

const SINCE = '2026-12-06T00:00:00Z';
const A = configTo('198.18.9.2');
const B = configTo('198.18.9.3');

/** A stored object of node-a holding @entries (policy name, config) under @configs. */
function nodeObject(configs: CaptureConfig[], entries: { name: string; config: string }[], status?: SniffNodeAssignment['status']): SniffNodeAssignment {
  return {
    apiVersion: 'podtap.io/v1alpha1',
    kind: 'SniffNodeAssignment',
    metadata: { name: 'node-a', namespace: 'podtap-system', generation: 4, resourceVersion: '812' },
    spec: {
      nodeName: 'node-a',
      configs: configs.map((config) => ({ id: configId(config), config })),
      entries: entries.map((e) => {
        const s = specOf('shop', e.name);
        return { policy: s.policy, config: e.config, pods: s.pods, limits: s.limits, stopped: false, since: SINCE };
      }),
    },
    ...(status ? { status } : {}),
  };
}

describe('assignmentsOfNode', () => {
  it('an entry as the assignment of its policy on the node: named, labelled and timed as one, pointing at its object', () => {
    const [a] = assignmentsOfNode(nodeObject([A], [{ name: 'web', config: configId(A) }]));
    expect(a).toEqual({
      apiVersion: 'podtap.io/v1alpha1',
      kind: 'SniffAssignment',
      metadata: {
        name: 'shop.web.node-a',
        namespace: 'podtap-system',
        labels: assignmentLabels('shop', 'web', 'node-a'),
        annotations: { [ANNOTATION_OBJECT]: 'node-a' },
        creationTimestamp: SINCE,
        generation: 4,
        resourceVersion: '812',
      },
      spec: { ...specOf('shop', 'web'), config: A },
    });
    expect(SniffAssignmentSchema.parse(a)).toEqual(a);
  });

  const status = (entries: { policyUid: string; state: 'Attached' | 'Pending' }[], observedGeneration?: number) => ({ ...(observedGeneration !== undefined ? { observedGeneration } : {}), entries });
  it.each([
    {
      description: 'each entry gets the config its id names',
      input: nodeObject([A, B], [{ name: 'api', config: configId(B) }, { name: 'web', config: configId(A) }]),
      expected: [{ name: 'shop.api.node-a', collector: '198.18.9.3' }, { name: 'shop.web.node-a', collector: '198.18.9.2' }],
    },
    {
      description: 'each entry gets its status by policy uid, not by position',
      input: nodeObject([A], [{ name: 'api', config: configId(A) }, { name: 'web', config: configId(A) }], status([{ policyUid: 'uid-shop-web', state: 'Attached' }, { policyUid: 'uid-shop-api', state: 'Pending' }])),
      expected: [
        { name: 'shop.api.node-a', collector: '198.18.9.2', status: { state: 'Pending' } },
        { name: 'shop.web.node-a', collector: '198.18.9.2', status: { state: 'Attached' } },
      ],
    },
    {
      description: "the object's observedGeneration is every entry's, even one the agent has not reported on",
      input: nodeObject([A], [{ name: 'api', config: configId(A) }, { name: 'web', config: configId(A) }], status([{ policyUid: 'uid-shop-web', state: 'Attached' }], 3)),
      expected: [
        { name: 'shop.api.node-a', collector: '198.18.9.2', status: { observedGeneration: 3 } },
        { name: 'shop.web.node-a', collector: '198.18.9.2', status: { state: 'Attached', observedGeneration: 3 } },
      ],
    },
    {
      description: 'no status: none on the assignments',
      input: nodeObject([A], [{ name: 'web', config: configId(A) }]),
      expected: [{ name: 'shop.web.node-a', collector: '198.18.9.2' }],
    },
    {
      description: 'an entry whose config id is in no config is skipped, the others kept',
      input: nodeObject([A], [{ name: 'api', config: 'ffffffffffffffff' }, { name: 'web', config: configId(A) }]),
      expected: [{ name: 'shop.web.node-a', collector: '198.18.9.2' }],
    },
  ])('$description', ({ input, expected }) => {
    const got = assignmentsOfNode(input).map((a) => ({ name: a.metadata.name, collector: a.spec.config.collector.address, ...(a.status ? { status: a.status } : {}) }));
    expect(got).toEqual(expected);
  });
});

/** How many entries, and which config ids, each part of a fold holds. */
const shape = (parts: ReturnType<typeof foldNodeAssignments>) => parts.map((p) => ({ entries: p.entries.length, configs: p.configs.map((c) => c.id) }));
const bytes = (o: unknown) => JSON.stringify(o).length;
/** Pods per entry such that two entries fit an object and three do not (an entry of about 36% of the bound). */
const BIG = Math.ceil(MAX_NODE_OBJECT_BYTES / 2.8 / (bytes(specOf('shop', 'p', A, 1000).pods) / 1000));

describe('foldNodeAssignments', () => {
  it('(an entry of BIG pods is a valid one)', () => {
    expect(BIG).toBeLessThanOrEqual(1024);
  });

  it.each([
    {
      description: 'entries sorted by policy namespace, then name',
      input: [specOf('shop', 'web'), specOf('bank', 'web'), specOf('shop', 'api')],
      expected: { policies: [['bank/web', 'shop/api', 'shop/web']], shape: [{ entries: 3, configs: [configId(A)] }] },
    },
    {
      description: 'a config shared by entries is stored once; distinct ones once each, in the order first used',
      input: [specOf('shop', 'a', B), specOf('shop', 'b', A), specOf('shop', 'c', B)],
      expected: { policies: [['shop/a', 'shop/b', 'shop/c']], shape: [{ entries: 3, configs: [configId(B), configId(A)] }] },
    },
    {
      description: `past ${MAX_ENTRIES_PER_OBJECT} entries, a second part`,
      input: Array.from({ length: MAX_ENTRIES_PER_OBJECT + 1 }, (_, i) => specOf('shop', `p${String(i).padStart(3, '0')}`)),
      expected: { shape: [{ entries: MAX_ENTRIES_PER_OBJECT, configs: [configId(A)] }, { entries: 1, configs: [configId(A)] }] },
    },
    {
      description: 'past the byte bound, a second part, with only the configs its entries use',
      input: [specOf('shop', 'a', A, BIG), specOf('shop', 'b', A, BIG), specOf('shop', 'c', B, BIG)],
      expected: { shape: [{ entries: 2, configs: [configId(A)] }, { entries: 1, configs: [configId(B)] }] },
    },
    {
      description: 'nothing assigned: no object',
      input: [],
      expected: { policies: [], shape: [] },
    },
  ])('$description', ({ input, expected }) => {
    const parts = foldNodeAssignments('node-a', input.map((spec) => ({ spec, since: SINCE })));
    expect(shape(parts)).toEqual(expected.shape);
    if (expected.policies) expect(parts.map((p) => p.entries.map((e) => `${e.policy.namespace}/${e.policy.name}`))).toEqual(expected.policies);
    for (const p of parts) {
      expect(bytes(p)).toBeLessThanOrEqual(MAX_NODE_OBJECT_BYTES);
      expect(SniffNodeAssignmentSpecSchema.parse(p)).toEqual(p);
    }
  });

  it('packs a part up to the byte bound: the next part\'s first entry would not have fitted', () => {
    const specs = Array.from({ length: 12 }, (_, i) => specOf('shop', `p${String(i).padStart(2, '0')}`, A, BIG / 2));
    const parts = foldNodeAssignments('node-a', specs.map((spec) => ({ spec, since: SINCE })));
    expect(parts.length).toBeGreaterThan(1);
    for (let i = 0; i + 1 < parts.length; i++) {
      expect(bytes({ ...parts[i]!, entries: [...parts[i]!.entries, parts[i + 1]!.entries[0]!] })).toBeGreaterThan(MAX_NODE_OBJECT_BYTES);
    }
  });

  it.each([
    { description: 'one part, two configs', input: [specOf('shop', 'web', A), specOf('bank', 'api', B)] },
    { description: 'parts split by count', input: Array.from({ length: 2 * MAX_ENTRIES_PER_OBJECT + 3 }, (_, i) => specOf(`ns${i % 3}`, `p${i}`, i % 2 ? A : B)) },
    { description: 'parts split by bytes', input: [specOf('shop', 'a', A, BIG), specOf('shop', 'b', B, BIG), specOf('shop', 'c', A, BIG)] },
    { description: 'a stopped entry with limits', input: [{ ...specOf('shop', 'web'), stopped: true, limits: { deadline: '2026-12-06T01:00:00Z', maxPackets: 100, maxBytes: 0 } }] },
  ])('round trip, fold then expand, gives back the specs: $description', ({ input }) => {
    const parts = foldNodeAssignments('node-a', input.map((spec) => ({ spec, since: SINCE })));
    const back = parts.flatMap((spec, part) =>
      assignmentsOfNode({ metadata: { name: nodeAssignmentName('node-a', part), namespace: 'podtap-system' }, spec }),
    );
    const key = (s: SniffAssignmentSpec) => `${s.policy.namespace}/${s.policy.name}`;
    expect(back.map((a) => a.spec).sort((x, y) => key(x).localeCompare(key(y)))).toEqual([...input].sort((x, y) => key(x).localeCompare(key(y))));
    expect(new Set(back.map((a) => a.metadata.creationTimestamp))).toEqual(new Set(input.length ? [SINCE] : []));
  });
});

describe('nodeAssignmentName', () => {
  it.each([
    { description: "part 0: the node's name", input: { node: 'node-a', part: 0 }, expected: 'node-a' },
    { description: 'a dotted node name as is', input: { node: 'ip-10-0-0-1.ec2.internal', part: 0 }, expected: 'ip-10-0-0-1.ec2.internal' },
    { description: 'part 1: <node>.part1-<hash>', input: { node: 'node-a', part: 1 }, expected: /^node-a\.part1-[0-9a-f]{10}$/ },
    { description: 'part 12 of a dotted name', input: { node: 'ip-10-0-0-1.ec2.internal', part: 12 }, expected: /^ip-10-0-0-1\.ec2\.internal\.part12-[0-9a-f]{10}$/ },
    { description: 'a 253-character node, part 0: itself', input: { node: `${long('n', 63)}.${long('n', 63)}.${long('n', 63)}.${long('n', 61)}`, part: 0 }, expected: `${long('n', 63)}.${long('n', 63)}.${long('n', 63)}.${long('n', 61)}` },
    { description: 'a 253-character node, part 1: too long, a prefix and a hash', input: { node: `${long('n', 63)}.${long('n', 63)}.${long('n', 63)}.${long('n', 61)}`, part: 1 }, expected: new RegExp(`^${long('n', 63)}\\.${long('n', 63)}\\.${long('n', 63)}\\.n{50}-[0-9a-f]{10}$`) },
  ])('$description', ({ input, expected }) => {
    const name = nodeAssignmentName(input.node, input.part);
    if (typeof expected === 'string') expect(name).toBe(expected);
    else expect(name).toMatch(expected);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(dns1123);
    expect(nodeAssignmentName(input.node, input.part)).toBe(name);
  });

  it("a node named like another's second part gets its own: node x.1's first object is not node x's second", () => {
    expect(nodeAssignmentName('x.1', 0)).not.toBe(nodeAssignmentName('x', 1));
    expect(nodeAssignmentName('x.part1', 0)).not.toBe(nodeAssignmentName('x', 1));
  });

  it('the parts of a long node name are distinct', () => {
    const node = `${long('n', 63)}.${long('n', 63)}.${long('n', 63)}.${long('n', 61)}`;
    const names = [0, 1, 2, 10].map((part) => nodeAssignmentName(node, part));
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('configId', () => {
  it('the same config with its keys in another order (as the API server returns it): the same id', () => {
    const c = configTo('198.18.9.2');
    const sorted = JSON.parse(canonicalJson(c)) as typeof c;
    expect(Object.keys(sorted)).not.toEqual(Object.keys(c));
    expect(configId(sorted)).toBe(configId(c));
  });

  it.each([
    { description: 'the same config, built twice: the same id', input: [configTo('198.18.9.2'), configTo('198.18.9.2')], expected: true },
    { description: 'another collector: another id', input: [configTo('198.18.9.2'), configTo('198.18.9.3')], expected: false },
    { description: 'another filter: another id', input: [configTo('198.18.9.2'), configTo('198.18.9.2', { filter: { protocols: ['TCP'] } })], expected: false },
    { description: 'another snap length: another id', input: [configTo('198.18.9.2'), configTo('198.18.9.2', { snapLength: 128 })], expected: false },
  ])('$description', ({ input, expected }) => {
    const [a, b] = input.map((c) => configId(c));
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(a === b).toBe(expected);
  });
});
