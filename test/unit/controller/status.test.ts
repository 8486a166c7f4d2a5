import { describe, expect, it } from 'vitest';
import { MAX_STATUS_NODES, type SniffAssignmentStatus, type SniffPolicyStatus } from '../../../src/api/index.ts';
import { aggregateStatus, collectorSummary, eventType, statusEqual, type NodeInput, type StatusInput } from '../../../src/controller/status.ts';

const NOW = new Date('2025-01-01T00:10:00Z');
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** A node whose agent reported `state` 5 s ago for the current generation. */
function rep(name: string, state: SniffAssignmentStatus['state'], extra: Partial<SniffAssignmentStatus> = {}, gen = 2): NodeInput {
  return {
    node: name,
    pods: 2,
    assignment: { generation: gen, creationTimestamp: ago(60), status: { state, observedGeneration: 2, lastReportTime: ago(5), collectorReachable: true, ...extra } },
  };
}

const base: StatusInput = { generation: 3, previous: undefined, now: NOW, staleMs: 30_000, nodes: [], namespace: 'shop' };
const sel = (selected: number, matched = selected, skipped = {}, criteria = 'spec.podSelector') => ({ selection: { selected, matched, skipped, criteria } });

interface Case {
  description: string;
  input: Partial<StatusInput>;
  expected: {
    ready: [string, string];
    progressing?: [string, string];
    degraded?: [string, string];
    completed?: [string, string];
    nodesReady?: number;
    message?: RegExp;
    degradedMessage?: RegExp;
  };
}

