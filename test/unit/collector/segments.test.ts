/**
 * What the kernel-segmented path sends (a TCP super-packet cut by GSO into
 * segments, kind TCP_SEG) and what a device may do to a frame sent whole
 * (fill in its offloaded checksum, flag CSUM) rebuilt byte for byte by the
 * collector; malformed segments refused with a reason; and flow buckets as
 * streams of their own.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Flag, MetaOff, parseTunnelDatagram, type MalformedReason } from '../../../src/wire/format.ts';
import { encodeFrame, encodeSegments, type SegmentOptions } from '../../helpers/encode.ts';
import { ipv4Frame, ipv6Frame } from '../wire/frames.ts';
import { readCapture, runPipeline, shuffle, tempDir, type Datagram } from './helpers.ts';

const SRC = '198.18.0.1';
const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** the Geneve header and podtap option in front of every inner frame */
const M = 8 + 4;
const INNER = M + 52;

/** A TCP super-packet: flags CWR|PSH|ACK, sequence number @seq. */
function superPacket(v6: boolean, payload: number, seq: number, seed: number): Buffer {
  const f = v6 ? ipv6Frame({ proto: 'TCP', payload, seed }) : ipv4Frame({ proto: 'TCP', payload, df: true, id: 0xfff0, seed });
  const l4 = v6 ? 54 : 34;
  f.writeUInt32BE(seq >>> 0, l4 + 4);
  f[l4 + 13] = 0x80 | 0x18;
  f.writeUInt16BE(0x1234, l4 + 16); // what the pod's kernel leaves for the device: a partial sum
  return f;
}

interface Case {
  description: string;
  frame: Buffer;
  opts: SegmentOptions;
  arrange?: (d: Buffer[]) => Buffer[];
}

const cases: Case[] = [
  { description: 'IPv4, 64 KB, 1342-byte segments, in order', frame: superPacket(false, 65160, 1000, 1), opts: { mss: 1342, seq: 1 } },
  { description: 'IPv6, 30000 bytes, reversed', frame: superPacket(true, 30000, 77, 2), opts: { mss: 1322, seq: 2 }, arrange: (d) => [...d].reverse() },
  { description: 'IPv4, sequence numbers wrapping past 2^32, shuffled', frame: superPacket(false, 20000, 0xffffe000, 3), opts: { mss: 1000, seq: 3 }, arrange: (d) => shuffle(d, 5) },
  { description: 'IPv4, one segment (the payload fits one MSS)', frame: superPacket(false, 900, 5, 4), opts: { mss: 1342, seq: 4 } },
  { description: 'IPv4, 9000-byte uplink segments, every one twice', frame: superPacket(false, 60000, 9, 5), opts: { mss: 8882, seq: 5 }, arrange: (d) => shuffle([...d, ...d], 3) },
  { description: 'IPv4 over a segmenting device that completed each TCP checksum', frame: superPacket(false, 5000, 123, 6), opts: { mss: 1342, seq: 6, tcpCheck: (i) => 0xa000 + i } },
];

describe('TCP super-packets segmented by the kernel', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it.each(cases)('$description: rebuilt byte for byte', async ({ description, frame, opts, arrange }) => {
    const segs = encodeSegments(frame, { instance: 7, cpu: 1, ...opts });
    // each segment is itself a TCP segment a standard receiver reads: its
    // own sequence number and length
    const first = parseTunnelDatagram(segs[0]!, 'geneve');
    expect(first.type).toBe('piece');
    const data: Datagram[] = (arrange ?? ((d) => d))(segs).map((buf) => ({ buf, address: SRC }));
    const file = join(dir, `${description.replace(/\W+/g, '-')}.pcapng`);
    const stats = await runPipeline(file, data);
    expect(stats).toMatchObject({ rebuilt: 1, lost: 0, malformed: 0, incomplete: 0, overlaps: 0, duplicates: data.length - segs.length });
    const [p] = await readCapture(file);
    expect(p && digest(p.data)).toBe(digest(frame));
  });

  it('a frame missing a segment is incomplete, not made up', async () => {
    const segs = encodeSegments(superPacket(false, 10000, 1, 7), { mss: 1342, seq: 1 });
    const file = join(dir, 'missing.pcapng');
    const stats = await runPipeline(file, segs.filter((_, i) => i !== 3).map((buf) => ({ buf, address: SRC })));
    expect(stats).toMatchObject({ rebuilt: 0, incomplete: 1 });
  });

  const frame = superPacket(false, 4000, 500, 8);
  const seg = encodeSegments(frame, { mss: 1342, seq: 1 })[1]!;
  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(seg);
    f(b);
    return b;
  };
  it.each<{ description: string; input: Buffer; expected: MalformedReason }>([
    { description: 'TCP header offset before the end of an IPv4 header', input: mutate((b) => b.writeUInt16BE(20, M + MetaOff.l4Off)), expected: 'bad-lengths' },
    { description: 'headers longer than the segment', input: mutate((b) => b.writeUInt16BE(b.length, M + MetaOff.hdrLen)), expected: 'bad-lengths' },
    { description: 'headers shorter than the TCP header', input: mutate((b) => b.writeUInt16BE(14 + 20 + 19, M + MetaOff.hdrLen)), expected: 'bad-lengths' },
    { description: 'a sequence number past the frame', input: mutate((b) => b.writeUInt32BE(500 + 4000, INNER + 34 + 4)), expected: 'outside-frame' },
    { description: 'a sequence number before the super-packet', input: mutate((b) => b.writeUInt32BE(499, INNER + 34 + 4)), expected: 'outside-frame' },
  ])('refuses $description ($expected)', ({ input, expected }) => {
    expect(parseTunnelDatagram(input, 'geneve')).toEqual({ type: 'malformed', reason: expected });
  });
});

