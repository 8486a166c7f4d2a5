/**
 * The sending half of the wire format in TypeScript: cuts a frame into the
 * same pieces the data plane's pt_tunnel program sends (pt_plan_make,
 * pt_piece and pt_piece_ip in bpf/include/frag.h). Used by the tests and the
 * benchmark's traffic generator, never shipped (nothing in src/ sends
 * pieces: the data plane does); the BPF program stays the authority, and a
 * change there must be mirrored here.
 */
import {
  ETH_HLEN,
  ETH_P_IP,
  ETH_P_IPV6,
  FRAME_MAX,
  Flag,
  GENEVE_BASE_LEN,
  GENEVE_PROTO_ETH,
  GENEVE_PROTO_RAW,
  IPV4_HLEN_MAX,
  IPV6_EXT_MAX,
  IPV6_FRAG_HLEN,
  Kind,
  META_LEN,
  MetaOff,
  META_VERSION,
  NH_DSTOPTS,
  NH_FRAGMENT,
  NH_HOPOPTS,
  NH_ROUTING,
  OPT_CLASS,
  OPT_TYPE_META,
  PIECES_MAX,
  PREFIX_MAX,
  VXLAN_FLAG_I,
  VXLAN_LEN,
  type TunnelMode,
} from '../../src/wire/format.ts';
import { chunkMax, pieceMax } from '../../src/wire/sizes.ts';

export interface EncodeOptions {
  /** L3 MTU of the path to the collector (PT_MTU). */
  mtu?: number;
  /** Outer IPv6 (PT_OUTER_V6): 20 more bytes of outer header, no fast path. */
  outerV6?: boolean;
  tunnel?: TunnelMode;
  vni?: number;
  instance?: number;
  cpu?: number;
  seq?: number;
  ifindex?: number;
  /** Taken at the veth's egress (towards the pod). */
  toPod?: boolean;
  /** CLOCK_MONOTONIC ns of the capture. */
  tstamp?: bigint;
  /** PT_SNAPLEN; 0 = whole frames. */
  snapLen?: number;
  /**
   * Whether the program would take its in-place fast path for a frame that
   * fits (outer IPv4, no checksum offload, no GSO): pieces then carry
   * hdr_len 0 and piece_off 0. Default true.
   */
  fastPath?: boolean;
}

/** How pt_plan_make decided to cut a frame (struct pt_plan). */
export interface Plan {
  kind: number;
  cap: number;
  dataStart: number;
  chunk: number;
  npieces: number;
  prefix: number;
  hdr: number;
  nhOff: number;
  fhOff: number;
  fragBase: number;
  fragId: number;
  ipId: number;
  fragMore: boolean;
  fix: [number, number, number, number];
  protocol: number;
}

/** PT_PIECE_MAX and PT_CHUNK_MAX for these options (the arithmetic is sizes.ts'). */
export function pieceSizes(o: { mtu?: number; outerV6?: boolean; tunnel?: TunnelMode }): { pieceMax: number; chunkMax: number } {
  const p = { mtu: o.mtu ?? 1500, outerV6: o.outerV6 ?? false, tunnel: o.tunnel === 'vxlan' ? 'VXLAN' : 'Geneve' } as const;
  return { pieceMax: pieceMax(p), chunkMax: chunkMax(p) };
}

/** The scratch cache as pt_c8() sees it: nothing past PT_PREFIX_MAX + 8. */
function c8(frame: Buffer, cap: number, off: number): number {
  if (off >= PREFIX_MAX + 8 || off >= cap) return 0;
  return frame[off]!;
}
function c16(frame: Buffer, cap: number, off: number): number {
  return (c8(frame, cap, off) << 8) | c8(frame, cap, off + 1);
}

