/* SPDX-License-Identifier: GPL-2.0 */
/* The policy's filter, compiled in as constants (consts.h). */
#ifndef PODTAP_FILTER_H
#define PODTAP_FILTER_H

#include "consts.h"
#include "maps.h"
#include "parse.h"

struct pt_port_range {
	__u16 first;
	__u16 last;
};

static __always_inline int pt_proto_ok(const struct pt_pkt *p)
{
	__u32 bit = 0;

	if (!PT_PROTO_MASK)
		return 1;
	if (!p->family)
		return 0;
	switch (p->l4proto) {
	case IPPROTO_TCP:
		bit = PT_P_TCP;
		break;
	case IPPROTO_UDP:
		bit = PT_P_UDP;
		break;
	case IPPROTO_ICMP:
		bit = p->family == 4 ? PT_P_ICMP : 0;
		break;
	case PT_NH_ICMPV6:
		bit = p->family == 6 ? PT_P_ICMPV6 : 0;
		break;
	case PT_NH_SCTP:
		bit = PT_P_SCTP;
		break;
	}
	return (bit & PT_PROTO_MASK) != 0;
}

static __always_inline int pt_ports_ok(const struct pt_pkt *p)
{
#if PT_NPORTS > 0
	const struct pt_port_range ranges[PT_NPORTS] = PT_PORT_RANGES;
	int i;

	if (!p->has_ports)
		return 0;
#pragma unroll
	for (i = 0; i < PT_NPORTS; i++) {
		if (p->sport >= ranges[i].first && p->sport <= ranges[i].last)
			return 1;
		if (p->dport >= ranges[i].first && p->dport <= ranges[i].last)
			return 1;
	}
	return 0;
#else
	return 1;
#endif
}

/* @peer: the address on the other side of the pod */
static __always_inline int pt_cidr_ok(const struct pt_pkt *p, const __u8 *peer)
{
#if PT_CIDR_FILTER
	if (p->family == 4) {
		struct pt_lpm4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, peer, 4);
		return bpf_map_lookup_elem(&pt_cidr4, &k) != 0;
	}
	if (p->family == 6) {
		struct pt_lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, peer, 16);
		return bpf_map_lookup_elem(&pt_cidr6, &k) != 0;
	}
	return 0;
#else
	return 1;
#endif
}

static __always_inline int pt_tcp_flags_ok(const struct pt_pkt *p)
{
	if (!PT_TCP_FLAGS || p->l4proto != IPPROTO_TCP || !p->family)
		return 1;
	if (!p->has_ports)      /* no TCP header */
		return 0;
	return (p->tcp_flags & PT_TCP_FLAGS) != 0;
}

/* Port and TCP-flag filters on fragments: a later fragment carries no L4
 * header, so it matches when the first fragment of its datagram did (the
 * first one is remembered by source, destination, protocol and
 * identification). A later fragment that arrives before its first one does
 * not match: the filter cannot know its ports. */
static __always_inline void pt_frag_key(const struct pt_pkt *p, struct pt_frag_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = p->family;
	k->proto = p->l4proto;
	k->id = p->frag_id;
	__builtin_memcpy(k->src, p->src, 16);
	__builtin_memcpy(k->dst, p->dst, 16);
}

static __always_inline int pt_l4_filters_ok(const struct pt_pkt *p)
{
#if PT_NPORTS > 0 || PT_TCP_FLAGS
	struct pt_frag_key k;
	__u8 one = 1;

	if (p->frag == PT_FRAG_LATER) {
		pt_frag_key(p, &k);
		return bpf_map_lookup_elem(&pt_frags, &k) != 0;
	}
	if (!pt_ports_ok(p) || !pt_tcp_flags_ok(p))
		return 0;
	if (p->frag == PT_FRAG_FIRST) {
		pt_frag_key(p, &k);
		bpf_map_update_elem(&pt_frags, &k, &one, BPF_ANY);
	}
#endif
	return 1;
}

static __always_inline int pt_addr_eq(const __u8 *a, const __u8 *b, int n)
{
	int i;

	for (i = 0; i < 16 && i < n; i++) {
		if (a[i] != b[i])
			return 0;
	}
	return 1;
}

/* podtap's own tunnel traffic (e.g. a collector pod on a tapped veth of this
 * node): never mirrored, whatever the policy says. That is this object's
 * tunnel to its collector, and any podtap Geneve data packet (its metadata
 * option comes first) of another capture on the node: pieces carry no mark,
 * so they are known by what they are. */
static __always_inline int pt_is_own_tunnel(struct __sk_buff *skb, const struct pt_pkt *p,
					    const struct pt_config *cfg)
{
	__u8 g[12];
	__u32 off;

	if (!p->family || p->l4proto != IPPROTO_UDP || !p->has_ports || p->frag != PT_FRAG_NONE)
		return 0;
	if (p->dport == PT_TUNNEL_PORT && pt_addr_eq(p->dst, cfg->dst, p->family == 6 ? 16 : 4))
		return 1;
	/* Geneve header after the UDP header: version 0, O clear, option
	 * class PT_OPT_CLASS type PT_OPT_TYPE_META first */
	off = PT_ETH_HLEN + (p->family == 6 ? 40 : 20) + 8;
	if (p->family == 4) {
		__u8 vihl;

		if (pt_load(skb, PT_ETH_HLEN, &vihl, 1))
			return 0;
		off = PT_ETH_HLEN + (vihl & 0xf) * 4 + 8;
	}
	if (pt_load(skb, off, g, sizeof(g)))
		return 0;
	return (g[0] >> 6) == 0 && !(g[1] & 0x80) &&
	       g[8] == (PT_OPT_CLASS >> 8) && g[9] == (PT_OPT_CLASS & 0xff) &&
	       (g[10] & 0x7f) == PT_OPT_TYPE_META;
}

static __always_inline int pt_match(const struct pt_pkt *p, __u32 to_pod)
{
	const __u8 *peer = to_pod ? p->src : p->dst;

	return pt_proto_ok(p) && pt_cidr_ok(p, peer) && pt_l4_filters_ok(p);
}

#endif /* PODTAP_FILTER_H */
