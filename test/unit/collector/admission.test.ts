/**
 * Admission (issue 9): replays refused across the window, announcements only
 * for assigned (namespace, policy, node) — as the entries of the stored node
 * objects say —, grants revoked when an assignment goes, and the state
 * bounded per node.
 */
import { describe, expect, it } from 'vitest';
import { assignmentsOfNode, captureConfig, SniffPolicySpecSchema, type SniffAssignmentSpec } from '../../../src/api/index.ts';
import { AssignmentSet } from '../../../src/collector/admission.ts';
import { assignedStream } from '../../../src/collector/assignments.ts';
import { PcapngWriter } from '../../../src/collector/pcapng.ts';
import { encodeAnnouncement, type Announcement } from '../../../src/wire/announce.ts';
import { deriveNodeKey } from '../../../src/wire/auth.ts';
import { nodeAssignmentObjects } from '../../helpers/assignments.ts';
import { encodeFrame } from '../../helpers/encode.ts';
import { Pipeline, type PipelineOptions } from '../../helpers/pipeline.ts';
import { ipv4Frame } from '../wire/frames.ts';

const SECRET = 'install-secret';
const SRC = '198.18.0.1';
const WEB = { namespace: 'shop', policy: 'web-debug', node: 'node-a' };

function ann(over: Partial<Announcement> = {}, timeMs = Date.now()): Buffer {
  const a: Announcement = {
    v: 2, node: 'node-a', source: SRC, sender: 'agent', senderId: 'a1', instance: 1, tunnel: 'Geneve',
    policy: { namespace: 'shop', name: 'web-debug', uid: 'u' }, clock: { monoNs: '0', realtimeNs: '1764100000000000000' },
    interfaces: [{ ifindex: 5, name: 'veth5', pod: { namespace: 'shop', name: 'web-1' }, directions: ['Ingress'] }],
    ...over,
  };
  return encodeAnnouncement(a, { key: { id: a.node, key: deriveNodeKey(SECRET, a.node) }, timeMs });
}

let seq = 0;
/** One frame of instance `instance` from SRC (or `from`). */
function data(p: Pipeline, instance = 1, from = SRC): void {
  seq++;
  for (const d of encodeFrame(ipv4Frame({ proto: 'UDP', payload: 64, seed: seq }), { instance, seq, ifindex: 5, tstamp: BigInt(seq) * 1000n })) p.handle(d, from);
}

function pipeline(opts: Partial<PipelineOptions> = {}): Pipeline {
  return new Pipeline(new PcapngWriter(() => undefined), { mode: 'geneve', secret: SECRET, ...opts });
}

describe('assignments', () => {
  it('only announcements of an assigned (namespace, policy, node) are admitted, and only their streams granted', () => {
    const allow = new AssignmentSet([WEB]);
    const p = pipeline({ admission: { allow } });
    p.handle(ann(), SRC);
    p.handle(ann({ instance: 2, policy: { namespace: 'shop', name: 'other', uid: 'u' } }), SRC); // not assigned
    p.handle(ann({ instance: 3, policy: null }), SRC); // no policy at all
    p.handle(ann({ instance: 4, node: 'node-b' }), SRC); // assigned on another node
    for (const i of [1, 2, 3, 4]) data(p, i);
    expect(p.stats()).toMatchObject({ announcements: 1, grants: 1, rebuilt: 1 });
    expect(p.stats().malformedByReason).toMatchObject({ 'not-assigned': 3, unannounced: 3 });
  });

  it('an assignment removed revokes its stream at once; assigned again, the next announcement grants it again', () => {
    const allow = new AssignmentSet([WEB]);
    const p = pipeline({ admission: { allow } });
    p.handle(ann(), SRC);
    data(p);
    allow.delete(WEB);
    data(p);
    expect(p.stats()).toMatchObject({ rebuilt: 1, grants: 0 });
    expect(p.stats().malformedByReason.unannounced).toBe(1);
    p.handle(ann(), SRC); // (the agent re-announces every 5 s)
    expect(p.stats().malformedByReason['not-assigned']).toBe(1);
    allow.replace([WEB]);
    p.handle(ann(), SRC);
    data(p);
    expect(p.stats()).toMatchObject({ rebuilt: 2, grants: 1 });
  });
});

