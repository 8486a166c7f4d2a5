/**
 * The data plane's size arithmetic, mirroring bpf/include/consts.h. The agent
 * computes the scratch cache's value size here and passes it with -D; a kernel
 * test proves the verifier accepts exactly this size and refuses one byte less.
 */
import { META_LEN } from '../wire/format.ts';

export type TunnelKind = 'Geneve' | 'VXLAN';

export const ETH_HLEN = 14;
/** A 65535-byte IP packet plus its Ethernet header. */
export const FRAME_MAX = 65535 + ETH_HLEN;
const UDP_LEN = 8;
const TUN_BASE_LEN = 8;
/** Geneve option header (4) + struct pt_meta (bpf/include/wire.h). */
const GENEVE_OPT_LEN = 4 + META_LEN;
/** Smallest inner IP header prefix a piece carries: Ethernet + 20-byte IPv4. */
const MIN_INNER_PREFIX = ETH_HLEN + 20;

export const MTU_MIN = 1280;
export const MTU_MAX = 9216;

export interface SizeParams {
  mtu: number;
  outerV6: boolean;
  tunnel: TunnelKind;
}

/** Outer headers counted by the MTU: IP + UDP + tunnel header (+ podtap option). */
export function outerL3Len(p: Pick<SizeParams, 'outerV6' | 'tunnel'>): number {
  return (p.outerV6 ? 40 : 20) + UDP_LEN + TUN_BASE_LEN + (p.tunnel === 'Geneve' ? GENEVE_OPT_LEN : 0);
}

/** Largest inner frame one outer packet carries. */
export function pieceMax(p: SizeParams): number {
  return p.mtu - outerL3Len(p);
}

/** Largest chunk of original bytes per piece, in 8-byte fragment units. */
export function chunkMax(p: SizeParams): number {
  return (pieceMax(p) - MIN_INNER_PREFIX) & ~7;
}

/**
 * Scratch cache value size: the verifier bounds the chunk copy by
 * `max offset + max size`, offset < FRAME_MAX and size <= chunkMax.
 */
export function cacheValueSize(p: SizeParams): number {
  return FRAME_MAX - 1 + chunkMax(p);
}

export function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < MTU_MIN || mtu > MTU_MAX) {
    throw new RangeError(`MTU ${mtu} is outside ${MTU_MIN}..${MTU_MAX}`);
  }
}
