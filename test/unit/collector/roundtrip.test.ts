/**
 * Frames → the data plane's encoder (test/helpers/encode.ts) → datagrams in
 * various orders → the collector pipeline → pcapng → tshark: byte-identical
 * frames, the right interface names, lengths and directions.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAnnouncement, type Announcement } from '../../../src/wire/announce.ts';
import { encodeFrame, type EncodeOptions } from '../../helpers/encode.ts';
import { FRAME_MAX } from '../../../src/wire/format.ts';
import { ipv4Frame, ipv6Frame, rawFrame } from '../wire/frames.ts';
import { readCapture, runPipeline, shuffle, tempDir, type Datagram } from './helpers.ts';

const SRC = '198.18.0.1';
const MONO0 = 5_000_000_000n;
const REAL0 = 1_764_100_000_000_000_000n;

const announcement: Announcement = {
  v: 2, node: 'node-a', source: SRC, sender: 'agent', senderId: 'a1', instance: 7, tunnel: 'Geneve',
  policy: { namespace: 'demo', name: 'web-debug', uid: 'u1' },
  clock: { monoNs: MONO0.toString(), realtimeNs: REAL0.toString() },
  interfaces: [
    { ifindex: 12, name: 'veth1a2b', pod: { namespace: 'demo', name: 'web-1' }, directions: ['Ingress', 'Egress'] },
    { ifindex: 13, name: 'veth3c4d', pod: null, directions: ['Ingress'] },
  ],
};

interface Case {
  description: string;
  frame: Buffer;
  opts?: EncodeOptions;
  /** bytes expected in the capture (default: the whole frame) */
  cap?: number;
}

const cases: Case[] = [
  { description: 'IPv4 TCP small', frame: ipv4Frame({ proto: 'TCP', payload: 100, seed: 1 }) },
  { description: 'IPv4 UDP small', frame: ipv4Frame({ proto: 'UDP', payload: 40, seed: 2 }) },
  { description: 'IPv4 ICMP small', frame: ipv4Frame({ proto: 'ICMP', payload: 56, seed: 3 }) },
  { description: 'IPv4 TCP 65535 bytes, DF', frame: ipv4Frame({ proto: 'TCP', payload: 65535 - 40, df: true, seed: 4 }) },
  { description: 'IPv4 UDP 65535 bytes with options', frame: ipv4Frame({ proto: 'UDP', payload: 65535 - 36, options: 8, seed: 5 }) },
  { description: 'IPv4 UDP 9000 bytes, MTU 1280', frame: ipv4Frame({ proto: 'UDP', payload: 9000, seed: 6 }), opts: { mtu: 1280 } },
  { description: 'IPv4 TCP 20000 bytes, MTU 9000', frame: ipv4Frame({ proto: 'TCP', payload: 20000, seed: 7 }), opts: { mtu: 9000 } },
  { description: 'IPv4 fitting frame, general path (offloaded checksum)', frame: ipv4Frame({ proto: 'TCP', payload: 1412 - 54, seed: 8 }), opts: { fastPath: false } },
  { description: 'IPv6 ICMPv6 small', frame: ipv6Frame({ proto: 'ICMPv6', payload: 56, seed: 9 }) },
  { description: 'IPv6 UDP 65000', frame: ipv6Frame({ proto: 'UDP', payload: 65000, seed: 10 }) },
  { description: 'IPv6 TCP 65000 with HbH + Routing', frame: ipv6Frame({ proto: 'TCP', payload: 65000, ext: ['hop', 'routing'], seed: 11 }) },
  { description: 'IPv6 UDP with DstOpts + Routing', frame: ipv6Frame({ proto: 'UDP', payload: 30000, ext: ['dst', 'routing'], seed: 12 }) },
  { description: 'IPv6 UDP with DstOpts only', frame: ipv6Frame({ proto: 'UDP', payload: 30000, ext: ['dst'], seed: 13 }) },
  { description: 'IPv6 over outer IPv6', frame: ipv6Frame({ proto: 'UDP', payload: 12000, seed: 14 }), opts: { outerV6: true } },
  { description: 'pod-made IPv4 first fragment', frame: ipv4Frame({ proto: 'UDP', payload: 8000, more: true, id: 99, seed: 15 }) },
  { description: 'pod-made IPv4 middle fragment', frame: ipv4Frame({ proto: 'UDP', payload: 6000, fragOffset: 8008, more: true, id: 99, seed: 16 }) },
  { description: 'pod-made IPv4 last fragment', frame: ipv4Frame({ proto: 'UDP', payload: 3000, fragOffset: 16000, more: false, id: 99, seed: 17 }) },
  { description: 'pod-made IPv6 fragment', frame: ipv6Frame({ proto: 'UDP', payload: 7000, ext: ['frag'], fragOffset: 1448, more: true, seed: 18 }) },
  { description: 'pod-made IPv6 fragment after HbH', frame: ipv6Frame({ proto: 'UDP', payload: 7000, ext: ['hop', 'frag'], fragOffset: 0, more: true, seed: 19 }) },
  { description: 'non-IP frame larger than the MTU', frame: rawFrame(9000, 20) },
  { description: 'non-IP frame, small', frame: rawFrame(60, 21) },
  { description: 'truncated by a 200-byte snap length', frame: ipv4Frame({ proto: 'UDP', payload: 9000, seed: 22 }), opts: { snapLen: 200 }, cap: 200 },
  { description: 'truncated by a 3000-byte snap length', frame: ipv6Frame({ proto: 'TCP', payload: 9000, seed: 23 }), opts: { snapLen: 3000 }, cap: 3000 },
  { description: 'oversize (BIG TCP GSO frame)', frame: ipv4Frame({ proto: 'TCP', payload: 80000, seed: 24 }), cap: FRAME_MAX },
];

