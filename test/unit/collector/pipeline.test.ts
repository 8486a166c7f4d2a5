/**
 * The collector pipeline's bookkeeping: sequence gaps, malformed and refused
 * datagrams by reason, duplicates and overlaps, incomplete frames, interface
 * naming, timestamps.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PcapngWriter } from '../../../src/collector/pcapng.ts';
import { Pipeline, type PipelineOptions } from '../../helpers/pipeline.ts';
import { encodeAnnouncement, type Announcement } from '../../../src/wire/announce.ts';
import { deriveNodeKey } from '../../../src/wire/auth.ts';
import { encodeFrame, type EncodeOptions } from '../../helpers/encode.ts';
import { MALFORMED_REASONS, META_LEN, MetaOff, type MalformedReason } from '../../../src/wire/format.ts';
import { ipv4Frame, ipv6Frame, rawFrame } from '../wire/frames.ts';
import { readCapture, runPipeline, tempDir } from './helpers.ts';

const SRC = '198.18.0.1';
/** struct pt_meta and the inner frame in a Geneve datagram with podtap's option */
const META = 12;
const INNER = META + META_LEN;

const SECRET = 's3cret';

/** An announcement of node-a from SRC, signed with node-a's key under `secret` (null: unsigned). */
function ann(over: Partial<Announcement> = {}, secret: string | null = SECRET): Buffer {
  const a: Announcement = {
    v: 2, node: 'node-a', source: SRC, sender: 'agent', senderId: 'a1', instance: 1, tunnel: 'Geneve', policy: null,
    clock: { monoNs: '0', realtimeNs: '1764100000000000000' },
    interfaces: [{ ifindex: 5, name: 'veth5', pod: { namespace: 'ns', name: 'p' }, directions: ['Ingress'] }],
    ...over,
  };
  return encodeAnnouncement(a, secret === null ? {} : { key: { id: a.node, key: deriveNodeKey(secret, a.node) } });
}

const frame = (seed: number, payload = 64): Buffer => ipv4Frame({ proto: 'UDP', payload, seed });
const enc = (f: Buffer, o: EncodeOptions): Buffer[] => encodeFrame(f, { instance: 1, ifindex: 5, tstamp: BigInt((o.seq ?? 0) + 1) * 1000n, ...o });

/** A pipeline writing into memory. */
function memoryPipeline(opts: PipelineOptions = { mode: 'geneve' }): Pipeline {
  return new Pipeline(new PcapngWriter(() => undefined), opts);
}

describe('sequence gaps through the pipeline', () => {
  it('counts exactly the frames never received, per (source, instance, cpu) stream', () => {
    const p = memoryPipeline();
    const send = (seq: number, cpu: number, address = SRC, instance = 1, payload = 64): void => {
      for (const d of enc(frame(seq, payload), { seq, cpu, instance })) p.handle(d, address);
    };
    for (const s of [0, 1, 2, 5, 6, 10]) send(s, 0); // 3, 4, 7, 8, 9 lost
    for (const s of [0, 2, 1, 3]) send(s, 1); // reordered: none lost
    for (const s of [7, 8, 10]) send(s, 0, '198.18.0.2'); // another source: 9 lost
    for (const s of [0, 1, 3]) send(s, 0, SRC, 2, 4000); // another instance, split frames: 2 lost
    p.finish();
    expect(p.stats()).toMatchObject({ lost: 5 + 0 + 1 + 1, rebuilt: 6 + 4 + 3 + 3, streams: 4, sources: 2 });
  });
});

describe('idle streams and sources', () => {
  it('retires a silent stream (its gaps count) and forgets a silent source', () => {
    const p = memoryPipeline({ mode: 'geneve', secret: SECRET, limits: { streamIdleMs: 10_000, sourceIdleMs: 60_000, streams: 1 } });
    p.tick(0);
    p.handle(ann(), SRC);
    for (const seq of [0, 1, 3]) for (const d of enc(frame(seq), { seq, cpu: 0 })) p.handle(d, SRC);
    expect(p.stats()).toMatchObject({ streams: 1, lost: 0 });
    // a second stream does not fit the limit of one
    for (const d of enc(frame(9), { seq: 0, cpu: 1 })) p.handle(d, SRC);
    expect(p.stats().malformedByReason['too-many']).toBe(1);
    p.tick(10_000);
    expect(p.stats()).toMatchObject({ streams: 0, lost: 1 });
    // the freed slot takes the new stream
    for (const d of enc(frame(9), { seq: 0, cpu: 1 })) p.handle(d, SRC);
    expect(p.stats()).toMatchObject({ streams: 1, rebuilt: 4 });
    p.tick(70_000);
    expect(p.stats()).toMatchObject({ streams: 0, sources: 0, lost: 1 });
    // forgotten (and its grant expired): with a secret, data needs a fresh announcement
    for (const d of enc(frame(10), { seq: 1, cpu: 1 })) p.handle(d, SRC);
    expect(p.stats().malformedByReason.unannounced).toBe(1);
  });
});

