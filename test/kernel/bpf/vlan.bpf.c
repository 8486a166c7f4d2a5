// SPDX-License-Identifier: GPL-2.0
/* Test helper: tag every packet with VLAN 100 the way a VLAN device on a
 * link with transmit VLAN offload does: in skb->vlan_tci, not in the frame. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TEST_VLAN_ID 100 /* the tag the test looks for */

SEC("tc")
int vlan_tag(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), TEST_VLAN_ID);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
