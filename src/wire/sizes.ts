/**
 * The wire arithmetic, once: header lengths, the largest frame, the tunnels
 * and their ports, the MTU bounds, and how a frame is cut into pieces. The
 * data plane sizes its scratch cache here (src/datapath/config.ts passes it
 * with -D), the collector and the test encoder take their lengths from here,
 * and the API its MTU bounds and default ports.
 *
 * bpf/include/consts.h and wire.h hold the same facts for the C side;
 * test/unit/wire/sizes.test.ts preprocesses and compiles those headers with
 * clang and fails when the two disagree, and a kernel test proves the verifier
 * accepts exactly cacheValueSize() and refuses one byte less.
 */

/** Ethernet header of pod frames (veths carry no VLAN tag). PT_ETH_HLEN */
export const ETH_HLEN = 14;
/** Largest IPv4 packet, or IPv6 payload plus header, the data plane copies. PT_IP_MAX */
export const IP_MAX = 65535;
/** Largest frame the data plane carries: a 65535-byte IP packet and its L2 header. PT_FRAME_MAX */
export const FRAME_MAX = IP_MAX + ETH_HLEN;
/** IPv4 header with IHL 15. PT_IPV4_HLEN_MAX */
export const IPV4_HLEN_MAX = 60;
/** Smallest IPv4 header (IHL 5). */
export const IPV4_HLEN = 20;
/** Fixed IPv6 header. */
export const IPV6_HLEN = 40;
/** IPv6 extension headers walked to find the unfragmentable part. PT_IPV6_EXT_MAX */
export const IPV6_EXT_MAX = 4;
/** Longest inner header prefix copied into each piece. PT_PREFIX_MAX */
export const PREFIX_MAX = 256;
/** Most pieces one frame can need (bounded by the program's bpf_loop). PT_PIECES_MAX */
export const PIECES_MAX = 128;
/** UDP header. PT_UDP_LEN */
export const UDP_LEN = 8;
/** Geneve fixed header and VXLAN header: both 8 bytes. PT_TUN_BASE_LEN */
export const TUN_BASE_LEN = 8;
/** A Geneve option's own header (class, type, length). */
export const OPT_HDR_LEN = 4;
/** sizeof(struct pt_meta) (bpf/include/wire.h): 13 Geneve words. PT_META_LEN */
export const META_LEN = 52;
/** Smallest inner header prefix a piece carries: Ethernet and a 20-byte IPv4 header. */
export const MIN_INNER_PREFIX = ETH_HLEN + IPV4_HLEN;

/**
 * The tunnels: the id the program is compiled with (PT_TUNNEL), the IANA
 * UDP port (PT_TUNNEL_PORT's default), and the option bytes each outer packet
 * carries (Geneve: podtap's metadata option; VXLAN: none).
 */
export const TUNNELS = {
  Geneve: { id: 1, port: 6081, optLen: OPT_HDR_LEN + META_LEN },
  VXLAN: { id: 2, port: 4789, optLen: 0 },
} as const;
export type TunnelKind = keyof typeof TUNNELS;
export const TUNNEL_KINDS = Object.keys(TUNNELS) as TunnelKind[];

/**
 * Outer MTU bounds. 1280: IPv6's minimum link MTU, and room for a piece with
 * the longest header prefix. 9216: the largest jumbo frame; the scratch
 * cache's value (cacheValueSize) grows with the MTU.
 */
export const MTU_MIN = 1280;
export const MTU_MAX = 9216;

export interface SizeParams {
  mtu: number;
  outerV6: boolean;
  tunnel: TunnelKind;
}

/** Outer headers counted by the MTU: IP + UDP + tunnel header (+ podtap option). PT_OUTER_L3_LEN */
export function outerL3Len(p: Pick<SizeParams, 'outerV6' | 'tunnel'>): number {
  return (p.outerV6 ? IPV6_HLEN : IPV4_HLEN) + UDP_LEN + TUN_BASE_LEN + TUNNELS[p.tunnel].optLen;
}

/** Largest inner frame (L2 included) one outer packet carries. PT_PIECE_MAX */
export function pieceMax(p: SizeParams): number {
  return p.mtu - outerL3Len(p);
}

/** Largest chunk of original bytes per piece, in 8-byte fragment units. PT_CHUNK_MAX */
export function chunkMax(p: SizeParams): number {
  return (pieceMax(p) - MIN_INNER_PREFIX) & ~7;
}

/**
 * Scratch cache value size: the verifier bounds the chunk copy by
 * `max offset + max size`, offset < FRAME_MAX and size <= chunkMax. PT_CACHE_SIZE
 */
export function cacheValueSize(p: SizeParams): number {
  return FRAME_MAX - 1 + chunkMax(p);
}

export function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < MTU_MIN || mtu > MTU_MAX) {
    throw new RangeError(`MTU ${mtu} is outside ${MTU_MIN}..${MTU_MAX}`);
  }
}
