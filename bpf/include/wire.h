/* SPDX-License-Identifier: GPL-2.0 */
/*
 * podtap's tunnel format, as the collector reads it (src/wire/format.ts is the
 * other half; docs/wire-format.md the prose). All fields are big-endian.
 *
 * Geneve (RFC 8926), UDP 6081:
 *   outer Ethernet | outer IPv4/IPv6 (DF) | UDP | Geneve base header
 *   | option {class PT_OPT_CLASS, type PT_OPT_TYPE_META, len 13} struct pt_meta
 *   | inner frame piece
 *
 * A captured frame travels as one or more pieces. Each piece's inner frame is
 * a header prefix (the frame's own L2 + L3 headers, adjusted so the piece is a
 * valid IP fragment a standard receiver can reassemble) followed by a chunk of
 * the frame's remaining bytes. kind and fix[] say how to undo the adjustment.
 */
#ifndef PODTAP_WIRE_H
#define PODTAP_WIRE_H

#include <linux/types.h>

/* pt_meta.flags */
#define PT_F_TO_POD 0x01        /* taken at the veth's egress (towards the pod) */
#define PT_F_TRUNC 0x02         /* fewer than orig_len bytes captured (snap length) */
#define PT_F_OVERSIZE 0x04      /* frame was larger than the cache (BIG TCP): cut */
#define PT_F_FRAG 0x08          /* the frame was split into more than one piece */
#define PT_F_LAST 0x10          /* last piece of the frame */
#define PT_F_CSUM 0x20          /* WHOLE: a device may have completed the frame's offloaded
                                 * checksum in it; fix = offset of the field, its original
                                 * bytes 0-1, bytes 2-3 (CRC32c), its length (2 or 4) */

/* pt_meta.kind: how a piece's header prefix relates to the original frame. */
#define PT_K_WHOLE 0            /* the inner frame is the captured frame, unchanged */
#define PT_K_IPV4 1             /* IPv4 fragment; fix = tot_len, id, frag_off, check */
#define PT_K_IPV6_NEW 2         /* IPv6, 8-byte Fragment header added at the end of
                                 * the prefix; fix = payload_len, offset of the
                                 * next-header byte changed to 44, its old value, 0 */
#define PT_K_IPV6_REFRAG 3      /* IPv6 that already had a Fragment header (the pod
                                 * fragmented it); fix = payload_len, frag field, 0, 0 */
#define PT_K_RAW 4              /* non-IP frame: chunk only, Geneve protocol 0x88B5 */
#define PT_K_TCP_SEG 5          /* a TCP GSO super-packet sent once and cut by the kernel or
                                 * the NIC into TCP segments: each datagram is one segment
                                 * (its own headers, lengths, sequence number and checksum);
                                 * piece_off = the super-packet's TCP sequence number,
                                 * hdr_len = its headers' length, l4_off = its TCP header,
                                 * tcp_flags = its flags; fix = IPv4 total length (IPv6
                                 * payload length), IPv4 identification, IPv4 header
                                 * checksum, TCP checksum */

/* Geneve protocol types used for the inner payload */
#define PT_GENEVE_PROTO_ETH 0x6558  /* Transparent Ethernet Bridging */
#define PT_GENEVE_PROTO_RAW 0x88B5  /* IEEE 802 local experimental: raw chunk */

struct pt_meta {
	__u8 tcp_flags;         /* TCP_SEG: the super-packet's TCP flags byte; else 0 */
	__u8 reserved0;         /* 0 */
	__u8 version;           /* PT_META_VERSION */
	__u8 flags;             /* PT_F_* */
	__u8 kind;              /* PT_K_* */
	__u8 flow;              /* flow bucket: (instance, cpu, flow) names a stream */
	__u16 cpu;              /* CPU that took the copy */
	__u16 instance;         /* loaded object's id */
	__u16 l4_off;           /* TCP_SEG: offset of the TCP header in the frame; else 0 */
	__u32 seq;              /* per-stream frame sequence number, +1 per frame */
	__u32 ifindex;          /* tapped interface (node ifindex, see announcements) */
	__u32 orig_len;         /* frame length on the interface */
	__u32 cap_len;          /* bytes of it carried by all pieces together */
	__u32 piece_off;        /* offset in the frame of this piece's chunk (TCP_SEG: see there) */
	__u16 hdr_len;          /* header prefix length in this piece */
	__u16 l3_off;           /* offset of the L3 header in the frame */
	__u16 fix[4];           /* original values of changed header fields (kind) */
	__u64 tstamp;           /* CLOCK_MONOTONIC ns when the copy was taken */
} __attribute__((packed));

_Static_assert(sizeof(struct pt_meta) == 52, "pt_meta is 13 Geneve words");

#endif /* PODTAP_WIRE_H */