/** pt_plan_make(); undefined where the program gives up (PT_C_SHAPE_ERR). */
export function makePlan(frame: Buffer, cap: number, opts: EncodeOptions): Plan | undefined {
  const { pieceMax, chunkMax } = pieceSizes(opts);
  const seq = (opts.seq ?? 0) >>> 0;
  const cpu = opts.cpu ?? 0;
  const p: Plan = {
    kind: Kind.raw, cap, dataStart: 0, chunk: 0, npieces: 0, prefix: 0, hdr: 0, nhOff: 0, fhOff: 0,
    fragBase: 0, fragId: 0, ipId: 0, fragMore: false, fix: [0, 0, 0, 0], protocol: GENEVE_PROTO_ETH,
  };
  const proto = cap >= ETH_HLEN ? c16(frame, cap, 12) : 0;

  if (cap <= pieceMax) {
    p.kind = Kind.whole;
    p.prefix = cap > chunkMax ? cap - chunkMax : 0;
    p.hdr = p.prefix;
    p.dataStart = p.prefix;
    p.chunk = cap - p.prefix;
    p.npieces = 1;
    return p;
  }

  if (proto === ETH_P_IP && cap >= ETH_HLEN + 20) {
    const ihl = (c8(frame, cap, ETH_HLEN) & 0xf) * 4;
    const frag = c16(frame, cap, ETH_HLEN + 6);
    if (c8(frame, cap, ETH_HLEN) >> 4 === 4 && ihl >= 20 && cap >= ETH_HLEN + ihl) {
      p.kind = Kind.ipv4;
      p.prefix = ETH_HLEN + ihl;
      p.hdr = p.prefix;
      p.fix = [c16(frame, cap, ETH_HLEN + 2), c16(frame, cap, ETH_HLEN + 4), frag, c16(frame, cap, ETH_HLEN + 10)];
      p.fragBase = (frag & 0x1fff) * 8;
      p.fragMore = (frag & 0x2000) !== 0;
      p.ipId = p.fix[1];
      // a fresh identification for frames we split (Geneve only)
      if (opts.tunnel !== 'vxlan' && !p.fragBase && !p.fragMore) p.ipId = (seq ^ (cpu << 12)) & 0xffff;
    }
  } else if (proto === ETH_P_IPV6 && cap >= ETH_HLEN + 40) {
    let off = ETH_HLEN + 40;
    let nhOff = ETH_HLEN + 6;
    let nh = c8(frame, cap, nhOff);
    let refrag = false;
    for (let i = 0; i < IPV6_EXT_MAX; i++) {
      if (nh === NH_FRAGMENT) {
        refrag = true;
        break;
      }
      if (nh !== NH_HOPOPTS && nh !== NH_ROUTING && !(nh === NH_DSTOPTS && c8(frame, cap, off) === NH_ROUTING)) break;
      if (off + 8 > cap) break;
      nhOff = off;
      nh = c8(frame, cap, off);
      off += (c8(frame, cap, off + 1) + 1) * 8;
    }
    if (refrag && off + 8 <= cap && off <= PREFIX_MAX - 8) {
      const field = c16(frame, cap, off + 2);
      p.kind = Kind.ipv6Refrag;
      p.fhOff = off;
      p.prefix = off + 8;
      p.hdr = p.prefix;
      p.fix = [c16(frame, cap, ETH_HLEN + 4), field, 0, 0];
      p.fragBase = field & 0xfff8;
      p.fragMore = (field & 1) !== 0;
    } else if (!refrag && off <= cap && off <= PREFIX_MAX - 8) {
      p.kind = Kind.ipv6New;
      p.fhOff = off;
      p.nhOff = nhOff;
      p.prefix = off;
      p.hdr = off + IPV6_FRAG_HLEN;
      p.fix = [c16(frame, cap, ETH_HLEN + 4), nhOff, c8(frame, cap, nhOff), 0];
      p.fragId = ((cpu << 24) ^ seq) >>> 0;
    }
  }

  if (p.kind === Kind.raw) {
    if (opts.tunnel === 'vxlan') {
      // VXLAN carries Ethernet frames only: what fits, cut
      p.kind = Kind.whole;
      p.cap = pieceMax;
      p.prefix = pieceMax - chunkMax;
      p.hdr = p.prefix;
      p.dataStart = p.prefix;
      p.chunk = chunkMax;
      p.npieces = 1;
      return p;
    }
    p.protocol = GENEVE_PROTO_RAW;
    p.chunk = chunkMax;
  } else {
    p.dataStart = p.prefix;
    p.chunk = (pieceMax - p.hdr) & ~7;
  }
  if (p.chunk < 8 || p.chunk > chunkMax) return undefined;
  p.npieces = Math.ceil((p.cap - p.dataStart) / p.chunk);
  if (p.npieces < 1 || p.npieces > PIECES_MAX) return undefined;
  return p;
}

