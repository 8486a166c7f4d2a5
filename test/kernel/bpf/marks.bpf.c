// SPDX-License-Identifier: GPL-2.0
/* Test helper: skb->mark as other programs on a node see it.
 *   mark_set    sets the mark a CNI might have set (marks[0]) and lets the
 *               next filter run
 *   mark_count  counts packets by mark: [1] with mark 0, [2] with another,
 *               [3] the OR of the others, [4] with a mark other than marks[0] */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
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

SEC("tc")
int mark_count(struct __sk_buff *skb)
{
	__u64 *zero = slot(1), *other = slot(2), *bits = slot(3), *changed = slot(4), *want = slot(0);

	if (!zero || !other || !bits || !changed || !want)
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