describe('state is bounded per sender and per policy (issue 9)', () => {
  it('one sender flooding new streams gets streamsPerSource of them; another sender still gets its own', () => {
    const p = memoryPipeline({ mode: 'geneve', limits: { streamsPerSource: 16 } });
    for (let cpu = 0; cpu < 1000; cpu++) for (const d of enc(frame(cpu), { seq: 0, cpu })) p.handle(d, SRC);
    for (let cpu = 0; cpu < 3; cpu++) for (const d of enc(frame(cpu), { seq: 0, cpu })) p.handle(d, '198.18.0.2');
    expect(p.stats()).toMatchObject({ streams: 16 + 3, rebuilt: 16 + 3 });
    expect(p.stats().malformedByReason['too-many']).toBe(1000 - 16);
  });

  it('interfaces of one policy are bounded over all its senders; other policies are not affected', () => {
    const p = memoryPipeline({ mode: 'geneve', limits: { interfacesPerPolicy: 4 } });
    const pods = (n: number, base: number): Announcement['interfaces'] =>
      Array.from({ length: n }, (_, i) => ({ ifindex: base + i, name: `veth${base + i}`, pod: { namespace: 'ns', name: `p${base + i}` }, directions: ['Ingress' as const] }));
    const policy = (name: string) => ({ namespace: 'ns', name, uid: '' });
    p.handle(ann({ policy: policy('web'), interfaces: pods(3, 10) }), SRC);
    p.handle(ann({ policy: policy('web'), interfaces: pods(3, 20) }), '198.18.0.2');
    p.handle(ann({ instance: 2, policy: policy('db'), interfaces: pods(3, 30) }), SRC);
    expect(p.router.interfaces().map((i) => i.capture).sort()).toEqual([...Array(3).fill('ns_db'), ...Array(4).fill('ns_web')]);
  });

  it('packets rebuilt per policy are counted for the tunnel check, for a bounded number of policies', () => {
    const p = memoryPipeline({ mode: 'geneve', limits: { rebuiltPolicies: 2 } });
    const policy = (name: string) => ({ namespace: 'ns', name, uid: '' });
    for (const [i, name] of ['web', 'db', 'cache'].entries()) {
      p.handle(ann({ instance: i + 1, policy: policy(name), interfaces: [{ ifindex: 5, name: 'veth5', pod: { namespace: 'ns', name: 'p' }, directions: ['Ingress'] }] }), SRC);
      for (let k = 0; k <= i; k++) for (const d of enc(frame(k), { seq: k, instance: i + 1 })) p.handle(d, SRC);
    }
    expect(p.stats()).toMatchObject({ rebuilt: 6 });
    // the third policy is past the bound: not counted, and said so (its check is "not compared", not a false alarm)
    expect(p.router.rebuiltByPolicy()).toEqual([{ namespace: 'ns', name: 'web', packets: 1 }, { namespace: 'ns', name: 'db', packets: 2 }]);
    expect(p.router.rebuiltTruncated()).toBe(true);
  });

  it('interfaces are bounded over every sender', () => {
    const p = memoryPipeline({ mode: 'geneve', limits: { interfaces: 5 } });
    for (let k = 0; k < 10; k++) for (const d of enc(frame(k), { seq: 0, cpu: 0, ifindex: 100 + k })) p.handle(d, `198.18.1.${k}`);
    expect(p.stats()).toMatchObject({ rebuilt: 10 });
    expect(p.router.interfaces()).toHaveLength(5);
    expect(p.stats().malformedByReason['too-many']).toBe(5);
  });
});

