/* SPDX-License-Identifier: GPL-2.0 */
/* Outer headers: Ethernet, IPv4/IPv6, UDP, Geneve + podtap option or VXLAN. */
#ifndef PODTAP_ENCAP_H
#define PODTAP_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "csum.h"
#include "maps.h"
#include "wire.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

struct pt_outer {
	struct ethhdr eth;
#if PT_OUTER_V6
	struct ipv6hdr ip;
#else
	struct iphdr ip;
#endif
	struct udphdr udp;
	__u8 tun[PT_TUN_BASE_LEN];
#if PT_TUNNEL == PT_TUN_GENEVE
	__u8 opt[4];
	struct pt_meta meta;
#endif
} __attribute__((packed));

_Static_assert(sizeof(struct pt_outer) == PT_OUTER_LEN, "outer header layout");

#define PT_UDP_OFF (PT_ETH_HLEN + PT_OUTER_IP_LEN)   /* outer UDP header in a piece */

/* Route to the collector: egress device and MAC addresses, with the MTU of the
 * route checked against @l3_len, the largest outer packet we will send. */
static __always_inline int pt_route(struct __sk_buff *skb, const struct pt_config *cfg,
				    struct pt_outer *o, __u32 *ifindex, __u32 l3_len)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	/* output lookup on the device the agent resolved the route to: the
	 * capture device itself would restrict the lookup to it */
	fib.ifindex = cfg->route_ifindex;
	fib.l4_protocol = IPPROTO_UDP;
	fib.dport = bpf_htons(PT_TUNNEL_PORT);
	fib.tot_len = l3_len;
#if PT_OUTER_V6
	fib.family = AF_INET6;
	__builtin_memcpy(fib.ipv6_src, cfg->src, 16);
	__builtin_memcpy(fib.ipv6_dst, cfg->dst, 16);
#else
	fib.family = AF_INET;
	__builtin_memcpy(&fib.ipv4_src, cfg->src, 4);
	__builtin_memcpy(&fib.ipv4_dst, cfg->dst, 4);
#endif
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return PT_C_MTU;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return PT_C_NO_ROUTE;
	*ifindex = fib.ifindex;
	__builtin_memcpy(o->eth.h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(o->eth.h_source, fib.smac, ETH_ALEN);
	return 0;
}

/* Fields that stay the same for every piece of one frame. */
static __always_inline void pt_outer_init(struct pt_outer *o, const struct pt_config *cfg,
					  __u16 sport, __u16 proto)
{
#if PT_OUTER_V6
	o->eth.h_proto = bpf_htons(ETH_P_IPV6);
	o->ip.version = 6;
	o->ip.nexthdr = IPPROTO_UDP;
	o->ip.hop_limit = 64;
	__builtin_memcpy(&o->ip.saddr, cfg->src, 16);
	__builtin_memcpy(&o->ip.daddr, cfg->dst, 16);
#else
	o->eth.h_proto = bpf_htons(ETH_P_IP);
	o->ip.version = 4;
	o->ip.ihl = 5;
	o->ip.ttl = 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.frag_off = bpf_htons(0x4000);             /* DF: never fragment the outer packet */
	__builtin_memcpy(&o->ip.saddr, cfg->src, 4);
	__builtin_memcpy(&o->ip.daddr, cfg->dst, 4);
#endif
	o->udp.source = bpf_htons(sport);
	o->udp.dest = bpf_htons(PT_TUNNEL_PORT);
#if PT_TUNNEL == PT_TUN_GENEVE
	o->tun[0] = PT_TUN_OPT_LEN / 4;                 /* version 0, option length in words */
	o->tun[1] = 0;                                  /* O and C clear: a data packet */
	o->tun[2] = proto >> 8;
	o->tun[3] = proto & 0xff;
	o->opt[0] = PT_OPT_CLASS >> 8;
	o->opt[1] = PT_OPT_CLASS & 0xff;
	o->opt[2] = PT_OPT_TYPE_META;                   /* not critical: others may ignore it */
	o->opt[3] = PT_META_LEN / 4;
	o->meta.version = PT_META_VERSION;
#else
	o->tun[0] = 0x08;                               /* I flag: the VNI is valid */
#endif
	o->tun[4] = (PT_VNI >> 16) & 0xff;
	o->tun[5] = (PT_VNI >> 8) & 0xff;
	o->tun[6] = PT_VNI & 0xff;
}

