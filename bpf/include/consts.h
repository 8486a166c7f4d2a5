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

/* Large frames. 1 (spec.tunnel.largeFrames Segment, where the kernel can): a
 * TCP GSO super-packet leaves once, encapsulated, and the kernel's GSO (or the
 * NIC's UDP-tunnel segmentation) cuts it into TCP segments, each a complete
 * tunnel packet; the collector rebuilds the super-packet by TCP sequence.
 * 0 (Fragment): every frame larger than the MTU travels as inner IP
 * fragments cut here, for receivers that want IP fragments. */
#ifndef PT_SEGMENT_TCP
#define PT_SEGMENT_TCP 1
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
#define PT_SEG_HDR_MAX 256      /* longest headers (L2..TCP options) of a segmented super-packet */
#define PT_GSO_STEP 0xfff       /* most bytes one bpf_skb_adjust_room() may add or remove */
#define PT_GSO_STEPS 16         /* steps to move a GSO size by up to 65535 */
/* A GSO packet this long or longer exceeds a device's default GSO size
 * (GSO_LEGACY_MAX_SIZE): the kernel would segment it in software before the
 * device (netif_skb_features()). Such super-packets are fragmented instead.
 * (Added while chasing the 9000-byte uplink's drops in validate_xmit_skb();
 * it did not remove them: docs/datapath.md.) */
#define PT_GSO_MAX 65536
#define PT_FRAG_TRACK 4096      /* fragmented datagrams whose first fragment matched, remembered */

/* podtap metadata option: Geneve option class in the experimental range
 * (RFC 8926 §7.2: 0xFF00-0xFFFF) and its types. */
#define PT_OPT_CLASS 0xFF70
#define PT_OPT_TYPE_META 0x01   /* per-piece metadata (struct pt_meta) */
#define PT_OPT_TYPE_ANNOUNCE 0x02 /* agent announcement (sent by userspace) */
#define PT_META_VERSION 2      /* 2: flow, TCP_SEG, CSUM (no checksum sink) */

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

/* What the tap tells the tunnel program about a copy travels in the copy's
 * skb->cb (the tc programs' scratch words, kept by bpf_clone_redirect() and by
 * the synchronous transmit to the capture device): no skb->mark bit is ever
 * set, on a copy or on the pod's packet, so podtap never collides with the
 * marks CNIs use (docs/datapath.md: Marks), and pieces leave with mark 0.
 *   cb[0] PT_CB_MAGIC | PT_CB_TO_POD, or PT_CB_CARRIER (a stashed frame's
 *         carrier on its second pass through the capture device)
 *   cb[1] ifindex of the tapped interface
 *   cb[2] flow hash of the frame (the tunnel's outer source port and stream)
 * The tap restores the pod's packet's cb words after the clone. */
#define PT_CB_MAGIC 0x7a700000u
#define PT_CB_MAGIC_MASK 0xffff0000u
#define PT_CB_TO_POD 0x00000001u    /* copy taken at the veth's egress (towards the pod) */
#define PT_CB_CARRIER 0x7a70ca00u   /* carrier clone: pass it to the capture veth */

/* A carrier names its stash slot in its first bytes (they are overwritten:
 * the frame itself waits in the cache): PT_CARRIER_MAGIC (16 bits), the stash
 * key (16 bits) and the slot's generation (32 bits), all big-endian. */
#define PT_CARRIER_MAGIC 0x7ac4
#define PT_CARRIER_TAG_LEN 8

/* Stash slots per CPU. Slot 0 serves frames cut at once in the tunnel
 * program; slots 1.. hold frames waiting for the emit stage. Each is a cache
 * entry. PT_NR_CPUS * PT_SLOTS must fit the carrier tag's 16-bit key. */
#ifndef PT_SLOTS
#define PT_SLOTS 16
#endif

/* Stash slots a large frame tries before it is cut here (or, with an
 * offloaded checksum, lost as noSlot): every slot of its own CPU's ring, then
 * as many of the next CPU's ring (its carrier still goes to this CPU's
 * queue; only slot 0 is a CPU's own). Each try is one spin-locked map lookup,
 * paid only while the slots tried are busy. Why not 4 tries: a backlog poll
 * hands the tap up to 64 frames (dev_weight) before the carriers' NAPI runs,
 * and under qemu's TCG, where softirqs fall to ksoftirqd, 4 tries still lost
 * 1 of 92 frames as noSlot in a VXLAN capture on 5.10 (CI, 2026-12-06). */
#ifndef PT_CLAIM_TRIES
#define PT_CLAIM_TRIES (2 * (PT_SLOTS - 1))
#endif
/* Frames up to this size without an offloaded checksum are cut at once in the
 * tunnel program: their buffer is small anyway, and a burst of pod-made
 * fragments must not wait for a slot. Larger ones, and every frame whose
 * checksum a device is still to fill in, go through a carrier. */
#define PT_SYNC_MAX 8192
/* Bytes a carrier keeps at least: the carrier crosses the capture veth,
 * whose disabled transmit checksum offload makes the kernel complete an
 * offloaded checksum in it (so the pieces built in it carry none). It keeps
 * the checksummed header too, whatever its offset. */
#define PT_CARRIER_LEN 256
#define PT_CARRIER_MAX 512
/* The route and next hop towards the collector (bpf_fib_lookup(), a good
 * part of a small frame's cost) are looked up again after this long, on each
 * CPU: a change of route or neighbour reaches the tunnel within it. */
#define PT_ROUTE_TTL_NS 1000000ull

/* A slot whose carrier has not arrived after this long is reclaimed. */
#define PT_SLOT_TIMEOUT_NS 100000000ull

/* UDP source ports of the tunnel: PT_SPORT_BASE + 14 bits that mix the
 * instance, the CPU and the frame's flow bucket, so flows spread over ECMP
 * paths and receive queues (RFC 8926 §3.3, RFC 7348 §5), while each sequence
 * stream — (instance, CPU, flow bucket) — keeps one 5-tuple: ECMP and the
 * collector's SO_REUSEPORT hashing keep it in order on one path and worker. */
#define PT_SPORT_BASE 0xC000
/* Flow buckets per CPU: streams of sequence numbers, each with its own outer
 * source port (a power of two). */
#define PT_FLOW_BUCKETS 16

/* bpf_clone_redirect() to the uplink returns the device's verdict
 * (include/linux/netdevice.h): NET_XMIT_SUCCESS, or NET_XMIT_DROP (1) when its
 * qdisc, or a veth peer's backlog, was full or a program there dropped it, or
 * NET_XMIT_CN (2) when a qdisc dropped a packet of the flow (the noop qdisc of
 * a device being reconfigured drops every packet with CN). */
#define PT_NET_XMIT_SUCCESS 0

_Static_assert(PT_NR_CPUS * PT_SLOTS <= 0x10000, "stash keys must fit the carrier tag");
_Static_assert((PT_FLOW_BUCKETS & (PT_FLOW_BUCKETS - 1)) == 0, "flow buckets: a power of two");

#endif /* PODTAP_CONSTS_H */
