// SPDX-License-Identifier: GPL-2.0
/* Probe: bpf_loop() (kernel 5.17) from a tc program. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

static long cb(__u64 i, void *ctx)
{
	return 0;
}

SEC("tc")
int probe(struct __sk_buff *skb)
{
	bpf_loop(1, cb, 0, 0);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
