import { describe, expect, it } from 'vitest';
import { encodeFrame, makePlan, pieceSizes, type EncodeOptions } from '../../helpers/encode.ts';
import { FRAME_MAX, Flag, Kind, META_LEN, MetaOff, framePrefixLen, parseTunnelDatagram, type PieceMeta } from '../../../src/wire/format.ts';
import { restorePrefix } from '../../../src/wire/restore.ts';
import { ipv4Frame, ipv6Frame, rawFrame } from './frames.ts';

type Piece = { meta: PieceMeta; inner: Buffer; protocol: number };

function pieces(frame: Buffer, opts: EncodeOptions): Piece[] {
  return encodeFrame(frame, opts).map((d) => {
    const p = parseTunnelDatagram(d, 'geneve');
    if (p.type !== 'piece') throw new Error(`encoder produced a ${p.type} datagram (${p.type === 'malformed' ? p.reason : ''})`);
    return { meta: { ...p.meta }, inner: Buffer.from(p.inner), protocol: p.protocol };
  });
}

/** Rebuild the frame the simple way: prefix of the first piece + chunks. */
function rebuild(ps: Piece[]): Buffer {
  const m = ps[0]!.meta;
  const out = Buffer.alloc(m.capLen);
  restorePrefix(ps[0]!.inner, 0, m, out, 0);
  for (const p of ps) p.inner.copy(out, p.meta.pieceOff, p.meta.hdrLen);
  return out;
}