describe('malformed and refused datagrams are counted by reason', () => {
  const split = enc(frame(1, 4000), { seq: 1 });
  const withSecret: PipelineOptions = { mode: 'geneve', secret: SECRET };
  const cases: { description: string; input: { opts?: PipelineOptions; datagrams: Buffer[] }; expected: Partial<Record<MalformedReason, number>> & { rebuilt?: number } }[] = [
    { description: 'foreign UDP on the port', input: { datagrams: [Buffer.from('hello world, not a tunnel')] }, expected: { 'bad-version': 1 } },
    { description: 'truncated datagram', input: { datagrams: [split[0]!.subarray(0, 30)] }, expected: { 'bad-options': 1 } },
    { description: 'announcement that is not JSON', input: { datagrams: [Buffer.concat([ann().subarray(0, 16), Buffer.from('{oops')])] }, expected: { 'bad-announcement': 1 } },
    { description: 'data without an announcement, secret set', input: { opts: withSecret, datagrams: enc(frame(1), { seq: 1 }) }, expected: { unannounced: 1, rebuilt: 0 } },
    { description: 'announcement signed under another install', input: { opts: withSecret, datagrams: [ann({}, 'guess'), ...enc(frame(1), { seq: 1 })] }, expected: { 'bad-mac': 1, unannounced: 1, rebuilt: 0 } },
    { description: 'unsigned announcement, secret set', input: { opts: withSecret, datagrams: [ann({}, null), ...enc(frame(1), { seq: 1 })] }, expected: { unauthenticated: 1, unannounced: 1, rebuilt: 0 } },
    { description: 'announced, signed with its node key', input: { opts: withSecret, datagrams: [ann(), ...enc(frame(1), { seq: 1 })] }, expected: { rebuilt: 1 } },
    { description: 'the same announcement twice: the replay is refused', input: { opts: withSecret, datagrams: [...Array(2).fill(ann()), ...enc(frame(1), { seq: 1 })] }, expected: { replayed: 1, rebuilt: 1 } },
    {
      description: 'data of an instance the announcement did not name',
      input: { opts: withSecret, datagrams: [ann({ instance: 1 }), ...enc(frame(1), { seq: 1, instance: 2 })] },
      expected: { unannounced: 1, rebuilt: 0 },
    },
    { description: 'an announcement naming another source address', input: { opts: withSecret, datagrams: [ann({ source: '198.18.7.7' })] }, expected: { 'wrong-source': 1 } },
    { description: 'no secret: any announcement, signed or not', input: { datagrams: [ann({}, null), ann({}, 'whatever'), ...enc(frame(1), { seq: 1 })] }, expected: { rebuilt: 1 } },
    {
      description: 'piece contradicting its frame (orig_len)',
      input: { datagrams: [split[0]!, (() => { const b = Buffer.from(split[1]!); b.writeUInt32BE(9999, META + MetaOff.origLen); return b; })(), split[2]!, split[1]!] },
      expected: { inconsistent: 1, rebuilt: 1 },
    },
    {
      description: 'piece whose header prefix differs (another frame, same number)',
      input: { datagrams: [split[0]!, (() => { const b = Buffer.from(split[1]!); b[INNER + 14 + 12] = b[INNER + 14 + 12]! ^ 1; return b; })(), split[1]!, split[2]!] },
      expected: { inconsistent: 1, rebuilt: 1 },
    },
    {
      description: 'too many sources',
      input: { opts: { mode: 'geneve', limits: { sources: 0 } }, datagrams: enc(frame(1), { seq: 1 }) },
      expected: { 'too-many': 1, rebuilt: 0 },
    },
  ];
  it.each(cases)('$description', ({ input, expected }) => {
    const p = memoryPipeline(input.opts);
    for (const d of input.datagrams) p.handle(d, SRC);
    const s = p.stats();
    const { rebuilt, ...reasons } = expected;
    const want = Object.fromEntries(MALFORMED_REASONS.map((r) => [r, reasons[r] ?? 0]));
    expect(s.malformedByReason).toEqual(want);
    expect(s.malformed).toBe(Object.values(reasons).reduce((a, b) => a + b, 0));
    if (rebuilt !== undefined) expect(s.rebuilt).toBe(rebuilt);
  });

  it('nothing throws on any single-byte corruption of a valid piece', () => {
    const p = memoryPipeline();
    const d = split[1]!;
    for (let i = 0; i < 80; i++) {
      for (const v of [0, 0xff, d[i]! ^ 0x80]) {
        const b = Buffer.from(d);
        b[i] = v;
        expect(() => p.handle(b, SRC)).not.toThrow();
      }
    }
  });
});

