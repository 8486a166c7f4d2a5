// SPDX-License-Identifier: GPL-2.0
/* Probe: atomic operations that return the old value (BPF_FETCH, kernel 5.12). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_map SEC(".maps");

SEC("tc")
int probe(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&probe_map, &zero);

	if (v && __sync_fetch_and_add(v, 1) == 1)
		return TC_ACT_OK;
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
