/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing for the tap's filter: just what the policy can match on. */
#ifndef PODTAP_PARSE_H
#define PODTAP_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

#define PT_NH_HOPOPTS 0
#define PT_NH_ROUTING 43
#define PT_NH_FRAGMENT 44
#define PT_NH_DSTOPTS 60
#define PT_NH_ICMPV6 58
#define PT_NH_SCTP 132

/* pt_pkt.frag */
#define PT_FRAG_NONE 0          /* not a fragment */
#define PT_FRAG_FIRST 1         /* the first fragment of a datagram (offset 0, more follow) */
#define PT_FRAG_LATER 2         /* a later fragment: no L4 header */

struct pt_pkt {
	__u8 family;            /* 4, 6, or 0 for non-IP */
	__u8 l4proto;           /* IP protocol / last next header */
	__u8 has_ports;         /* sport/dport are valid */
	__u8 tcp_flags;
	__u16 sport;            /* host order */
	__u16 dport;
	__u8 frag;              /* PT_FRAG_* */
	__u8 pad[3];
	__u32 frag_id;          /* fragments: IPv4 identification / IPv6 Fragment header's */
	__u8 src[16];
	__u8 dst[16];
};

/* Copy @len (a constant) bytes at @off of the frame to @dst: straight from
 * the linear data when it holds them (no helper call: this runs on every
 * packet of a tapped interface), else with bpf_skb_load_bytes(). 0 or < 0. */
#define pt_load(skb, off, dst, len) ({                                        \
	void *__end = (void *)(long)(skb)->data_end;                          \
	void *__p = (void *)(long)(skb)->data + ((off) & 0xffff);             \
	long __r = 0;                                                         \
	if ((off) <= 0xffff && __p + (len) <= __end)                          \
		__builtin_memcpy((dst), __p, (len));                          \
	else                                                                  \
		__r = bpf_skb_load_bytes((skb), (off), (dst), (len));         \
	__r;                                                                  \
})

/* pt_parse() for headers that are not all in the linear data. */
static __noinline int pt_parse_slow(struct __sk_buff *skb, struct pt_pkt *p)
{
	struct ethhdr eth;
	__u32 l4off;
	int frag_later = 0;

	__builtin_memset(p, 0, sizeof(*p));
	if (pt_load(skb, 0, &eth, sizeof(eth)) < 0)
		return -1;

	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (pt_load(skb, PT_ETH_HLEN, &ip, sizeof(ip)) < 0)
			return -1;
		p->family = 4;
		p->l4proto = ip.protocol;
		__builtin_memcpy(p->src, &ip.saddr, 4);
		__builtin_memcpy(p->dst, &ip.daddr, 4);
		/* fragments other than the first carry no L4 header */
		frag_later = (ip.frag_off & bpf_htons(0x1fff)) != 0;
		if (frag_later)
			p->frag = PT_FRAG_LATER;
		else if (ip.frag_off & bpf_htons(0x2000))
			p->frag = PT_FRAG_FIRST;
		p->frag_id = bpf_ntohs(ip.id);
		l4off = PT_ETH_HLEN + ip.ihl * 4;
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u8 nh;
		int i;

		if (pt_load(skb, PT_ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->src, &ip6.saddr, 16);
		__builtin_memcpy(p->dst, &ip6.daddr, 16);
		nh = ip6.nexthdr;
		l4off = PT_ETH_HLEN + sizeof(ip6);
#pragma unroll
		for (i = 0; i < PT_IPV6_EXT_MAX; i++) {
			__u8 ext[8];

			if (nh != PT_NH_HOPOPTS && nh != PT_NH_ROUTING &&
			    nh != PT_NH_DSTOPTS && nh != PT_NH_FRAGMENT)
				break;
			if (pt_load(skb, l4off, ext, sizeof(ext)) < 0)
				return -1;
			if (nh == PT_NH_FRAGMENT) {
				frag_later = ((ext[2] << 8 | ext[3]) & 0xfff8) != 0;
				p->frag = frag_later ? PT_FRAG_LATER : (ext[3] & 1) ? PT_FRAG_FIRST : PT_FRAG_NONE;
				p->frag_id = (ext[4] << 24) | (ext[5] << 16) | (ext[6] << 8) | ext[7];
				l4off += 8;
			} else {
				l4off += (ext[1] + 1) * 8;
			}
			nh = ext[0];
		}
		p->l4proto = nh;
	} else {
		return 0;
	}

	if (frag_later)
		return 0;
	if (p->l4proto == IPPROTO_TCP || p->l4proto == IPPROTO_UDP ||
	    p->l4proto == PT_NH_SCTP) {
		__u8 l4[14];

		/* ports, and TCP's flags at 13 (the 8 bytes of a UDP header
		 * and the 12 of SCTP's precede their payload) */
		if (pt_load(skb, l4off, l4, 4) < 0)
			return 0;
		p->has_ports = 1;
		p->sport = (l4[0] << 8) | l4[1];
		p->dport = (l4[2] << 8) | l4[3];
		if (p->l4proto == IPPROTO_TCP) {
			if (pt_load(skb, l4off, l4, sizeof(l4)) < 0)
				return 0;
			p->tcp_flags = l4[13];
		}
	}
	return 0;
}

