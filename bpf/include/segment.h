/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The two ways a copy leaves in one go, without being cut here:
 *
 *  - pt_send_whole(): a frame that fits one outer packet gets the outer
 *    headers in front of it, in place.
 *
 *  - pt_send_segmented(): a TCP GSO super-packet (what a pod's TCP hands its
 *    veth: up to 64 KB per skb) is encapsulated whole, once, as a UDP-tunnel
 *    GSO packet (bpf_skb_adjust_room() with the ENCAP flags records the inner
 *    headers), with a GSO size that makes every segment fit the MTU. The
 *    kernel's software GSO, or a NIC's UDP-tunnel segmentation, then cuts it
 *    into TCP segments, each a complete tunnel packet with the same outer
 *    headers and podtap option: the option says how to rebuild the
 *    super-packet from them by TCP sequence number (wire.h, PT_K_TCP_SEG).
 *
 * Either way the copy may still carry an offloaded L4 checksum
 * (CHECKSUM_PARTIAL, the normal state of a pod's own TCP/UDP/SCTP traffic):
 * it stays where it belongs, in the inner frame, and whatever device
 * completes it (a NIC, the kernel's software fallback, or none: a veth) may
 * do so — the option carries the original bytes of that field, which the
 * collector puts back.
 */
#ifndef PODTAP_SEGMENT_H
#define PODTAP_SEGMENT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "csum.h"
#include "encap.h"
#include "frag.h"
#include "kern.h"
#include "maps.h"
#include "wire.h"

/* bpf_skb_adjust_room() flags that make the room an outer IPv4/UDP header
 * with an Ethernet frame inside (the inner headers are recorded for GSO). */
#define PT_ENCAP_FLAGS (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | \
			BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(PT_ETH_HLEN))

/*
 * A frame of @len bytes that fits one outer packet (not GSO), wrapped in
 * place and sent. Returns 1 when handled (*reason 0: sent), 0 when it must be
 * cut instead (an offloaded CRC32c over an outer IPv6 path, whose outer
 * checksum cannot be known before the device computes the inner one).
 */
static __always_inline int pt_send_whole(struct __sk_buff *skb, struct pt_work *w, __u32 len,
					 __u32 *reason)
{
	struct pt_outer *o = &w->outer;
	struct pt_csum_state st;

	pt_csum_state(skb, &st);
	pt_outer_lengths(o, len);
#if PT_TUNNEL == PT_TUN_GENEVE
	o->meta.flags |= PT_F_LAST;
	o->meta.kind = PT_K_WHOLE;
#endif
	if (st.partial || st.not_inet) {
		/* where the device writes: csum_start + csum_offset, 2 bytes (4:
		 * CRC32c) */
		__u32 flen = st.not_inet ? 4 : 2;
		__u32 at = (__u32)st.start + st.offset;
		__u8 orig[4] = {};

		if (st.start < 0 || at + flen > len || at > 0xffff)
			return 0;
		if (PT_OUTER_V6 && st.not_inet)
			return 0;
		if (bpf_skb_load_bytes(skb, at, orig, flen))
			return 0;
#if PT_TUNNEL == PT_TUN_GENEVE
		o->meta.flags |= PT_F_CSUM;
		o->meta.fix[0] = bpf_htons(at);
		__builtin_memcpy(&o->meta.fix[1], orig, 4);
		o->meta.fix[3] = bpf_htons(flen);
#endif
		if (PT_OUTER_V6) {
			__u64 start = st.start;
			__u16 field;

			/* two tests with a barrier between: clang would merge
			 * them into one unsigned (start - 2) > MAX - 2, whose
			 * bound on start itself the 5.10 and 6.1 verifiers
			 * cannot derive ("R3 min value is outside of the allowed
			 * memory range", kernel matrix, 6.1.176) */
			if (start > PT_PREFIX_MAX)
				return 0;
			barrier_var(start);
			if (start < 2)
				return 0;
			if (bpf_skb_load_bytes(skb, 0, w->prefix, start))
				return 0;
			/* zero padding to a 4-byte multiple (start is even) */
			w->prefix[start] = 0;
			w->prefix[start + 1] = 0;
			__builtin_memcpy(&field, orig, 2);
			o->udp.check = pt_udp_csum_lco(o, w->prefix, start, field);
		}
	}
	if (bpf_skb_change_head(skb, PT_OUTER_LEN, 0) ||
	    bpf_skb_store_bytes(skb, 0, o, PT_OUTER_LEN, 0)) {
		*reason = PT_C_SHAPE_ERR;
		return 1;
	}
	if (PT_OUTER_V6 && !st.partial &&
	    (bpf_skb_pull_data(skb, 0) || pt_udp_csum_soft(skb, o, PT_OUTER_LEN + len))) {
		*reason = PT_C_SHAPE_ERR;
		return 1;
	}
	*reason = pt_xmit(skb, w->out_ifindex);
	if (!*reason) {
		pt_count(PT_C_PIECES, 0);
		pt_count(PT_C_MIRRORED, len);
	}
	return 1;
}

/* The headers of a TCP super-packet, which every segment repeats. */
struct pt_seg {
	__u32 l4;               /* offset of the TCP header */
	__u32 hdr;              /* headers' length: offset of the first payload byte */
	__u32 seq;              /* TCP sequence number, network order */
	__u16 fix[4];           /* pt_meta.fix of PT_K_TCP_SEG, network order */
	__u8 flags;             /* TCP flags byte */
};

/* Whether @skb is a TCP super-packet over IPv4 or IPv6 (no extension
 * headers) whose checksum the device is to complete; its headers. 0 or -1. */
static __always_inline int pt_seg_parse(struct __sk_buff *skb, struct pt_seg *sg)
{
	struct pt_csum_state st;
	__u8 th[20];
	__u16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return -1;
	if (proto == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];

		if (bpf_skb_load_bytes(skb, PT_ETH_HLEN, ip, sizeof(ip)))
			return -1;
		/* version 4, TCP, neither MF nor a fragment offset */
		if ((ip[0] >> 4) != 4 || (ip[0] & 0xf) < 5 || ip[9] != IPPROTO_TCP ||
		    (ip[6] & 0x3f) || ip[7])
			return -1;
		sg->l4 = PT_ETH_HLEN + (ip[0] & 0xf) * 4;
		__builtin_memcpy(&sg->fix[0], &ip[2], 2);       /* total length */
		__builtin_memcpy(&sg->fix[1], &ip[4], 2);       /* identification */
		__builtin_memcpy(&sg->fix[2], &ip[10], 2);      /* header checksum */
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		__u8 ip6[8];

		if (bpf_skb_load_bytes(skb, PT_ETH_HLEN, ip6, sizeof(ip6)))
			return -1;
		if ((ip6[0] >> 4) != 6 || ip6[6] != IPPROTO_TCP)
			return -1;
		sg->l4 = PT_ETH_HLEN + 40;
		__builtin_memcpy(&sg->fix[0], &ip6[4], 2);      /* payload length */
		sg->fix[1] = 0;
		sg->fix[2] = 0;
	} else {
		return -1;
	}
	if (bpf_skb_load_bytes(skb, sg->l4, th, sizeof(th)))
		return -1;
	sg->hdr = sg->l4 + (th[12] >> 4) * 4;
	if ((th[12] >> 4) < 5 || sg->hdr > PT_SEG_HDR_MAX || sg->hdr >= skb->len)
		return -1;
	__builtin_memcpy(&sg->seq, &th[4], 4);
	sg->flags = th[13];
	__builtin_memcpy(&sg->fix[3], &th[16], 2);              /* TCP checksum */
	/* the device completes the TCP checksum of each segment */
	pt_csum_state(skb, &st);
	if (!st.partial || st.start != (__s32)sg->l4 || st.offset != 16)
		return -1;
	return 0;
}