const IFINDEX = [12, 13, 14]; // announced with a pod, announced without, never announced
const IFNAME = ['demo/web-1', 'veth3c4d', `${SRC}/if14`];

function datagramsOf(i: number, c: Case): Datagram[] {
  return encodeFrame(c.frame, {
    instance: 7, cpu: i % 2, seq: 100 + (i >> 1), ifindex: IFINDEX[i % 3]!, toPod: i % 2 === 0,
    tstamp: MONO0 + BigInt(i) * 1000n + 123n, ...c.opts,
  }).map((buf) => ({ buf, address: SRC }));
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const orders: { description: string; arrange: (d: Datagram[]) => Datagram[]; duplicates: (n: number) => number }[] = [
  { description: 'in order', arrange: (d) => d, duplicates: () => 0 },
  { description: 'reversed', arrange: (d) => [...d].reverse(), duplicates: () => 0 },
  { description: 'shuffled', arrange: (d) => shuffle(d, 7), duplicates: () => 0 },
  { description: 'every piece twice, shuffled', arrange: (d) => shuffle([...d, ...d], 99), duplicates: (n) => n },
];

describe('round trip through the collector pipeline', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it.each(orders)('$description', async ({ description, arrange, duplicates }) => {
    const data = cases.flatMap((c, i) => datagramsOf(i, c));
    const file = join(dir, `${description.replace(/\W+/g, '-')}.pcapng`);
    const stats = await runPipeline(file, [{ buf: encodeAnnouncement(announcement), address: SRC }, ...arrange(data)]);
    expect(stats).toMatchObject({
      received: data.length + duplicates(data.length) + 1, pieces: data.length + duplicates(data.length), rebuilt: cases.length,
      lost: 0, malformed: 0, incomplete: 0, overlaps: 0, duplicates: duplicates(data.length), timestampFallback: 0,
      truncated: 3, oversize: 1,
    });

    const packets = await readCapture(file);
    expect(packets.length).toBe(cases.length);
    const byDigest = new Map(packets.map((p) => [digest(p.data), p]));
    cases.forEach((c, i) => {
      const cap = c.cap ?? c.frame.length;
      const p = byDigest.get(digest(c.frame.subarray(0, cap)));
      expect(p, `${c.description}: not in the capture byte for byte`).toBeDefined();
      expect({ len: p!.len, capLen: p!.capLen, ifName: p!.ifName, direction: p!.direction }, c.description).toEqual({
        len: c.frame.length, capLen: cap, ifName: IFNAME[i % 3], direction: i % 2 === 0 ? 1 : 2,
      });
      // node clock → wall time: REAL0 + i µs + 123 ns
      expect(p!.epoch).toBe(`1764100000.${String(i * 1000 + 123).padStart(9, '0')}`);
    });
    if (description === 'in order') expect(packets.map((p) => p.data.length)).toEqual(cases.map((c) => c.cap ?? c.frame.length));
  });

  it('VXLAN: each inner frame as it arrives, one interface per sender and VNI', async () => {
    const frames = [ipv4Frame({ proto: 'UDP', payload: 100 }), ipv6Frame({ proto: 'TCP', payload: 1200 }), rawFrame(300)];
    const data: Datagram[] = frames.flatMap((f, i) =>
      encodeFrame(f, { tunnel: 'vxlan', vni: 42 + (i % 2) }).map((buf) => ({ buf, address: i === 2 ? '198.18.0.2' : SRC })),
    );
    const file = join(dir, 'vxlan.pcapng');
    const stats = await runPipeline(file, data, { mode: 'vxlan' });
    expect(stats).toMatchObject({ received: 3, rebuilt: 3, malformed: 0 });
    const packets = await readCapture(file);
    expect(packets.map((p) => [p.ifName, p.direction, p.data.equals(frames[packets.indexOf(p)]!)])).toEqual([
      [`${SRC}/vni42`, 0, true],
      [`${SRC}/vni43`, 0, true],
      ['198.18.0.2/vni42', 0, true],
    ]);
  });

  it('VXLAN: frames the data plane split are written as the IP fragments that arrive', async () => {
    const frame = ipv4Frame({ proto: 'UDP', payload: 5000 });
    const data = encodeFrame(frame, { tunnel: 'vxlan' }).map((buf) => ({ buf, address: SRC }));
    const file = join(dir, 'vxlan-frag.pcapng');
    await runPipeline(file, data, { mode: 'vxlan' });
    const packets = await readCapture(file);
    expect(packets.length).toBe(data.length);
    // the fragments' payloads join into the original IP payload (a standard receiver reassembles them)
    expect(Buffer.concat(packets.map((p) => p.data.subarray(34))).equals(frame.subarray(34))).toBe(true);
  });
});