/*
 * Fill @p from the frame; returns 0, or -1 if the frame is too short to say.
 * Runs on every packet of a tapped interface: reads the headers in place,
 * word by word, where the linear data holds them (the common case), and
 * falls back to copying them out otherwise.
 */
static __always_inline int pt_parse(struct __sk_buff *skb, struct pt_pkt *p)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 *l4;

	if ((void *)(eth + 1) > end)
		return pt_parse_slow(skb, p);
	__builtin_memset(p, 0, sizeof(*p));
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end)
			return pt_parse_slow(skb, p);
		p->family = 4;
		p->l4proto = ip->protocol;
		*(__u32 *)p->src = ip->saddr;
		*(__u32 *)p->dst = ip->daddr;
		p->frag_id = bpf_ntohs(ip->id);
		if (ip->frag_off & bpf_htons(0x1fff)) {
			/* a later fragment carries no L4 header */
			p->frag = PT_FRAG_LATER;
			return 0;
		}
		if (ip->frag_off & bpf_htons(0x2000))
			p->frag = PT_FRAG_FIRST;
		l4 = (__u8 *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return pt_parse_slow(skb, p);
		/* extension headers: the general parse walks them */
		if (ip6->nexthdr == PT_NH_HOPOPTS || ip6->nexthdr == PT_NH_ROUTING ||
		    ip6->nexthdr == PT_NH_DSTOPTS || ip6->nexthdr == PT_NH_FRAGMENT)
			return pt_parse_slow(skb, p);
		p->family = 6;
		p->l4proto = ip6->nexthdr;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		l4 = (__u8 *)(ip6 + 1);
	} else {
		return 0;
	}
	if (p->l4proto == IPPROTO_TCP) {
		if (l4 + 14 > (__u8 *)end)
			return pt_parse_slow(skb, p);
		p->tcp_flags = l4[13];
	} else if (p->l4proto != IPPROTO_UDP && p->l4proto != PT_NH_SCTP) {
		return 0;
	}
	if (l4 + 4 > (__u8 *)end)
		return pt_parse_slow(skb, p);
	p->has_ports = 1;
	p->sport = bpf_ntohs(*(__u16 *)l4);
	p->dport = bpf_ntohs(*(__u16 *)(l4 + 2));
	return 0;
}

/* A hash of the frame's flow (addresses, protocol, and ports where every
 * fragment of a datagram has them: none for fragments, so a datagram's
 * fragments share one), for the tunnel's outer source port. */
static __always_inline __u32 pt_flow_hash(const struct pt_pkt *p)
{
	__u32 h = 0x9e3779b9u ^ p->l4proto, w;
	int i;

	if (!p->family)
		return 0;
#pragma unroll
	for (i = 0; i < 16; i += 4) {
		__builtin_memcpy(&w, &p->src[i], 4);
		h = (h ^ w) * 0x85ebca6bu;
		h ^= h >> 13;
		__builtin_memcpy(&w, &p->dst[i], 4);
		h = (h ^ w) * 0xc2b2ae35u;
		h ^= h >> 16;
	}
	if (p->has_ports && p->frag == PT_FRAG_NONE)
		h = (h ^ ((__u32)p->sport << 16 | p->dport)) * 0x85ebca6bu;
	return h ^ (h >> 15);
}

#endif /* PODTAP_PARSE_H */