/* Move the GSO size of the encapsulated @skb by @delta bytes (down when
 * positive): bpf_skb_adjust_room() lowers it by what it adds and raises it by
 * what it removes unless told the size is fixed, so room added and removed
 * again with one of the two fixed moves it. 0 or -1. */
static __always_inline int pt_gso_resize(struct __sk_buff *skb, __s32 delta)
{
	int i;

	for (i = 0; i < PT_GSO_STEPS; i++) {
		__s32 step = delta > 0 ? delta : -delta;

		if (!delta)
			return 0;
		if (step > PT_GSO_STEP)
			step = PT_GSO_STEP;
		if (bpf_skb_adjust_room(skb, step, BPF_ADJ_ROOM_MAC,
					delta > 0 ? 0 : BPF_F_ADJ_ROOM_FIXED_GSO) ||
		    bpf_skb_adjust_room(skb, -step, BPF_ADJ_ROOM_MAC,
					delta > 0 ? BPF_F_ADJ_ROOM_FIXED_GSO : 0))
			return -1;
		delta += delta > 0 ? -step : step;
	}
	return delta ? -1 : 0;
}

/*
 * A TCP super-packet of @len bytes sent once, for the kernel to segment.
 * Returns 1 when handled (*reason 0: sent), 0 when it is not one this path
 * can send (it is cut into IP fragments instead).
 */