function ipChecksum(b: Buffer, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i < len; i += 2) sum += (b[off + i]! << 8) | (b[off + i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** pt_piece_ip(): adjust the prefix of piece k (chunk of n bytes) in place. */
function adjustPrefix(inner: Buffer, p: Plan, k: number, n: number, last: boolean): void {
  const off = k * p.chunk;
  const more = !last || p.fragMore;
  if (p.kind === Kind.ipv4) {
    const ihl = p.prefix - ETH_HLEN;
    if (ihl > IPV4_HLEN_MAX) throw new RangeError('IPv4 header longer than 60 bytes');
    inner.writeUInt16BE(ihl + n, ETH_HLEN + 2);
    inner.writeUInt16BE(p.ipId, ETH_HLEN + 4);
    inner.writeUInt16BE((p.fix[2] & 0x8000) | (((p.fragBase + off) >>> 3) & 0x1fff) | (more ? 0x2000 : 0), ETH_HLEN + 6);
    inner.writeUInt16BE(0, ETH_HLEN + 10);
    inner.writeUInt16BE(ipChecksum(inner, ETH_HLEN, ihl), ETH_HLEN + 10);
  } else if (p.kind === Kind.ipv6New) {
    inner.writeUInt16BE((p.hdr - ETH_HLEN - 40 + n) & 0xffff, ETH_HLEN + 4);
    inner[p.nhOff] = NH_FRAGMENT;
    inner[p.fhOff] = p.fix[2];
    inner[p.fhOff + 1] = 0;
    inner.writeUInt16BE((off & 0xfff8) | (more ? 1 : 0), p.fhOff + 2);
    inner.writeUInt32BE(p.fragId, p.fhOff + 4);
  } else if (p.kind === Kind.ipv6Refrag) {
    inner.writeUInt16BE((p.hdr - ETH_HLEN - 40 + n) & 0xffff, ETH_HLEN + 4);
    inner.writeUInt16BE(((p.fragBase + off) & 0xfff8) | (more ? 1 : 0), p.fhOff + 2);
  }
}

interface Header {
  flags: number;
  kind: number;
  cap: number;
  origLen: number;
  pieceOff: number;
  hdrLen: number;
  fix: readonly number[];
  protocol: number;
}

function tunnelHeader(opts: EncodeOptions, h: Header): Buffer {
  const vni = (opts.vni ?? 0) & 0xffffff;
  if (opts.tunnel === 'vxlan') {
    const b = Buffer.alloc(VXLAN_LEN);
    b[0] = VXLAN_FLAG_I;
    b.writeUIntBE(vni, 4, 3);
    return b;
  }
  const b = Buffer.alloc(GENEVE_BASE_LEN + 4 + META_LEN);
  b[0] = (4 + META_LEN) / 4;
  b.writeUInt16BE(h.protocol, 2);
  b.writeUIntBE(vni, 4, 3);
  b.writeUInt16BE(OPT_CLASS, 8);
  b[10] = OPT_TYPE_META;
  b[11] = META_LEN / 4;
  const m = 12;
  b[m + MetaOff.version] = META_VERSION;
  b[m + MetaOff.flags] = h.flags;
  b[m + MetaOff.kind] = h.kind;
  b.writeUInt16BE((opts.cpu ?? 0) & 0xffff, m + MetaOff.cpu);
  b.writeUInt16BE((opts.instance ?? 0) & 0xffff, m + MetaOff.instance);
  b.writeUInt32BE((opts.seq ?? 0) >>> 0, m + MetaOff.seq);
  b.writeUInt32BE((opts.ifindex ?? 0) >>> 0, m + MetaOff.ifindex);
  b.writeUInt32BE(h.origLen, m + MetaOff.origLen);
  b.writeUInt32BE(h.cap, m + MetaOff.capLen);
  b.writeUInt32BE(h.pieceOff, m + MetaOff.pieceOff);
  b.writeUInt16BE(h.hdrLen, m + MetaOff.hdrLen);
  b.writeUInt16BE(ETH_HLEN, m + MetaOff.l3Off);
  for (let i = 0; i < 4; i++) b.writeUInt16BE(h.fix[i]!, m + MetaOff.fix + 2 * i);
  b.writeBigUInt64BE(BigInt.asUintN(64, opts.tstamp ?? 0n), m + MetaOff.tstamp);
  return b;
}

/**
 * The UDP payloads pt_tunnel sends for one frame seen on a tapped veth
 * (frame = the skb's bytes, its length = orig_len). Empty when the program
 * would give up on the frame (it still consumes the sequence number).
 */
export function encodeFrame(frame: Buffer, opts: EncodeOptions = {}): Buffer[] {
  const len = frame.length;
  let cap = len;
  let flags = opts.toPod ? Flag.toPod : 0;
  if (cap > FRAME_MAX) {
    cap = FRAME_MAX;
    flags |= Flag.oversize | Flag.trunc;
  }
  const snap = opts.snapLen ?? 0;
  if (snap && cap > snap) {
    cap = snap;
    flags |= Flag.trunc;
  }
  const { pieceMax } = pieceSizes(opts);
  if ((opts.fastPath ?? true) && !opts.outerV6 && cap === len && len <= pieceMax) {
    const h = { flags: flags | Flag.last, kind: Kind.whole, cap, origLen: len, pieceOff: 0, hdrLen: 0, fix: [0, 0, 0, 0], protocol: GENEVE_PROTO_ETH };
    return [Buffer.concat([tunnelHeader(opts, h), frame])];
  }

  const p = makePlan(frame, cap, opts);
  if (!p) return [];
  const out: Buffer[] = [];
  for (let k = 0; k < p.npieces; k++) {
    const src = p.dataStart + k * p.chunk;
    const n = Math.min(p.cap - src, p.chunk);
    const last = k + 1 === p.npieces;
    const inner = Buffer.alloc(p.hdr + n);
    frame.copy(inner, 0, 0, p.prefix);
    adjustPrefix(inner, p, k, n, last);
    frame.copy(inner, p.hdr, src, src + n);
    const h: Header = {
      flags: flags | (p.npieces > 1 ? Flag.frag : 0) | (last ? Flag.last : 0),
      kind: p.kind,
      cap: p.cap,
      origLen: len,
      pieceOff: src,
      hdrLen: p.hdr,
      fix: p.fix,
      protocol: p.protocol,
    };
    out.push(Buffer.concat([tunnelHeader(opts, h), inner]));
  }
  return out;
}
