/**
 * podtap's tunnel format, receiving half. bpf/include/wire.h and consts.h are
 * the authority; this file mirrors their constants and parses one UDP payload
 * (Geneve or VXLAN) without allocating, so the collector can run it per packet.
 * The sending half is the data plane (bpf/include/frag.h; mirrored in
 * TypeScript for tests in test/helpers/encode.ts), announcements
 * src/wire/announce.ts; docs/wire-format.md
 * has the prose.
 */

import { FRAME_MAX, IPV6_HLEN, META_LEN, PREFIX_MAX, TUNNELS, TUN_BASE_LEN } from './sizes.ts';

// The sizes are declared once, in sizes.ts.
export { ETH_HLEN, FRAME_MAX, IP_MAX, IPV4_HLEN_MAX, IPV6_EXT_MAX, IPV6_HLEN, META_LEN, PIECES_MAX, PREFIX_MAX } from './sizes.ts';
export const GENEVE_PORT = TUNNELS.Geneve.port;
export const VXLAN_PORT = TUNNELS.VXLAN.port;

/** Geneve option class of podtap (RFC 8926 §7.2 experimental range) and types. */
export const OPT_CLASS = 0xff70;
export const OPT_TYPE_META = 0x01;
export const OPT_TYPE_ANNOUNCE = 0x02;
export const META_VERSION = 1;
/** Byte offsets of struct pt_meta's fields (bpf/include/wire.h). */
export const MetaOff = {
  csumSink: 0, // scratch a device may write (checksum offload steering): ignored
  version: 2,
  flags: 3,
  kind: 4,
  cpu: 6,
  instance: 8,
  seq: 12,
  ifindex: 16,
  origLen: 20,
  capLen: 24,
  pieceOff: 28,
  hdrLen: 32,
  l3Off: 34,
  fix: 36,
  tstamp: 44,
} as const;
/** Version of the announcement option: 2 = authenticated envelope (announce.ts; 1 carried a bearer token and is refused). */
export const ANNOUNCE_OPT_VERSION = 2;

/** Geneve protocol types of the inner payload. */
export const GENEVE_PROTO_ETH = 0x6558;
export const GENEVE_PROTO_RAW = 0x88b5;
/** Control messages (O bit set): an announcement, JSON payload. */
export const GENEVE_PROTO_ANNOUNCE = 0x88b6;

export const GENEVE_BASE_LEN = TUN_BASE_LEN;
export const VXLAN_LEN = TUN_BASE_LEN;
export const VXLAN_FLAG_I = 0x08;

/** pt_meta.flags */
export const Flag = {
  toPod: 0x01,
  trunc: 0x02,
  oversize: 0x04,
  frag: 0x08,
  last: 0x10,
} as const;

/** pt_meta.kind */
export const Kind = {
  whole: 0,
  ipv4: 1,
  ipv6New: 2,
  ipv6Refrag: 3,
  raw: 4,
} as const;
export type KindValue = (typeof Kind)[keyof typeof Kind];

export const IPV6_FRAG_HLEN = 8;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const NH_HOPOPTS = 0;
export const NH_ROUTING = 43;
export const NH_FRAGMENT = 44;
export const NH_DSTOPTS = 60;

export type TunnelMode = 'geneve' | 'vxlan';

/**
 * Why a datagram was dropped. Stable strings: they are metric label values.
 */
