// SPDX-License-Identifier: GPL-2.0
/* Test helper: skb->mark as other programs on a node see it.
 *   mark_set    sets the mark a CNI might have set (marks[0]) and lets the
 *               next filter run
 *   mark_count  counts packets by mark: [1] with mark 0, [2] with another,
 *               [3] the OR of the others, [4] with a mark other than marks[0];
 *               only UDP packets to port [5] when [5] is set (a node's own
 *               packets read a "mark" that is no mark: skb->mark shares its
 *               word with reserved_tailroom, which the kernel's MLD and
 *               IGMPv3 reports set, 0xd4 on a 1500-byte uplink) */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __u64);
} marks SEC(".maps");

static __always_inline __u64 *slot(__u32 k)
{
	return bpf_map_lookup_elem(&marks, &k);
}

SEC("tc")
int mark_set(struct __sk_buff *skb)
{
	__u64 *want = slot(0);

	if (want)
		skb->mark = (__u32)*want;
	return TC_ACT_UNSPEC;
}

/* the UDP destination port of an IPv4 or IPv6 packet without extension
 * headers or IPv4 options, or 0 */
static __always_inline __u16 udp_dport(struct __sk_buff *skb)
{
	__u16 proto = bpf_ntohs(skb->protocol), dport;
	__u8 l4;
	__u32 at;

	if (proto == ETH_P_IP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 9, &l4, 1))
			return 0;
		at = ETH_HLEN + 20;
	} else if (proto == ETH_P_IPV6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &l4, 1))
			return 0;
		at = ETH_HLEN + 40;
	} else {
		return 0;
	}
	if (l4 != IPPROTO_UDP || bpf_skb_load_bytes(skb, at + 2, &dport, 2))
		return 0;
	return bpf_ntohs(dport);
}

SEC("tc")
int mark_count(struct __sk_buff *skb)
{
	__u64 *zero = slot(1), *other = slot(2), *bits = slot(3), *changed = slot(4), *want = slot(0);
	__u64 *port = slot(5);

	if (!zero || !other || !bits || !changed || !want || !port)
		return TC_ACT_UNSPEC;
	if (*port && udp_dport(skb) != *port)
		return TC_ACT_UNSPEC;
	if (skb->mark == 0) {
		__sync_fetch_and_add(zero, 1);
	} else {
		__sync_fetch_and_add(other, 1);
		__sync_fetch_and_or(bits, skb->mark);
	}
	if (skb->mark != (__u32)*want)
		__sync_fetch_and_add(changed, 1);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
