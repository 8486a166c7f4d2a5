/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Compile-time configuration of one podtap data-plane object.
 *
 * Everything that bounds a loop, a copy or an offset is a constant here, so the
 * verifier knows every bound (docs/datapath.md, "Compile-time constants"). The
 * agent passes the policy- and node-specific values with -D; the defaults below
 * only make the file compile on its own (unit tests, editors).
 * src/datapath/config.ts is the single place that turns a capture configuration
 * into these -D flags, and src/wire/sizes.ts holds the same size arithmetic for
 * TypeScript (test/unit/wire/sizes.test.ts compiles this file to compare).
 */
#ifndef PODTAP_CONSTS_H
#define PODTAP_CONSTS_H

/* ---- node and tunnel ---------------------------------------------------- */

/* L3 MTU of the path to the collector (bytes of outer IP packet). */
#ifndef PT_MTU
#define PT_MTU 1500
#endif
/* Outer IP family: 0 = IPv4, 1 = IPv6 (follows the collector's address). */
#ifndef PT_OUTER_V6
#define PT_OUTER_V6 0
#endif
/* Tunnel protocol: PT_TUN_GENEVE (default, carries podtap metadata) or
 * PT_TUN_VXLAN (compatibility: plain inner frames, no metadata). */
#define PT_TUN_GENEVE 1
#define PT_TUN_VXLAN 2
#ifndef PT_TUNNEL
#define PT_TUNNEL PT_TUN_GENEVE
#endif
/* Virtual network identifier written in the Geneve/VXLAN header (< 2^24). */
#ifndef PT_VNI
#define PT_VNI 0
#endif
/* Destination UDP port of the tunnel (IANA: Geneve 6081, VXLAN 4789). */
#ifndef PT_TUNNEL_PORT
#if PT_TUNNEL == PT_TUN_VXLAN
#define PT_TUNNEL_PORT 4789
#else
#define PT_TUNNEL_PORT 6081
#endif
#endif

/* Possible CPUs of the node (/sys/devices/system/cpu/possible): entries of
 * the per-CPU scratch cache. */
#ifndef PT_NR_CPUS
#define PT_NR_CPUS 64
#endif

/* ---- policy ------------------------------------------------------------- */

/* Bytes kept per packet; 0 = the whole frame. */
#ifndef PT_SNAPLEN
#define PT_SNAPLEN 0
#endif
/* Mirror one matching packet in PT_SAMPLE_ONE_IN (1 = every packet). */
#ifndef PT_SAMPLE_ONE_IN
#define PT_SAMPLE_ONE_IN 1
#endif
/* Token-bucket limits on mirrored traffic; 0 = unlimited. The bucket holds one
 * second worth of tokens. */
#ifndef PT_RATE_PPS
#define PT_RATE_PPS 0
#endif
#ifndef PT_RATE_BPS
#define PT_RATE_BPS 0
#endif
/* Protocol filter: OR of PT_P_* bits; 0 = every protocol (and non-IP frames). */
#define PT_P_TCP (1 << 0)
#define PT_P_UDP (1 << 1)
#define PT_P_ICMP (1 << 2)
#define PT_P_ICMPV6 (1 << 3)
#define PT_P_SCTP (1 << 4)
#ifndef PT_PROTO_MASK
#define PT_PROTO_MASK 0
#endif
/* Port filter: PT_NPORTS inclusive ranges {first, last}, matched against either
 * end of a TCP/UDP/SCTP packet; 0 ranges = no port restriction. */
#ifndef PT_NPORTS
#define PT_NPORTS 0
#endif
#ifndef PT_PORT_RANGES
#define PT_PORT_RANGES { { 0, 0 } }
#endif
/* Peer CIDR filter: 1 = the peer address must be in pt_cidr4/pt_cidr6. */
#ifndef PT_CIDR_FILTER
#define PT_CIDR_FILTER 0
#endif
/* TCP flags filter: a TCP packet matches when any of these flag bits is set
 * (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40,
 * CWR 0x80); 0 = no restriction. Other protocols are not affected. */
#ifndef PT_TCP_FLAGS
#define PT_TCP_FLAGS 0
#endif

/* ---- fixed facts -------------------------------------------------------- */

#define PT_ETH_HLEN 14          /* Ethernet header of pod frames (veths carry no tag) */
#define PT_IP_MAX 65535         /* largest IPv4 packet / IPv6 payload + header we copy */
/* Largest frame the cache holds: a 65535-byte IP packet plus its L2 header.
 * Larger GSO frames (BIG TCP) are counted as oversize and sent truncated. */
#define PT_FRAME_MAX (PT_IP_MAX + PT_ETH_HLEN)
#define PT_IPV4_HLEN_MAX 60     /* IHL 15 */
#define PT_IPV6_EXT_MAX 4       /* extension headers walked to find the unfragmentable part */
#define PT_PREFIX_MAX 256       /* longest inner header prefix copied into each piece */

/* podtap metadata option: Geneve option class in the experimental range
 * (RFC 8926 §7.2: 0xFF00-0xFFFF) and its types. */
