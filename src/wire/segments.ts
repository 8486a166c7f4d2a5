/**
 * Frames the data plane sent whole or as one super-packet, as they arrive:
 * what a device did to them on the way, and how to undo it (bpf/include/
 * segment.h is the sending half; docs/wire-format.md the prose).
 *
 *  - TCP_SEG: a TCP GSO super-packet left the node once, and the kernel's GSO
 *    (or a NIC's UDP-tunnel segmentation) cut it into TCP segments, each a
 *    datagram with the same podtap option. Every segment repeats the
 *    super-packet's headers with its own IP length, identification and
 *    checksum, TCP sequence number, flags and checksum; the option carries
 *    the super-packet's values. A segment's payload belongs at hdr_len plus its
 *    sequence number's distance from the super-packet's, so the collector
 *    reassembles by TCP sequence, like any other piece, and restores the
 *    headers byte for byte.
 *
 *  - WHOLE with the CSUM flag: a device may have completed the frame's
 *    offloaded checksum (what the pod's kernel left for the NIC to do) in the
 *    frame; the option carries the field's original bytes.
 */
import type { PieceMeta } from './format.ts';

/** Longest headers of a segmented super-packet (PT_SEG_HDR_MAX). */
export const SEG_HDR_MAX = 256;
const IPV4 = 4;
const TCP_HLEN = 20;
const TCP_SEQ = 4;
const TCP_FLAGS = 13;
const TCP_CHECK = 16;

/**
 * Where in the super-packet a TCP_SEG datagram's payload belongs: hdr_len plus
 * (its TCP sequence number − the super-packet's, modulo 2^32), or -1 when its
 * headers do not fit the metadata. @m.tcpSeq is the super-packet's number.
 */
export function segmentOffset(buf: Buffer, innerOff: number, innerLen: number, m: PieceMeta): number {
  if (m.l4Off < m.l3Off + 20 || m.hdrLen < m.l4Off + TCP_HLEN || m.hdrLen > SEG_HDR_MAX || m.hdrLen > innerLen) return -1;
  const seq = buf.readUInt32BE(innerOff + m.l4Off + TCP_SEQ);
  return m.hdrLen + ((seq - m.tcpSeq) >>> 0);
}

/**
 * Undo in a TCP_SEG segment's headers, copied to dst[dstOff, dstOff +
 * hdrLen), what segmentation changed: IP length (and IPv4 identification and
 * header checksum), TCP sequence number, flags and checksum.
 */
export function restoreSegmentHeaders(dst: Buffer, dstOff: number, m: PieceMeta): void {
  const l3 = dstOff + m.l3Off;
  const l4 = dstOff + m.l4Off;
  if (dst[l3]! >> 4 === IPV4) {
    dst.writeUInt16BE(m.fix0, l3 + 2); // total length
    dst.writeUInt16BE(m.fix1, l3 + 4); // identification
    dst.writeUInt16BE(m.fix2, l3 + 10); // header checksum
  } else {
    dst.writeUInt16BE(m.fix0, l3 + 4); // payload length
  }
  dst.writeUInt32BE(m.tcpSeq, l4 + TCP_SEQ);
  dst[l4 + TCP_FLAGS] = m.tcpFlags;
  dst.writeUInt16BE(m.fix3, l4 + TCP_CHECK);
}

/** Whether a WHOLE piece's checksum-field record (fix) lies inside its frame. */
export function wholeChecksumValid(m: PieceMeta): boolean {
  return (m.fix3 === 2 || m.fix3 === 4) && m.fix0 + m.fix3 <= m.capLen;
}

/** Put back in a WHOLE frame (buf[off, off + capLen)) the original bytes of the checksum field a device may have filled in. */
export function restoreWholeChecksum(buf: Buffer, off: number, m: PieceMeta): void {
  buf.writeUInt16BE(m.fix1, off + m.fix0);
  if (m.fix3 === 4) buf.writeUInt16BE(m.fix2, off + m.fix0 + 2);
}
