// SPDX-License-Identifier: GPL-2.0
/* Probe: bpf_probe_read_kernel() (kernel 5.5) from a tc program, of the
 * struct sk_buff behind the context at an offset CO-RE resolves. Returns 1
 * when the length it reads is the context's (a locked-down kernel may load
 * the program and then read zeros). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct sk_buff {
	unsigned int len;
} __attribute__((preserve_access_index));

SEC("tc")
int probe(struct __sk_buff *ctx)
{
	struct sk_buff *skb = (void *)ctx;

	return BPF_CORE_READ(skb, len) == ctx->len ? 1 : 2;
}

char _license[] SEC("license") = "GPL";
