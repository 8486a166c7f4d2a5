/**
 * Undoing what the data plane did to a piece's header prefix (kind and fix[]
 * in bpf/include/wire.h): the inverse of pt_piece_ip() in bpf/include/frag.h.
 */
import { IPV6_FRAG_HLEN, Kind, framePrefixLen, type PieceMeta } from './format.ts';
import { restoreSegmentHeaders } from './segments.ts';

/**
 * Write the original frame's first framePrefixLen(meta) bytes, taken from the
 * piece's inner frame at src[srcOff..], to dst[dstOff..]. The metadata must
 * have passed parseDatagramInto's checks (offsets inside the prefix).
 * Returns the number of bytes written.
 */
export function restorePrefix(src: Buffer, srcOff: number, meta: PieceMeta, dst: Buffer, dstOff: number): number {
  const n = framePrefixLen(meta);
  if (n === 0) return 0;
  src.copy(dst, dstOff, srcOff, srcOff + n);
  const l3 = dstOff + meta.l3Off;
  switch (meta.kind) {
    case Kind.ipv4:
      dst.writeUInt16BE(meta.fix0, l3 + 2); // total length
      dst.writeUInt16BE(meta.fix1, l3 + 4); // identification
      dst.writeUInt16BE(meta.fix2, l3 + 6); // flags + fragment offset
      dst.writeUInt16BE(meta.fix3, l3 + 10); // header checksum
      break;
    case Kind.ipv6New:
      // the 8-byte Fragment header we added is simply not copied
      dst.writeUInt16BE(meta.fix0, l3 + 4); // payload length
      dst[dstOff + meta.fix1] = meta.fix2; // next header that was set to 44
      break;
    case Kind.ipv6Refrag:
      // the pod's own Fragment header closes the prefix (pt_plan_make:
      // prefix = its offset + 8); its offset/M field is at +2
      dst.writeUInt16BE(meta.fix0, l3 + 4);
      dst.writeUInt16BE(meta.fix1, dstOff + meta.hdrLen - IPV6_FRAG_HLEN + 2);
      break;
    case Kind.tcpSeg:
      restoreSegmentHeaders(dst, dstOff, meta);
      break;
  }
  return n;
}
