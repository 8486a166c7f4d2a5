// SPDX-License-Identifier: GPL-2.0
/* Probe: an XDP program that accepts multi-buffer frames (BPF_F_XDP_HAS_FRAGS,
 * kernel 5.18). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp.frags")
int probe(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
