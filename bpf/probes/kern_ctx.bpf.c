// SPDX-License-Identifier: GPL-2.0
/* Probe: the bpf_cast_to_kern_ctx() kfunc (kernel 6.2) from a tc program,
 * reading struct sk_buff through CO-RE. Returns 1 when the length it reads
 * there is the context's. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct sk_buff {
	unsigned int len;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

SEC("tc")
int probe(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	return skb->len == ctx->len ? 1 : 2;
}

char _license[] SEC("license") = "GPL";
