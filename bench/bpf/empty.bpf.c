// SPDX-License-Identifier: GPL-2.0
/* Benchmark baseline: a tc program that does nothing. Its run time per packet
 * under kernel.bpf_stats_enabled is what the measurement itself costs (the
 * clock reads around every run, and the call), which every program's
 * run_time_ns includes and which a node without stats enabled does not pay. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
