// SPDX-License-Identifier: GPL-2.0
/* Test helper: a second tc filter that counts the packets it sees, to prove
 * that podtap's tap (TC_ACT_UNSPEC) lets the next filter run. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} witness_count SEC(".maps");

SEC("tc")
int witness(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&witness_count, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
