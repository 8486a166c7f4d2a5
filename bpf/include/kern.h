/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Read-only view of the kernel's struct sk_buff checksum state through
 * bpf_cast_to_kern_ctx() (kernel 6.2+; bpf_probe_read_kernel() before, see
 * compat.h) and CO-RE, resolved at load time against
 * /sys/kernel/btf/vmlinux. Only the fields named here are used.
 *
 * Why: a copy whose L4 checksum is still to be computed by the device
 * (CHECKSUM_PARTIAL, the normal state of a pod's own TCP/UDP/SCTP traffic on a
 * veth) keeps that state through bpf_clone_redirect(). A device, or the
 * kernel's software fallback, then writes a checksum at csum_start +
 * csum_offset: into the inner frame of a copy sent whole (the collector puts
 * the original bytes back, segment.h), never into pieces (podtap.bpf.c: the
 * carrier).
 */
#ifndef PODTAP_KERN_H
#define PODTAP_KERN_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "compat.h"

#define PT_CHECKSUM_PARTIAL 3   /* include/linux/skbuff.h */

struct sk_buff {
	unsigned char *head;
	unsigned char *data;
	__u16 csum_start;
	__u16 csum_offset;
	__u8 ip_summed : 2;
	__u8 csum_not_inet : 1;
} __attribute__((preserve_access_index));

struct pt_csum_state {
	__u32 partial;          /* CHECKSUM_PARTIAL with an Internet checksum */
	__u32 not_inet;         /* CHECKSUM_PARTIAL with CRC32c (SCTP) */
	__s32 start;            /* csum_start relative to skb->data */
	__u32 offset;           /* csum_offset */
};

static __always_inline void pt_csum_state(struct __sk_buff *ctx, struct pt_csum_state *st)
{
	struct sk_buff *skb = PT_KERN_SKB(ctx);
	__u32 summed = PT_SKB_BITFIELD(skb, ip_summed);

	st->partial = 0;
	st->not_inet = 0;
	st->start = 0;
	st->offset = 0;
	if (summed != PT_CHECKSUM_PARTIAL)
		return;
	/* where the device is to write, for a CRC32c as for an Internet
	 * checksum (an SCTP copy sent whole records the 4 bytes there: without
	 * them a device without SCTP CRC offload changed the capture of every
	 * small SCTP packet, 22 of 28 in the kernel matrix's 6.12 guest) */
	st->start = (__s32)PT_SKB_FIELD(skb, csum_start) -
		    (__s32)(PT_SKB_FIELD(skb, data) - PT_SKB_FIELD(skb, head));
	st->offset = PT_SKB_FIELD(skb, csum_offset);
	/* csum_not_inet exists only in kernels built with SCTP */
	if (bpf_core_field_exists(skb->csum_not_inet) &&
	    PT_SKB_BITFIELD(skb, csum_not_inet)) {
		st->not_inet = 1;
		return;
	}
	st->partial = 1;
}

#endif /* PODTAP_KERN_H */