describe('the streams the stored assignments admit', () => {
  const OWN = '198.18.0.10';
  const spec = (policy: string, over: { address?: string; stopped?: boolean; namespace?: string } = {}): SniffAssignmentSpec => {
    const address = over.address ?? OWN;
    return {
      nodeName: 'node-a',
      policy: { namespace: over.namespace ?? 'shop', name: policy, uid: `uid-${policy}`, generation: 1 },
      config: captureConfig(SniffPolicySpecSchema.parse({ collector: { address } }), { address, port: 6081 }),
      pods: [],
      limits: { maxPackets: 0, maxBytes: 0 },
      stopped: over.stopped ?? false,
    };
  };
  const streams = (specs: SniffAssignmentSpec[], addresses?: string[]) =>
    nodeAssignmentObjects('podtap-system', 'node-a', specs)
      .flatMap((o) => assignmentsOfNode(o))
      .flatMap((a) => assignedStream(a, addresses) ?? []);

  it.each([
    { description: 'each entry of a node object, by its policy namespace (not the install namespace)', input: { specs: [spec('web'), spec('api', { namespace: 'bank' })] }, expected: [{ namespace: 'bank', policy: 'api', node: 'node-a' }, { namespace: 'shop', policy: 'web', node: 'node-a' }] },
    { description: 'a stopped entry admits nothing, its neighbours do', input: { specs: [spec('web', { stopped: true }), spec('api')] }, expected: [{ namespace: 'shop', policy: 'api', node: 'node-a' }] },
    { description: 'with own addresses, an entry towards another collector admits nothing', input: { specs: [spec('web'), spec('elsewhere', { address: '198.18.0.99' })], addresses: [OWN] }, expected: [{ namespace: 'shop', policy: 'web', node: 'node-a' }] },
    { description: 'without, every collector\'s entries count', input: { specs: [spec('web'), spec('elsewhere', { address: '198.18.0.99' })] }, expected: [{ namespace: 'shop', policy: 'elsewhere', node: 'node-a' }, { namespace: 'shop', policy: 'web', node: 'node-a' }] },
  ])('$description', ({ input, expected }) => {
    expect(streams(input.specs, input.addresses)).toEqual(expected);
  });
});

describe('replays', () => {
  it('the same announcement is refused while its time is in the window; past it, the time refuses it', () => {
    let now = Date.now();
    const p = pipeline({ maxSkewMs: 60_000, wallClock: () => now, admission: { clock: () => now } });
    const a = ann({}, now);
    p.handle(a, SRC);
    now += 59_000;
    p.handle(a, SRC);
    now += 2_000;
    p.admission.tick();
    p.handle(a, SRC);
    expect(p.stats().malformedByReason).toMatchObject({ replayed: 1, stale: 1 });
    expect(p.stats().announcements).toBe(1);
  });

  it('nonces are forgotten once their messages cannot pass the window any more', () => {
    let now = Date.now();
    const p = pipeline({ maxSkewMs: 60_000, wallClock: () => now, admission: { clock: () => now } });
    for (let k = 0; k < 10; k++) p.handle(ann({}, now), SRC);
    expect(p.admission.stats().nonces).toBe(10);
    now += 121_000;
    p.admission.tick();
    expect(p.admission.stats().nonces).toBe(0);
  });
});

describe('bounds', () => {
  it('nonces per node: a node announcing too fast is refused (too-many); other nodes are not', () => {
    const p = pipeline({ admission: { limits: { noncesPerNode: 3 } } });
    for (let k = 0; k < 5; k++) p.handle(ann(), SRC);
    p.handle(ann({ node: 'node-b', instance: 2 }), SRC);
    expect(p.stats().announcements).toBe(4);
    expect(p.stats().malformedByReason['too-many']).toBe(2);
  });

  it('a grant lapses when the sender stops announcing', () => {
    const p = pipeline({ admission: { grantTtlMs: 1000 } });
    p.tick(0);
    p.handle(ann(), SRC);
    data(p);
    p.tick(1500);
    data(p);
    expect(p.stats().rebuilt).toBe(1);
    expect(p.stats().malformedByReason.unannounced).toBe(1);
  });

  it('instances per source: grants beyond the limit are refused', () => {
    const p = pipeline({ limits: { instancesPerSource: 2 } });
    for (const instance of [1, 2, 3]) p.handle(ann({ instance }), SRC);
    for (const instance of [1, 2, 3]) data(p, instance);
    expect(p.stats().rebuilt).toBe(2);
    expect(p.stats().malformedByReason).toMatchObject({ 'too-many': 1, unannounced: 1 });
  });
});