describe('duplicates, overlaps and incomplete frames', () => {
  const f = ipv6Frame({ proto: 'UDP', payload: 6000 });
  const ps = enc(f, { seq: 1 });
  const shifted = (i: number, by: number): Buffer => {
    const b = Buffer.from(ps[i]!);
    b.writeUInt32BE(b.readUInt32BE(META + MetaOff.pieceOff) + by, META + MetaOff.pieceOff);
    return b;
  };
  it.each([
    { description: 'all pieces', input: ps, expected: { rebuilt: 1, duplicates: 0, overlaps: 0, incomplete: 0 } },
    { description: 'a piece repeated before completion', input: [ps[0]!, ps[0]!, ...ps.slice(1)], expected: { rebuilt: 1, duplicates: 1, overlaps: 0, incomplete: 0 } },
    { description: 'a piece repeated after completion', input: [...ps, ps[2]!], expected: { rebuilt: 1, duplicates: 1, overlaps: 0, incomplete: 0 } },
    { description: 'an overlapping piece after the real one', input: [ps[0]!, ps[1]!, shifted(1, 8), ...ps.slice(2)], expected: { rebuilt: 1, duplicates: 0, overlaps: 1, incomplete: 0 } },
    // the shifted piece came first: the real piece 1 and piece 2 overlap it, a
    // hole stays, and the frame is never written rather than written wrong
    { description: 'an overlapping piece before the real one', input: [ps[0]!, shifted(1, 8), ...ps.slice(1)], expected: { rebuilt: 0, duplicates: 0, overlaps: 2, incomplete: 1 } },
    { description: 'a piece missing', input: [ps[0]!, ...ps.slice(2)], expected: { rebuilt: 0, duplicates: 0, overlaps: 0, incomplete: 1 } },
  ])('$description', ({ input, expected }) => {
    const p = memoryPipeline();
    for (const d of input) p.handle(d, SRC);
    p.finish();
    expect(p.stats()).toMatchObject({ ...expected, malformed: 0, lost: 0 });
  });

  it('times out incomplete frames', () => {
    const p = memoryPipeline({ mode: 'geneve', reassembly: { timeoutMs: 1000 } });
    p.tick(0);
    p.handle(ps[0]!, SRC);
    p.tick(999);
    expect(p.stats()).toMatchObject({ pendingFrames: 1, incomplete: 0 });
    p.tick(1000);
    expect(p.stats()).toMatchObject({ pendingFrames: 0, pendingBytes: 0, incomplete: 1 });
    // a straggler of the dropped frame is not a new frame
    p.handle(ps[1]!, SRC);
    expect(p.stats()).toMatchObject({ pendingFrames: 0, duplicates: 1 });
  });

  it.each([
    { description: 'frame limit', input: { maxFrames: 2 }, expected: { evicted: 1, pendingFrames: 2 } },
    { description: 'byte limit', input: { maxBytes: 2 * f.length + 10 }, expected: { evicted: 1, pendingFrames: 2 } },
  ])('bounded memory: $description', ({ input, expected }) => {
    const p = memoryPipeline({ mode: 'geneve', reassembly: input });
    for (const seq of [1, 2, 3]) p.handle(enc(f, { seq })[0]!, SRC);
    expect(p.stats()).toMatchObject({ ...expected, incomplete: expected.evicted });
  });
});

describe('interfaces and timestamps in the capture', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it('unknown until announced, renamed by a later announcement; receive time before any clock', async () => {
    const announcement = (pod: string, mono: string): Buffer =>
      ann({ clock: { monoNs: mono, realtimeNs: '1764100000000000000' }, interfaces: [{ ifindex: 5, name: 'veth5', pod: { namespace: 'ns', name: pod }, directions: ['Ingress'] }] });
    const datagrams = [
      ...enc(frame(0), { seq: 0, tstamp: 10_000_000_000n }),
      announcement('web-1', '10000000000'),
      ...enc(frame(1), { seq: 1, tstamp: 10_000_000_001n }),
      ...enc(rawFrame(5000, 1), { seq: 2, tstamp: 10_500_000_000n }),
      announcement('web-2', '20000000000'), // the node's clock pair moved on, and the pod changed
      ...enc(frame(3), { seq: 3, tstamp: 20_000_000_003n }),
    ].map((buf) => ({ buf, address: SRC }));
    const file = join(dir, 'names.pcapng');
    const before = Date.now() / 1000;
    const stats = await runPipeline(file, datagrams);
    expect(stats).toMatchObject({ rebuilt: 4, interfaces: 3, timestampFallback: 1, announcements: 2 });
    const packets = await readCapture(file);
    expect(packets.map((p) => p.ifName)).toEqual([`${SRC}/if5`, 'ns/web-1', 'ns/web-1', 'ns/web-2']);
    expect(packets.map((p) => p.epoch).slice(1)).toEqual(['1764100000.000000001', '1764100000.500000000', '1764100000.000000003']);
    expect(Number(packets[0]!.epoch)).toBeGreaterThanOrEqual(Math.floor(before));
    expect(Number(packets[0]!.epoch)).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(packets[1]!.ifDescription).toBe(`node node-a, interface veth5 (ifindex 5), agent at ${SRC}`);
  });
});