static __always_inline int pt_send_segmented(struct __sk_buff *skb, struct pt_work *w, __u32 len,
					     __u32 *reason)
{
#if PT_SEGMENT_TCP && !PT_OUTER_V6
	struct pt_outer *o = &w->outer;
	struct pt_seg sg;
	__u32 mss;

	/* a device with UDP-tunnel segmentation (a veth, for one) may pass it
	 * on whole: then it is one outer IP packet, whose lengths must fit,
	 * and within the device's GSO size (consts.h) */
	if (!skb->gso_size || len + PT_OUTER_LEN >= PT_GSO_MAX || pt_seg_parse(skb, &sg))
		return 0;
	/* every segment's inner frame fits one outer packet */
	mss = PT_PIECE_MAX - sg.hdr;
	if (mss < 64 || mss > PT_PIECE_MAX)
		return 0;
	/* ...but a GSO packet must stay more than one segment: tcp_gso_segment()
	 * refuses (-EINVAL) one whose payload is not above its GSO size, and
	 * validate_xmit_skb() then drops it. Where the uplink's MTU is above the
	 * pod's (9000 and 1500), a super-packet of a few pod segments fits one
	 * uplink segment: it keeps the pod's own GSO size, smaller than its
	 * payload and than mss (so each segment still fits). Without this, 264
	 * of 55,982 frames (0.5 %) were lost as redirectError in 4 s of iperf3
	 * through a 9000-byte uplink (skb:kfree_skb at validate_xmit_skb). */
	if (len - sg.hdr <= mss)
		mss = skb->gso_size;
	pt_outer_lengths(o, len);
#if PT_TUNNEL == PT_TUN_GENEVE
	o->meta.flags |= PT_F_FRAG;
	o->meta.kind = PT_K_TCP_SEG;
	o->meta.tcp_flags = sg.flags;
	o->meta.l4_off = bpf_htons(sg.l4);
	o->meta.piece_off = sg.seq;
	o->meta.hdr_len = bpf_htons(sg.hdr);
	__builtin_memcpy(o->meta.fix, sg.fix, sizeof(sg.fix));
#endif
	/* the inner Ethernet header follows the outer headers (w->prefix) */
	if (bpf_skb_load_bytes(skb, 0, w->prefix, PT_ETH_HLEN))
		return 0;
	/* the room lowers the GSO size by as much: when the pod's MTU is the
	 * uplink's, that is exactly the size each segment needs */
	if (bpf_skb_adjust_room(skb, PT_OUTER_L3_LEN + PT_ETH_HLEN, BPF_ADJ_ROOM_MAC, PT_ENCAP_FLAGS))
		return 0;       /* unchanged: cut it instead */
	if (bpf_skb_store_bytes(skb, 0, o, PT_OUTER_LEN + PT_ETH_HLEN, 0) ||
	    pt_gso_resize(skb, (__s32)skb->gso_size - (__s32)mss)) {
		*reason = PT_C_SHAPE_ERR;
		return 1;
	}
	*reason = pt_xmit(skb, w->out_ifindex);
	if (!*reason) {
		pt_count(PT_C_SEGMENTED, len);
		pt_count_n(PT_C_PIECES, (len - sg.hdr + mss - 1) / mss, 0);
		pt_count(PT_C_MIRRORED, len);
	}
	return 1;
#else
	return 0;
#endif
}

#endif /* PODTAP_SEGMENT_H */