export const MALFORMED_REASONS = [
  'short', // shorter than the tunnel header
  'bad-version', // Geneve version other than 0
  'vxlan-flags', // VXLAN without the I flag
  'bad-options', // Geneve options overrun the datagram or a TLV is cut
  'critical-option', // an unknown option marked critical (RFC 8926 §3.5)
  'unknown-protocol', // Geneve data with a protocol type we do not carry
  'no-meta', // Geneve data without podtap's metadata option
  'meta-length', // podtap's option with the wrong length
  'meta-version', // pt_meta.version we do not know
  'unknown-kind', // pt_meta.kind we do not know
  'protocol-mismatch', // RAW chunk with the Ethernet protocol type or the reverse
  'bad-lengths', // cap_len/orig_len/hdr_len/l3_off/fix contradict each other or the datagram
  'outside-frame', // a chunk that does not lie inside [prefix, cap_len)
  'inconsistent', // a piece contradicting the other pieces of its frame
  'unknown-control', // control message (O bit) we do not know
  'bad-announcement', // announcement whose envelope or JSON does not validate, or names another node than its key
  'unauthenticated', // announcement without a MAC where the collector requires one
  'bad-mac', // announcement whose MAC does not verify under its node's key (forged, altered, wrong key)
  'stale', // announcement whose time is outside the window (a late replay, or a clock far off)
  'replayed', // announcement whose nonce was seen already
  'wrong-source', // announcement sent from another address than the one it names
  'not-assigned', // announcement for a (namespace, policy, node) the controller did not assign to this collector
  'unannounced', // data of a stream no admitted announcement covers (secret set)
  'too-many', // a state limit (sources, streams, interfaces, nonces) was reached
] as const;
export type MalformedReason = (typeof MALFORMED_REASONS)[number];

/** struct pt_meta, decoded. tstamp is split in 32-bit halves (exact, no BigInt). */
export interface PieceMeta {
  version: number;
  flags: number;
  kind: number;
  cpu: number;
  instance: number;
  seq: number;
  ifindex: number;
  origLen: number;
  capLen: number;
  pieceOff: number;
  hdrLen: number;
  l3Off: number;
  fix0: number;
  fix1: number;
  fix2: number;
  fix3: number;
  tstampHi: number;
  tstampLo: number;
}

export function emptyMeta(): PieceMeta {
  return {
    version: 0, flags: 0, kind: 0, cpu: 0, instance: 0, seq: 0, ifindex: 0, origLen: 0, capLen: 0,
    pieceOff: 0, hdrLen: 0, l3Off: 0, fix0: 0, fix1: 0, fix2: 0, fix3: 0, tstampHi: 0, tstampLo: 0,
  };
}

/** Bytes of the original frame a piece's header prefix restores to. */
export function framePrefixLen(meta: Pick<PieceMeta, 'kind' | 'hdrLen'>): number {
  return meta.kind === Kind.ipv6New ? meta.hdrLen - IPV6_FRAG_HLEN : meta.hdrLen;
}

export type DatagramType = 'piece' | 'announce' | 'vxlan' | 'malformed';

/**
 * The result of parsing one datagram, filled in place by parseDatagramInto so
 * the collector reuses one object. Offsets point into the parsed buffer.
 */
export interface ParsedDatagram {
  type: DatagramType;
  /** set when type is 'malformed' */
  reason: MalformedReason | undefined;
  /** Geneve protocol type (0 for VXLAN) */
  protocol: number;
  vni: number;
  /** set when type is 'piece' */
  meta: PieceMeta;
  /** inner payload: the piece's inner frame, the VXLAN frame, or the announcement JSON */
  innerOff: number;
  innerLen: number;
}

export function emptyParsed(): ParsedDatagram {
  return { type: 'malformed', reason: undefined, protocol: 0, vni: 0, meta: emptyMeta(), innerOff: 0, innerLen: 0 };
}

function bad(out: ParsedDatagram, reason: MalformedReason): DatagramType {
  out.type = 'malformed';
  out.reason = reason;
  return 'malformed';
}

/**
 * Parse one UDP payload. Never throws on bad input: a malformed datagram
 * yields type 'malformed' and a reason. In VXLAN mode a Geneve control
 * message (an announcement) is still recognised: its first byte (Geneve
 * version 0, option length) can never carry VXLAN's I flag alone.
 */