function ipChecksumOk(b: Buffer): boolean {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

const sizes = (pieceMax: number): { pieceMax: number; chunkMax: number } => ({ pieceMax, chunkMax: (pieceMax - 34) & ~7 });

describe('piece sizes mirror bpf/include/consts.h', () => {
  it('struct pt_meta is 13 Geneve words (52 bytes), the TCP flags byte first', () => {
    expect(META_LEN).toBe(52);
    expect(MetaOff.tcpFlags).toBe(0);
    expect(MetaOff.tstamp + 8).toBe(META_LEN);
  });

  it.each([
    // PT_PIECE_MAX = MTU - outer IP - UDP 8 - base header 8 - (option header 4 + PT_META_LEN, Geneve only);
    // PT_CHUNK_MAX = (PT_PIECE_MAX - 14 - 20) & ~7
    { description: 'Geneve, outer IPv4, MTU 1500', input: { mtu: 1500 }, expected: sizes(1500 - 20 - 8 - 8 - 4 - META_LEN) },
    { description: 'Geneve, outer IPv6, MTU 1500', input: { mtu: 1500, outerV6: true }, expected: sizes(1500 - 40 - 8 - 8 - 4 - META_LEN) },
    { description: 'VXLAN, outer IPv4, MTU 1500', input: { mtu: 1500, tunnel: 'vxlan' as const }, expected: { pieceMax: 1464, chunkMax: 1424 } },
    { description: 'Geneve, outer IPv4, MTU 9000', input: { mtu: 9000 }, expected: sizes(9000 - 20 - 8 - 8 - 4 - META_LEN) },
  ])('$description', ({ input, expected }) => {
    expect(pieceSizes(input)).toEqual(expected);
  });
});

const { pieceMax: PIECE_MAX, chunkMax: CHUNK_MAX } = pieceSizes({});

describe('encoder plans like pt_plan_make', () => {
  const cases = [
    { description: 'small IPv4 frame: fast path, one piece', input: { frame: ipv4Frame({ proto: 'TCP', payload: 100 }), opts: {} }, expected: { kinds: [Kind.whole], n: 1, hdr: 0, off: 0 } },
    { description: 'fitting frame on the general path: no prefix', input: { frame: ipv4Frame({ proto: 'UDP', payload: 1000 }), opts: { fastPath: false } }, expected: { kinds: [Kind.whole], n: 1, hdr: 0, off: 0 } },
    // PIECE_MAX > CHUNK_MAX: the program copies a prefix of the difference and a CHUNK_MAX chunk
    { description: 'frame of exactly PIECE_MAX on the general path', input: { frame: ipv4Frame({ proto: 'UDP', payload: PIECE_MAX - 42 }), opts: { fastPath: false } }, expected: { kinds: [Kind.whole], n: 1, hdr: PIECE_MAX - CHUNK_MAX, off: PIECE_MAX - CHUNK_MAX } },
    { description: '65535-byte IPv4 packet', input: { frame: ipv4Frame({ proto: 'TCP', payload: 65535 - 40 }), opts: {} }, expected: { kinds: [Kind.ipv4], n: 48, hdr: 34, off: 34 } },
    { description: 'IPv4 with options', input: { frame: ipv4Frame({ proto: 'UDP', payload: 3000, options: 8 }), opts: {} }, expected: { kinds: [Kind.ipv4], n: 3, hdr: 42, off: 42 } },
    { description: 'IPv6 without extension headers', input: { frame: ipv6Frame({ proto: 'UDP', payload: 4000 }), opts: {} }, expected: { kinds: [Kind.ipv6New], n: 3, hdr: 62, off: 54 } },
    { description: 'IPv6 with HbH and Routing', input: { frame: ipv6Frame({ proto: 'UDP', payload: 4000, ext: ['hop', 'routing'] }), opts: {} }, expected: { kinds: [Kind.ipv6New], n: 4, hdr: 102, off: 94 } },
    { description: 'IPv6 Destination Options alone are fragmentable', input: { frame: ipv6Frame({ proto: 'UDP', payload: 4000, ext: ['dst'] }), opts: {} }, expected: { kinds: [Kind.ipv6New], n: 3, hdr: 62, off: 54 } },
    { description: 'IPv6 pod-made fragment', input: { frame: ipv6Frame({ proto: 'UDP', payload: 4000, ext: ['hop', 'frag'], fragOffset: 2048, more: true }), opts: {} }, expected: { kinds: [Kind.ipv6Refrag], n: 4, hdr: 78, off: 78 } },
    { description: 'non-IP frame larger than the MTU', input: { frame: rawFrame(3000), opts: {} }, expected: { kinds: [Kind.raw], n: 3, hdr: 0, off: 0 } },
  ];
  it.each(cases)('$description', ({ input, expected }) => {
    const ps = pieces(input.frame, input.opts);
    expect(ps.length).toBe(expected.n);
    expect([...new Set(ps.map((p) => p.meta.kind))]).toEqual(expected.kinds);
    expect(ps[0]!.meta.hdrLen).toBe(expected.hdr);
    expect(ps[0]!.meta.pieceOff).toBe(expected.off);
    expect(rebuild(ps).equals(input.frame)).toBe(true);
    // flags: FRAG on all pieces of a split frame, LAST on the last only
    ps.forEach((p, k) => {
      expect(p.meta.flags & Flag.frag).toBe(ps.length > 1 ? Flag.frag : 0);
      expect(p.meta.flags & Flag.last).toBe(k === ps.length - 1 ? Flag.last : 0);
    });
  });

  it('never exceeds PIECE_MAX per piece nor CHUNK_MAX per copy', () => {
    for (const mtu of [1280, 1500, 9000]) {
      const { pieceMax, chunkMax } = pieceSizes({ mtu });
      for (const f of [ipv4Frame({ proto: 'TCP', payload: 65495 }), ipv6Frame({ proto: 'UDP', payload: 65000, ext: ['hop', 'routing'] }), rawFrame(20000)]) {
        for (const p of pieces(f, { mtu })) {
          expect(p.inner.length).toBeLessThanOrEqual(pieceMax);
          expect(p.inner.length - p.meta.hdrLen).toBeLessThanOrEqual(chunkMax);
        }
      }
    }
  });

  it('gives up on a plan the program refuses (too many pieces)', () => {
    // 20 KB through 72-byte chunks (MTU 200) would need more than 128 pieces
    const frame = ipv4Frame({ proto: 'UDP', payload: 20000 });
    expect(makePlan(frame, frame.length, { mtu: 200 })).toBeUndefined();
    expect(encodeFrame(frame, { mtu: 200 })).toEqual([]);
  });
});

describe('pieces are valid inner IP fragments', () => {
  it('IPv4: fresh ID, DF dropped, offsets, MF, checksum; the original in fix[]', () => {
    const frame = ipv4Frame({ proto: 'TCP', payload: 10000, df: true, id: 0x4242 });
    const ps = pieces(frame, { seq: 0x12345, cpu: 3, id: 0x5a5a1234 });
    const payload: Buffer[] = [];
    ps.forEach((p, k) => {
      const ip = p.inner.subarray(14, 34);
      expect(ipChecksumOk(ip)).toBe(true);
      expect(ip.readUInt16BE(4)).toBe(0x1234); // the low 16 bits of pt_ids' counter
      const frag = ip.readUInt16BE(6);
      expect(frag & 0x4000).toBe(0);
      expect(frag & 0x2000).toBe(k < ps.length - 1 ? 0x2000 : 0);
      expect((frag & 0x1fff) * 8).toBe(p.meta.pieceOff - 34);
      expect(ip.readUInt16BE(2)).toBe(p.inner.length - 14);
      expect([p.meta.fix0, p.meta.fix1, p.meta.fix2, p.meta.fix3]).toEqual([frame.readUInt16BE(16), 0x4242, 0x4000, frame.readUInt16BE(24)]);
      payload.push(p.inner.subarray(34));
    });
    // what a standard receiver reassembles is the original IP payload
    expect(Buffer.concat(payload).equals(frame.subarray(34))).toBe(true);
  });

  it('IPv4 pod-made fragment keeps its ID and continues its offset and MF', () => {
    const frame = ipv4Frame({ proto: 'UDP', payload: 3000, fragOffset: 8000, more: true, id: 77 });
    const ps = pieces(frame, {});
    for (const p of ps) {
      const frag = p.inner.readUInt16BE(20);
      expect(p.inner.readUInt16BE(18)).toBe(77);
      expect(frag & 0x2000).toBe(0x2000); // the original had MF: every piece has it
      expect((frag & 0x1fff) * 8).toBe(8000 + p.meta.pieceOff - 34);
    }
  });

  it('VXLAN keeps the IPv4 ID (no collector restores it)', () => {
    const frame = ipv4Frame({ proto: 'TCP', payload: 5000, id: 0x9999 });
    const ds = encodeFrame(frame, { tunnel: 'vxlan' });
    expect(ds.length).toBeGreaterThan(1);
    for (const d of ds) expect(d.readUInt16BE(8 + 18)).toBe(0x9999);
  });

  it('IPv6 new: Fragment header after the unfragmentable part, next header 44', () => {
    const frame = ipv6Frame({ proto: 'UDP', payload: 6000, ext: ['hop', 'routing'] });
    const ps = pieces(frame, { seq: 5, cpu: 2, id: 0x2000005 });
    const unfrag = 94;
    ps.forEach((p, k) => {
      expect(p.inner[54 + 16]).toBe(44); // the Routing header's next header (HbH at 54 is 16 bytes)
      const fh = p.inner.subarray(unfrag, unfrag + 8);
      expect(fh[0]).toBe(17);
      expect(fh.readUInt16BE(2) & 1).toBe(k < ps.length - 1 ? 1 : 0);
      expect(fh.readUInt16BE(2) & 0xfff8).toBe(p.meta.pieceOff - unfrag);
      expect(fh.readUInt32BE(4)).toBe(0x2000005);
      expect(p.inner.readUInt16BE(18)).toBe(p.inner.length - 54);
    });
    expect([ps[0]!.meta.fix0, ps[0]!.meta.fix1, ps[0]!.meta.fix2]).toEqual([frame.readUInt16BE(18), 54 + 16, 17]);
    expect(framePrefixLen(ps[0]!.meta)).toBe(unfrag);
  });

  it('IPv6 refrag: the pod Fragment header carries on its offset', () => {
    const frame = ipv6Frame({ proto: 'UDP', payload: 3000, ext: ['frag'], fragOffset: 1448, more: false });
    const ps = pieces(frame, {});
    ps.forEach((p, k) => {
      const field = p.inner.readUInt16BE(54 + 2);
      expect(field & 0xfff8).toBe(1448 + p.meta.pieceOff - 62);
      expect(field & 1).toBe(k < ps.length - 1 ? 1 : 0);
      expect(p.inner.readUInt32BE(58)).toBe(0xabcdef01);
    });
    expect(ps[0]!.meta.fix1).toBe(1448);
  });
});

describe('truncation', () => {
  it.each([
    { description: 'snap length', input: { frame: ipv4Frame({ proto: 'UDP', payload: 9000 }), snapLen: 200 }, expected: { cap: 200, flags: Flag.trunc } },
    { description: 'snap length above PIECE_MAX', input: { frame: ipv4Frame({ proto: 'UDP', payload: 9000 }), snapLen: 4000 }, expected: { cap: 4000, flags: Flag.trunc } },
    { description: 'oversize (BIG TCP)', input: { frame: ipv4Frame({ proto: 'TCP', payload: 70000 }), snapLen: 0 }, expected: { cap: FRAME_MAX, flags: Flag.trunc | Flag.oversize } },
  ])('$description', ({ input, expected }) => {
    const ps = pieces(input.frame, { snapLen: input.snapLen });
    for (const p of ps) {
      expect(p.meta.capLen).toBe(expected.cap);
      expect(p.meta.origLen).toBe(input.frame.length);
      expect(p.meta.flags & (Flag.trunc | Flag.oversize)).toBe(expected.flags);
    }
    expect(rebuild(ps).equals(input.frame.subarray(0, expected.cap))).toBe(true);
  });
});
