// SPDX-License-Identifier: GPL-2.0
/* Benchmark sink: counts the packets arriving at the collector side and drops
 * them at tc ingress, so what is measured is the capture, not a receiver. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct sink_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_count);
} sink_count SEC(".maps");

SEC("tc")
int sink(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct sink_count *c = bpf_map_lookup_elem(&sink_count, &zero);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	return TC_ACT_SHOT;
}

char _license[] SEC("license") = "GPL";