#define PT_OPT_CLASS 0xFF70
#define PT_OPT_TYPE_META 0x01   /* per-piece metadata (struct pt_meta) */
#define PT_OPT_TYPE_ANNOUNCE 0x02 /* agent announcement (sent by userspace) */
#define PT_META_VERSION 1

/* Outer headers, L3 and up (the MTU counts these). */
#define PT_OUTER_IP_LEN (PT_OUTER_V6 ? 40 : 20)
#define PT_UDP_LEN 8
#define PT_TUN_BASE_LEN 8       /* Geneve fixed header and VXLAN header are both 8 bytes */
#define PT_META_LEN 52          /* sizeof(struct pt_meta) */
#if PT_TUNNEL == PT_TUN_GENEVE
#define PT_TUN_OPT_LEN (4 + PT_META_LEN)  /* option header + metadata */
#else
#define PT_TUN_OPT_LEN 0
#endif
#define PT_OUTER_L3_LEN (PT_OUTER_IP_LEN + PT_UDP_LEN + PT_TUN_BASE_LEN + PT_TUN_OPT_LEN)
/* Everything put in front of an inner frame, outer Ethernet included. */
#define PT_OUTER_LEN (PT_ETH_HLEN + PT_OUTER_L3_LEN)
/* Largest inner frame (L2 included) that fits one outer packet. */
#define PT_PIECE_MAX (PT_MTU - PT_OUTER_L3_LEN)
/* Largest chunk of original bytes a piece carries: the piece minus the smallest
 * inner header prefix (Ethernet + 20-byte IPv4), rounded down to the 8-byte
 * fragment unit. Every piece copies at most this many bytes from the cache. */
#define PT_CHUNK_MAX ((PT_PIECE_MAX - PT_ETH_HLEN - 20) & ~7)

/* Scratch cache value size. The verifier checks `max offset + max size <=
 * value size` for the chunk copy out of the cache, and it does not relate the
 * offset to the size, so the value must hold PT_CHUNK_MAX bytes starting at the
 * last possible offset PT_FRAME_MAX - 1 (docs/datapath.md). The agent computes
 * this (src/wire/sizes.ts) and passes it; a test proves the verifier refuses
 * one byte less. */
#ifndef PT_CACHE_SIZE
#define PT_CACHE_SIZE (PT_FRAME_MAX - 1 + PT_CHUNK_MAX)
#endif

/* Most pieces one frame can need: the smallest chunk is that of an IPv6 frame
 * with the longest prefix; bounded by the bpf_loop below. */
#define PT_PIECES_MAX 128

/* skb->mark tag: copies carry PT_MARK_MAGIC in the top bits while they travel
 * from the tap to the tunnel program, and pieces carry it with PT_MARK_PIECE on
 * their way out, so no podtap program ever taps podtap's own traffic. A
 * carrier names its stash slot in the low bits: forwarding through the veth
 * clears skb->priority, not the mark. */
#define PT_MARK_MASK 0xfff00000u
#define PT_MARK_MAGIC 0x7a700000u
#define PT_MARK_TO_POD 0x00080000u  /* copy taken at the veth's egress (towards the pod) */
#define PT_MARK_PIECE 0x00040000u   /* a tunnel piece on its way to the collector */
#define PT_MARK_CARRIER 0x00020000u /* stage-1 carrier of a stashed frame (see pt_emit) */
#define PT_MARK_KEY 0x0000ffffu     /* carrier: its stash key, cpu * PT_SLOTS + slot */

/* Stash slots per CPU. Slot 0 serves frames sent in one piece, synchronously;
 * slots 1.. hold frames waiting for the emit stage. Each is a cache entry.
 * PT_NR_CPUS * PT_SLOTS must fit PT_MARK_KEY. */
#ifndef PT_SLOTS
#define PT_SLOTS 16
#endif
/* Frames up to this size are cut synchronously in the tunnel program: their
 * buffer is small anyway, and a burst of pod-made fragments must not wait for
 * a slot. Larger ones (GSO super-packets) go through a carrier. */
#define PT_SYNC_MAX 8192
/* Bytes a carrier keeps: enough for any checksum offset it may still carry. */
#define PT_CARRIER_LEN 256
/* A slot whose carrier has not arrived after this long is reclaimed. */
#define PT_SLOT_TIMEOUT_NS 100000000ull

/* UDP source ports of the tunnel: PT_SPORT_BASE + a 14-bit stream id, so each
 * (instance, CPU) sequence stream keeps one 5-tuple: ECMP and the collector's
 * SO_REUSEPORT hashing keep it in order on one path and one worker. */
#define PT_SPORT_BASE 0xC000

/* bpf_clone_redirect() to the uplink returns the device's verdict: NET_XMIT_DROP
 * (include/linux/netdevice.h) when its qdisc, or a veth peer's backlog, was
 * full or a program there dropped it; the piece is gone. */
#define PT_NET_XMIT_DROP 1

_Static_assert(PT_NR_CPUS * PT_SLOTS <= PT_MARK_KEY + 1, "stash keys must fit the mark");

#endif /* PODTAP_CONSTS_H */
