/* SPDX-License-Identifier: GPL-2.0 */
/* Internet checksum helpers (RFC 1071) on top of bpf_csum_diff(). */
#ifndef PODTAP_CSUM_H
#define PODTAP_CSUM_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"

/* Largest block bpf_csum_diff() accepts in one call (its scratch buffer). */
#define PT_CSUM_BLOCK 512

/* Fold a 32-bit partial sum to 16 bits, without complementing. */
static __always_inline __u16 pt_csum_fold_raw(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Final checksum field value for a partial sum. */
static __always_inline __u16 pt_csum_fold(__u64 sum)
{
	return (__u16)~pt_csum_fold_raw(sum);
}

/* Sum of @len bytes (a multiple of 4, at most PT_CSUM_BLOCK) at @p. */
static __always_inline __u32 pt_csum_add(const void *p, __u32 len, __u32 seed)
{
	__s64 r = bpf_csum_diff(0, 0, (__be32 *)p, len, seed);

	return r < 0 ? seed : (__u32)r;
}

/* Blocks of the largest piece (outer Ethernet included). */
#define PT_CSUM_BLOCKS ((PT_MTU + PT_ETH_HLEN + PT_CSUM_BLOCK - 1) / PT_CSUM_BLOCK)

/*
 * Sum of the packet bytes [@off, @end) of a linear skb, @off even and
 * constant. The packet is padded with zeros to whole blocks (zeros leave a
 * ones' complement sum unchanged) so that every bpf_csum_diff() call has a
 * constant size at a constant offset, then trimmed back.
 */
static __always_inline __s64 pt_csum_packet(struct __sk_buff *skb, const __u32 off,
					    __u32 end, __u32 seed)
{
	__u32 padded = off + ((end - off + PT_CSUM_BLOCK - 1) & ~(PT_CSUM_BLOCK - 1));
	void *data, *data_end;
	__s64 sum = seed;
	int i;

	if (end < off || padded > off + PT_CSUM_BLOCKS * PT_CSUM_BLOCK)
		return -1;
	if (padded != end && bpf_skb_change_tail(skb, padded, 0))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
#pragma unroll
	for (i = 0; i < PT_CSUM_BLOCKS; i++) {
		void *p = data + off + i * PT_CSUM_BLOCK;

		if (off + i * PT_CSUM_BLOCK >= padded)
			break;
		if (p + PT_CSUM_BLOCK > data_end)
			return -1;
		sum = bpf_csum_diff(0, 0, (__be32 *)p, PT_CSUM_BLOCK, (__u32)sum);
	}
	if (padded != end && bpf_skb_change_tail(skb, end, 0))
		return -1;
	return sum;
}

#endif /* PODTAP_CSUM_H */
