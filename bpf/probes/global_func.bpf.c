// SPDX-License-Identifier: GPL-2.0
/* Probe: a global (separately verified) function taking the tc context
 * (kernel 5.6), which the data plane's bounded loop calls when bpf_loop() is
 * missing. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

__attribute__((noinline)) int probe_global(struct __sk_buff *skb, __u32 k)
{
	return skb->len > k;
}

SEC("tc")
int probe(struct __sk_buff *skb)
{
	int i, n = 0;

	for (i = 0; i < 4; i++)
		n += probe_global(skb, i);
	return n ? TC_ACT_UNSPEC : TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