/** The datagram of a frame sent whole whose checksum field (2 or 4 bytes at
 * @at) a device then filled in with @completed. */
function wholeCompleted(frame: Buffer, at: number, completed: Buffer): Buffer {
  const [d] = encodeFrame(frame, { instance: 7, seq: 9 });
  const b = Buffer.from(d!);
  b[M + MetaOff.flags] = b[M + MetaOff.flags]! | Flag.csum;
  b.writeUInt16BE(at, M + MetaOff.fix);
  frame.copy(b, M + MetaOff.fix + 2, at, at + completed.length);
  b.writeUInt16BE(completed.length, M + MetaOff.fix + 6);
  completed.copy(b, INNER + at);
  return b;
}

describe('frames sent whole whose offloaded checksum a device completed', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it.each([
    { description: 'TCP (2 bytes)', input: { frame: ipv4Frame({ proto: 'TCP', payload: 1000, seed: 9 }), at: 34 + 16, completed: Buffer.from([0xbe, 0xef]) } },
    { description: 'UDP over IPv6 (2 bytes)', input: { frame: ipv6Frame({ proto: 'UDP', payload: 500, seed: 10 }), at: 54 + 6, completed: Buffer.from([0x12, 0x34]) } },
    { description: 'SCTP CRC32c (4 bytes)', input: { frame: ipv4Frame({ proto: 'UDP', payload: 300, seed: 11 }), at: 34 + 8, completed: Buffer.from([1, 2, 3, 4]) } },
  ])('$description: the original bytes are put back', async ({ description, input }) => {
    const file = join(dir, `${description.replace(/\W+/g, '-')}.pcapng`);
    const stats = await runPipeline(file, [{ buf: wholeCompleted(input.frame, input.at, input.completed), address: SRC }]);
    expect(stats).toMatchObject({ rebuilt: 1, malformed: 0 });
    const [p] = await readCapture(file);
    expect(p && digest(p.data)).toBe(digest(input.frame));
  });

  it.each([
    { description: 'a field past the frame', input: (b: Buffer) => b.writeUInt16BE(b.length - INNER - 1, M + MetaOff.fix) },
    { description: 'a field length of 3', input: (b: Buffer) => b.writeUInt16BE(3, M + MetaOff.fix + 6) },
  ])('refuses $description (bad-lengths)', ({ input }) => {
    const b = wholeCompleted(ipv4Frame({ proto: 'TCP', payload: 100, seed: 12 }), 50, Buffer.from([9, 9]));
    input(b);
    expect(parseTunnelDatagram(b, 'geneve')).toEqual({ type: 'malformed', reason: 'bad-lengths' });
  });
});

describe('flow buckets', () => {
  it('are streams of their own: numbers of one bucket are no gaps in another', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const data: Datagram[] = [];
      // two buckets of one CPU, each numbering its frames 0, 1, 2, … interleaved
      for (let i = 0; i < 40; i++) {
        for (const flow of [3, 11]) {
          data.push(...encodeFrame(ipv4Frame({ proto: 'UDP', payload: 100, seed: i * 2 + flow }), { instance: 7, cpu: 0, flow, seq: i }).map((buf) => ({ buf, address: SRC })));
        }
      }
      const stats = await runPipeline(join(dir, 'flows.pcapng'), data);
      expect(stats).toMatchObject({ rebuilt: 80, lost: 0, duplicates: 0, restarts: 0, streams: 2 });
    } finally {
      await cleanup();
    }
  });
});