const cases: Case[] = [
  {
    description: 'every node attached: Ready True Attached',
    input: { nodes: [rep('a', 'Attached'), rep('b', 'Attached')], ...sel(4) },
    expected: { ready: ['True', 'Attached'], progressing: ['False', 'AsExpected'], degraded: ['False', 'AsExpected'], completed: ['False', 'AsExpected'], nodesReady: 2, message: /capturing 4 pods on 2 nodes/ },
  },
  {
    description: 'attached but some pods left out: the message says which',
    input: { nodes: [rep('a', 'Attached')], ...sel(2, 3, { hostNetwork: { count: 1, names: ['web-h'] } }) },
    expected: { ready: ['True', 'Attached'], message: /left out: 1 pod on the host network \(no veth of their own to tap\): web-h/ },
  },
  {
    description: 'no pod matches: NoPodsSelected',
    input: { ...sel(0, 0) },
    expected: { ready: ['False', 'NoPodsSelected'], message: /no pod of namespace shop matches spec.podSelector/ },
  },
  {
    description: 'no pod matches the names a policy gives: the message says both',
    input: { ...sel(0, 0, {}, 'spec.podSelector and spec.podNames') },
    expected: { ready: ['False', 'NoPodsSelected'], message: /no pod of namespace shop matches spec.podSelector and spec.podNames$/ },
  },
  {
    description: 'pods match but all are hostNetwork: NoPodsSelected, saying why',
    input: { ...sel(0, 2, { hostNetwork: { count: 2, names: ['a', 'b'] } }) },
    expected: { ready: ['False', 'NoPodsSelected'], message: /2 pods match spec.podSelector, none can be captured: 2 pods on the host network/ },
  },
  {
    description: 'pods match but on no matching node: NoNodesMatched',
    input: { ...sel(0, 2, { nodeNotMatched: { count: 2, names: ['a', 'b'] } }) },
    expected: { ready: ['False', 'NoNodesMatched'], message: /none on a node matching spec.nodeSelector/ },
  },
  {
    description: 'collector missing: CollectorNotFound blocks, nothing is progressing',
    input: { nodes: [rep('a', 'Attached')], blocker: { reason: 'CollectorNotFound', message: 'collector Service shop/c does not exist' } },
    expected: { ready: ['False', 'CollectorNotFound'], progressing: ['False', 'CollectorNotFound'], degraded: ['False', 'AsExpected'], message: /does not exist/ },
  },
  {
    description: 'invalid spec: InvalidSpec with the field paths',
    input: { blocker: { reason: 'InvalidSpec', message: 'spec.mtu: mtu must be 0 or 1280..9216' } },
    expected: { ready: ['False', 'InvalidSpec'], message: /spec.mtu/ },
  },
  {
    description: 'an agent says the collector is unreachable',
    input: { nodes: [rep('a', 'Attached'), rep('b', 'Attached', { collectorReachable: false, message: 'no route to 198.18.9.9' })], ...sel(4) },
    expected: { ready: ['False', 'CollectorUnreachable'], degraded: ['True', 'CollectorUnreachable'], nodesReady: 1, message: /1\/2 nodes ready; b \(CollectorUnreachable: no route to 198.18.9.9\)/ },
  },
  {
    description: 'the verifier rejected the program on one node and an interface is missing on another: VerifierRejected first',
    input: {
      nodes: [rep('a', 'Degraded', { reason: 'InterfaceNotFound', message: 'veth of web-1 not found' }), rep('b', 'Failed', { reason: 'VerifierRejected', message: 'R1 invalid mem access' }), rep('c', 'Attached')],
      ...sel(6),
    },
    expected: { ready: ['False', 'VerifierRejected'], degraded: ['True', 'VerifierRejected'], nodesReady: 1, degradedMessage: /2 nodes not capturing: b \(VerifierRejected: R1 invalid mem access\), a \(InterfaceNotFound/ },
  },
  {
    description: "a node's agent refused a session slot, another's interface is missing: NodeSessionLimit first, with the agent's message",
    input: {
      nodes: [
        rep('a', 'Degraded', { reason: 'InterfaceNotFound', message: 'veth of web-1 not found' }),
        rep('b', 'Failed', { reason: 'NodeSessionLimit', message: 'node b runs 32 of the 32 capture sessions it may (agent --max-sessions); attached when a session there ends' }),
        rep('c', 'Attached'),
      ],
      ...sel(6),
    },
    expected: { ready: ['False', 'NodeSessionLimit'], degraded: ['True', 'NodeSessionLimit'], nodesReady: 1, degradedMessage: /b \(NodeSessionLimit: node b runs 32 of the 32 capture sessions/ },
  },
  {
    description: "one node's kernel lacks a feature, another's verifier refused: KernelUnsupported first, naming the kernel",
    input: {
      nodes: [
        rep('a', 'Failed', { reason: 'VerifierRejected', message: 'R1 invalid mem access' }),
        rep('b', 'Failed', { reason: 'KernelUnsupported', message: 'kernel 5.4.0-1 lacks the bpf_loop() helper (5.17) and global BPF functions (5.6), needed for cutting a frame larger than the MTU into pieces' }),
        rep('c', 'Attached'),
      ],
      ...sel(6),
    },
    expected: { ready: ['False', 'KernelUnsupported'], degraded: ['True', 'KernelUnsupported'], nodesReady: 1, degradedMessage: /b \(KernelUnsupported: kernel 5\.4\.0-1 lacks the bpf_loop\(\) helper/ },
  },
  {
    description: 'clang failed: CompileFailed',
    input: { nodes: [rep('a', 'Failed', { reason: 'CompileFailed', message: 'clang: exit 1' })], ...sel(2) },
    expected: { ready: ['False', 'CompileFailed'], degraded: ['True', 'CompileFailed'] },
  },
  {
    description: 'a program runs before podtap on a tapped veth: ForeignProgramFirst, the program named',
    input: {
      nodes: [rep('a', 'Degraded', { reason: 'ForeignProgramFirst', message: 'veth1 (pod web-1) egress: BPF program cil_to_container at preference 1 runs before podtap\'s' }), rep('b', 'Attached')],
      ...sel(2),
    },
    expected: { ready: ['False', 'ForeignProgramFirst'], degraded: ['True', 'ForeignProgramFirst'], nodesReady: 1, degradedMessage: /a \(ForeignProgramFirst: veth1 \(pod web-1\) egress: BPF program cil_to_container/ },
  },
  {
    description: 'an interface is missing: InterfaceNotFound',
    input: { nodes: [rep('a', 'Degraded', { reason: 'InterfaceNotFound' })], ...sel(2) },
    expected: { ready: ['False', 'InterfaceNotFound'], degraded: ['True', 'InterfaceNotFound'] },
  },
  {
    description: 'an unknown agent reason becomes PartiallyAttached',
    input: { nodes: [rep('a', 'Degraded', { reason: 'SomethingOdd', message: 'odd' })], ...sel(2) },
    expected: { ready: ['False', 'PartiallyAttached'], degraded: ['True', 'PartiallyAttached'], message: /a \(PartiallyAttached: odd\)/ },
  },
  {
    description: 'a silent agent: AgentNotReporting, named in Degraded',
    input: { nodes: [rep('a', 'Attached', { lastReportTime: ago(45) }), rep('b', 'Attached')], ...sel(4) },
    expected: { ready: ['False', 'AgentNotReporting'], degraded: ['True', 'AgentNotReporting'], nodesReady: 1, degradedMessage: /a \(AgentNotReporting: no report from the agent since 2025-01-01T00:09:15Z\)/ },
  },
  {
    description: 'an assignment never picked up: AgentNotReporting once the window passed',
    input: { nodes: [{ node: 'a', pods: 1, assignment: { generation: 1, creationTimestamp: ago(31) } }], ...sel(1) },
    expected: { ready: ['False', 'AgentNotReporting'], message: /has not picked up the assignment/ },
  },
  {
    description: 'a new assignment without a report yet: Attaching, Progressing',
    input: { nodes: [{ node: 'a', pods: 1, assignment: { generation: 1, creationTimestamp: ago(3) } }, { node: 'b', pods: 1 }], ...sel(2) },
    expected: { ready: ['False', 'Attaching'], progressing: ['True', 'Attaching'], degraded: ['False', 'AsExpected'], message: /0\/2 nodes ready; attaching on a, b/ },
  },
  {
    description: 'the agent has not seen the current generation: Attaching',
    input: { nodes: [rep('a', 'Attached', {}, 3)], ...sel(2) },
    expected: { ready: ['False', 'Attaching'], progressing: ['True', 'Attaching'], nodesReady: 0 },
  },
  {
    description: 'this reconcile changes the spec: Attaching whatever the last report said',
    input: { nodes: [{ ...rep('a', 'Attached'), assignment: { ...rep('a', 'Attached').assignment!, specChanged: true } }], ...sel(2) },
    expected: { ready: ['False', 'Attaching'] },
  },
  {
    description: 'limit reached: Completed True, Ready False LimitReached',
    input: { nodes: [rep('a', 'Completed')], ...sel(2), completed: { message: '100 packets mirrored', completionTime: ago(1) } },
    expected: { ready: ['False', 'LimitReached'], completed: ['True', 'LimitReached'], progressing: ['False', 'LimitReached'], degraded: ['False', 'AsExpected'] },
  },
  {
    description: 'an agent stopped at its local cap before the controller noticed: LimitReached',
    input: { nodes: [rep('a', 'Completed'), rep('b', 'Attached')], ...sel(4) },
    expected: { ready: ['False', 'LimitReached'], completed: ['False', 'AsExpected'] },
  },
];

function cond(s: SniffPolicyStatus, type: string): [string, string] | undefined {
  const c = s.conditions?.find((x) => x.type === type);
  return c && [c.status, c.reason];
}

describe('aggregateStatus', () => {
  it.each(cases)('$description', ({ input, expected }) => {
    const { status } = aggregateStatus({ ...base, ...input });
    expect(cond(status, 'Ready')).toEqual(expected.ready);
    if (expected.progressing) expect(cond(status, 'Progressing')).toEqual(expected.progressing);
    if (expected.degraded) expect(cond(status, 'Degraded')).toEqual(expected.degraded);
    if (expected.completed) expect(cond(status, 'Completed')).toEqual(expected.completed);
    if (expected.nodesReady !== undefined) expect(status.nodesReady).toBe(expected.nodesReady);
    const ready = status.conditions!.find((c) => c.type === 'Ready')!;
    if (expected.message) expect(ready.message).toMatch(expected.message);
    if (expected.degradedMessage) expect(status.conditions!.find((c) => c.type === 'Degraded')!.message).toMatch(expected.degradedMessage);
    expect(status.observedGeneration).toBe(3);
    for (const c of status.conditions!) expect(c.observedGeneration).toBe(3);
    expect(status.nodeSummary).toBe(`${status.nodesReady}/${status.nodesTotal}`);
  });

  it('sums counters, interfaces and drops; lists nodes sorted', () => {
    const { status } = aggregateStatus({
      ...base,
      ...sel(4),
      nodes: [
        rep('b', 'Attached', { attachedInterfaces: 2, counters: { mirrored: 10, bytes: 1000, pieces: 3, lost: 1, dropped: { rateLimited: 1 } } }),
        rep('a', 'Attached', { interfaces: [{ pod: 'p', name: 'veth1', ifindex: 3, policyTypes: ['Ingress'] }], counters: { mirrored: 5, bytes: 500, lost: 2, dropped: { rateLimited: 2, busy: 4 } } }),
      ],
    });
    expect(status).toMatchObject({ packets: 15, bytes: 1500, fragments: 3, lost: 3, attachedInterfaces: 3, dropped: { rateLimited: 3, busy: 4 }, selectedPods: 4, nodesTotal: 2 });
    expect(status.nodes!.map((n) => [n.node, n.state, n.packets, n.interfaces])).toEqual([
      ['a', 'Attached', 5, 1],
      ['b', 'Attached', 10, 2],
    ]);
    expect(status.nodes![0]!.lastReportTime).toBe(ago(5));
  });

  it(`lists at most ${MAX_STATUS_NODES} nodes, those that need a look first; the counts cover them all`, () => {
    const many = Array.from({ length: 25 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const troubled = new Set(['n03', 'n17', 'n24']);
    const { status } = aggregateStatus({
      ...base,
      ...sel(25),
      nodes: many.map((n) => rep(n, troubled.has(n) ? 'Failed' : 'Attached', troubled.has(n) ? { reason: 'VerifierRejected', message: 'no' } : {})),
    });
    expect(status.nodesTotal).toBe(25);
    expect(status.nodesReady).toBe(22);
    expect(status.nodes).toHaveLength(MAX_STATUS_NODES);
    const listed = status.nodes!.map((n) => n.node);
    for (const n of troubled) expect(listed).toContain(n);
    expect(listed).toEqual([...listed].sort());
    // the ready ones listed are the first by name
    expect(listed.filter((n) => !troubled.has(n))).toEqual(many.filter((n) => !troubled.has(n)).slice(0, MAX_STATUS_NODES - troubled.size));
  });

  it('keeps lastTransitionTime when a condition keeps its status', () => {
    const first = aggregateStatus({ ...base, ...sel(2), nodes: [rep('a', 'Attaching')], now: new Date('2025-01-01T00:09:00Z') }).status;
    const second = aggregateStatus({ ...base, ...sel(2), nodes: [rep('a', 'Attaching')], previous: first }).status;
    const t = (s: SniffPolicyStatus) => s.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime;
    expect(t(second)).toBe('2025-01-01T00:09:00Z');
    const third = aggregateStatus({ ...base, ...sel(2), nodes: [rep('a', 'Attached')], previous: second }).status;
    expect(t(third)).toBe('2025-01-01T00:10:00Z');
  });

  it('says when the next node turns stale', () => {
    const r = aggregateStatus({ ...base, ...sel(4), nodes: [rep('a', 'Attached', { lastReportTime: ago(20) }), rep('b', 'Attached')] });
    expect(r.nextCheckMs).toBe(NOW.getTime() - 20_000 + 30_000 + 1);
  });

  it('statusEqual ignores the order of nodes and conditions', () => {
    const { status } = aggregateStatus({ ...base, ...sel(4), nodes: [rep('a', 'Attached'), rep('b', 'Attached')] });
    const shuffled = { ...status, nodes: [...status.nodes!].reverse(), conditions: [...status.conditions!].reverse() };
    expect(statusEqual(status, shuffled)).toBe(true);
    expect(statusEqual(status, { ...status, packets: 1 })).toBe(false);
  });

  it.each([
    { description: 'success is Normal', input: 'Attached', expected: 'Normal' },
    { description: 'progress is Normal', input: 'Attaching', expected: 'Normal' },
    { description: 'a finished capture is Normal', input: 'LimitReached', expected: 'Normal' },
    { description: 'a failure is a Warning', input: 'VerifierRejected', expected: 'Warning' },
    { description: 'nothing selected is a Warning', input: 'NoPodsSelected', expected: 'Warning' },
  ])('eventType: $description', ({ input, expected }) => {
    expect(eventType(input)).toBe(expected);
  });
});

describe('collectorSummary (the wide Collector column)', () => {
  it.each([
    { description: 'an address', input: { spec: { collector: {} }, resolved: { address: '198.18.0.1', port: 6081 } }, expected: '198.18.0.1:6081' },
    { description: 'an IPv6 address', input: { spec: { collector: {} }, resolved: { address: '2001:db8::1', port: 4789 } }, expected: '[2001:db8::1]:4789' },
    { description: 'a Service of the policy\'s namespace', input: { spec: { collector: { service: { name: 'c' } } }, resolved: { address: '198.18.0.2', port: 6081 } }, expected: 'shop/c → 198.18.0.2:6081' },
    { description: 'a Service elsewhere', input: { spec: { collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } } }, resolved: { address: '198.18.0.3', port: 6081 } }, expected: 'podtap-system/podtap-collector → 198.18.0.3:6081' },
    { description: 'a Service without endpoint', input: { spec: { collector: { service: { name: 'c' } } }, resolved: undefined }, expected: 'shop/c (no endpoint)' },
  ])('$description', ({ input, expected }) => {
    expect(collectorSummary(input.spec, 'shop', input.resolved)).toBe(expected);
  });
});