/* Lengths and the IPv4 header checksum for a piece whose inner frame has
 * @inner bytes. A super-packet sent for the kernel to segment may not fit the
 * 16-bit fields: segmentation writes each segment's own lengths, so they are
 * only capped here. */
static __always_inline void pt_outer_lengths(struct pt_outer *o, __u32 inner)
{
	__u32 udp_len = PT_UDP_LEN + PT_TUN_BASE_LEN + PT_TUN_OPT_LEN + inner;
	__u32 ip_len = udp_len + PT_OUTER_IP_LEN - (PT_OUTER_V6 ? 40 : 0);

	if (udp_len > 0xffff)
		udp_len = 0xffff;
	if (ip_len > 0xffff)
		ip_len = 0xffff;
	o->udp.len = bpf_htons(udp_len);
	o->udp.check = 0;
#if PT_OUTER_V6
	o->ip.payload_len = bpf_htons(udp_len);
#else
	o->ip.tot_len = bpf_htons(ip_len);
	o->ip.check = 0;
	o->ip.check = pt_csum_fold(pt_csum_add(&o->ip, sizeof(struct iphdr), 0));
#endif
}

/* Partial sum, in memory order like bpf_csum_diff(), of the UDP pseudo header
 * (RFC 768; RFC 8200 §8.1): addresses, protocol and UDP length. */
static __always_inline __u32 pt_pseudo_sum(const struct pt_outer *o)
{
	__u32 sum = o->udp.len + bpf_htons(IPPROTO_UDP);

	return pt_csum_add(&o->ip.saddr, PT_OUTER_V6 ? 32 : 8, sum);
}

/*
 * IPv6 requires a UDP checksum; this computes it over the finished piece,
 * which carries no offloaded checksum (pieces are built in skbs whose
 * checksum the kernel completed: see the carrier in podtap.bpf.c). A
 * subprogram: its loop would otherwise swell the caller's stack.
 */
static __noinline int pt_udp_csum_soft(struct __sk_buff *skb, const struct pt_outer *o, __u32 len)
{
	__u32 pseudo = pt_pseudo_sum(o);
	__s64 sum = pt_csum_packet(skb, PT_UDP_OFF, len, 0);
	__u16 check;

	if (sum < 0)
		return -1;
	check = pt_csum_fold((__u64)pt_csum_fold_raw(sum) + pt_csum_fold_raw(pseudo));
	if (!check)
		check = 0xffff;                         /* RFC 768: 0 means "none" */
	return bpf_skb_store_bytes(skb, PT_UDP_OFF + 6, &check, 2, 0);
}

/*
 * The outer UDP checksum of a frame sent whole while its own L4 checksum is
 * still to be filled in by the device (CHECKSUM_PARTIAL), computed from the
 * headers alone (local checksum offload, Documentation/networking/
 * checksum-offloads.rst): once the device has completed the inner checksum,
 * the inner L4 data sums to the complement of the value now in its checksum
 * field. @inner: the frame's first @start bytes (up to the L4 header, zero
 * padded to 4), @field the checksum field's current value. A device that
 * completes no checksum (a veth) hands the packet on as CHECKSUM_PARTIAL,
 * which a Linux receiver takes as verified.
 */
static __always_inline __u16 pt_udp_csum_lco(const struct pt_outer *o, const __u8 *inner,
					     __u32 start, __u16 field)
{
	__u64 sum = pt_pseudo_sum(o);

	sum += pt_csum_add((const __u8 *)o + PT_UDP_OFF, PT_OUTER_LEN - PT_UDP_OFF, 0);
	sum += pt_csum_add(inner, (start + 3) & ~3u, 0);
	sum += (__u16)~field;
	return pt_csum_fold(sum) ?: 0xffff;
}

#endif /* PODTAP_ENCAP_H */