export function parseDatagramInto(buf: Buffer, mode: TunnelMode, out: ParsedDatagram): DatagramType {
  out.reason = undefined;
  out.protocol = 0;
  out.vni = 0;
  out.innerOff = 0;
  out.innerLen = 0;
  if (buf.length < GENEVE_BASE_LEN) return bad(out, 'short');
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  if (mode === 'vxlan' && !(b1 & 0x80 && b0 >> 6 === 0 && b0 !== VXLAN_FLAG_I)) {
    if (!(b0 & VXLAN_FLAG_I)) return bad(out, 'vxlan-flags');
    out.type = 'vxlan';
    out.vni = (buf[4]! << 16) | (buf[5]! << 8) | buf[6]!;
    out.innerOff = VXLAN_LEN;
    out.innerLen = buf.length - VXLAN_LEN;
    return 'vxlan';
  }
  return parseGeneve(buf, out);
}

function parseGeneve(buf: Buffer, out: ParsedDatagram): DatagramType {
  const b0 = buf[0]!;
  if (b0 >> 6 !== 0) return bad(out, 'bad-version');
  const optLen = (b0 & 0x3f) * 4;
  const control = (buf[1]! & 0x80) !== 0;
  const critical = (buf[1]! & 0x40) !== 0;
  const protocol = buf.readUInt16BE(2);
  out.protocol = protocol;
  out.vni = (buf[4]! << 16) | (buf[5]! << 8) | buf[6]!;
  const end = GENEVE_BASE_LEN + optLen;
  if (end > buf.length) return bad(out, 'bad-options');

  // walk the option TLVs: find ours, refuse unknown critical ones
  let metaAt = -1;
  let metaLen = 0;
  let annAt = -1;
  let annLen = 0;
  for (let at = GENEVE_BASE_LEN; at < end; ) {
    if (at + 4 > end) return bad(out, 'bad-options');
    const cls = buf.readUInt16BE(at);
    const type = buf[at + 2]!;
    const len = (buf[at + 3]! & 0x1f) * 4;
    if (at + 4 + len > end) return bad(out, 'bad-options');
    if (cls === OPT_CLASS && type === OPT_TYPE_META) {
      metaAt = at + 4;
      metaLen = len;
    } else if (cls === OPT_CLASS && type === OPT_TYPE_ANNOUNCE) {
      annAt = at + 4;
      annLen = len;
    } else if (critical && type & 0x80) {
      return bad(out, 'critical-option');
    }
    at += 4 + len;
  }
  out.innerOff = end;
  out.innerLen = buf.length - end;

  if (control) {
    if (protocol !== GENEVE_PROTO_ANNOUNCE || annAt < 0) return bad(out, 'unknown-control');
    if (annLen < 4 || buf[annAt] !== ANNOUNCE_OPT_VERSION) return bad(out, 'bad-announcement');
    out.type = 'announce';
    return 'announce';
  }
  if (protocol !== GENEVE_PROTO_ETH && protocol !== GENEVE_PROTO_RAW) return bad(out, 'unknown-protocol');
  if (metaAt < 0) return bad(out, 'no-meta');
  if (metaLen !== META_LEN) return bad(out, 'meta-length');
  const m = out.meta;
  m.version = buf[metaAt + MetaOff.version]!;
  if (m.version !== META_VERSION) return bad(out, 'meta-version');
  m.flags = buf[metaAt + MetaOff.flags]!;
  m.kind = buf[metaAt + MetaOff.kind]!;
  m.cpu = buf.readUInt16BE(metaAt + MetaOff.cpu);
  m.instance = buf.readUInt16BE(metaAt + MetaOff.instance);
  m.seq = buf.readUInt32BE(metaAt + MetaOff.seq);
  m.ifindex = buf.readUInt32BE(metaAt + MetaOff.ifindex);
  m.origLen = buf.readUInt32BE(metaAt + MetaOff.origLen);
  m.capLen = buf.readUInt32BE(metaAt + MetaOff.capLen);
  m.pieceOff = buf.readUInt32BE(metaAt + MetaOff.pieceOff);
  m.hdrLen = buf.readUInt16BE(metaAt + MetaOff.hdrLen);
  m.l3Off = buf.readUInt16BE(metaAt + MetaOff.l3Off);
  m.fix0 = buf.readUInt16BE(metaAt + MetaOff.fix);
  m.fix1 = buf.readUInt16BE(metaAt + MetaOff.fix + 2);
  m.fix2 = buf.readUInt16BE(metaAt + MetaOff.fix + 4);
  m.fix3 = buf.readUInt16BE(metaAt + MetaOff.fix + 6);
  m.tstampHi = buf.readUInt32BE(metaAt + MetaOff.tstamp);
  m.tstampLo = buf.readUInt32BE(metaAt + MetaOff.tstamp + 4);
  if (m.kind > Kind.raw) return bad(out, 'unknown-kind');
  if ((m.kind === Kind.raw) !== (protocol === GENEVE_PROTO_RAW)) return bad(out, 'protocol-mismatch');
  const reason = checkPiece(m, out.innerLen);
  if (reason) return bad(out, reason);
  out.type = 'piece';
  return 'piece';
}

/** Stateless consistency of one piece's metadata with its own datagram. */
function checkPiece(m: PieceMeta, innerLen: number): MalformedReason | undefined {
  if (m.capLen < 1 || m.capLen > m.origLen || m.capLen > FRAME_MAX) return 'bad-lengths';
  if (m.hdrLen > innerLen || m.hdrLen > PREFIX_MAX + IPV6_FRAG_HLEN) return 'bad-lengths';
  switch (m.kind) {
    case Kind.raw:
      if (m.hdrLen !== 0) return 'bad-lengths';
      break;
    case Kind.ipv4:
      if (m.hdrLen < m.l3Off + 20) return 'bad-lengths';
      break;
    case Kind.ipv6New:
      // the prefix ends with our 8-byte Fragment header; the changed
      // next-header byte lies in the IPv6 header or an extension before it
      if (m.hdrLen < m.l3Off + IPV6_HLEN + IPV6_FRAG_HLEN) return 'bad-lengths';
      if (m.fix1 < m.l3Off + 6 || m.fix1 >= m.hdrLen - IPV6_FRAG_HLEN || m.fix2 > 0xff) return 'bad-lengths';
      break;
    case Kind.ipv6Refrag:
      if (m.hdrLen < m.l3Off + IPV6_HLEN + IPV6_FRAG_HLEN) return 'bad-lengths';
      break;
  }
  const chunk = innerLen - m.hdrLen;
  const prefix = framePrefixLen(m);
  if (prefix > m.capLen) return 'bad-lengths';
  if (m.kind === Kind.whole) {
    // one piece carrying the whole captured frame
    if (m.pieceOff !== m.hdrLen || m.hdrLen + chunk !== m.capLen) return 'outside-frame';
  } else if (m.pieceOff < prefix || m.pieceOff + chunk > m.capLen) {
    return 'outside-frame';
  }
  return undefined;
}

export type ParseResult =
  | { type: 'piece'; meta: PieceMeta; tstamp: bigint; protocol: number; vni: number; inner: Buffer }
  | { type: 'announce'; vni: number; payload: Buffer }
  | { type: 'vxlan'; vni: number; inner: Buffer }
  | { type: 'malformed'; reason: MalformedReason };

/** Convenience form of parseDatagramInto (allocates; for tests and tools). */
export function parseTunnelDatagram(buf: Buffer, mode: TunnelMode): ParseResult {
  const p = emptyParsed();
  const inner = (): Buffer => buf.subarray(p.innerOff, p.innerOff + p.innerLen);
  switch (parseDatagramInto(buf, mode, p)) {
    case 'piece':
      return {
        type: 'piece',
        meta: p.meta,
        tstamp: (BigInt(p.meta.tstampHi) << 32n) | BigInt(p.meta.tstampLo),
        protocol: p.protocol,
        vni: p.vni,
        inner: inner(),
      };
    case 'announce':
      return { type: 'announce', vni: p.vni, payload: inner() };
    case 'vxlan':
      return { type: 'vxlan', vni: p.vni, inner: inner() };
    default:
      return { type: 'malformed', reason: p.reason ?? 'short' };
  }
}
