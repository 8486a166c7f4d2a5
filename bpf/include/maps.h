/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps of one podtap object. The agent loads the object once, pins the maps
 * under /sys/fs/bpf/podtap/<object>/maps/ and shares them between every
 * interface the tap is attached to.
 */
#ifndef PODTAP_MAPS_H
#define PODTAP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"

/* Runtime configuration written by the agent after load, before attach: node
 * facts that do not bound anything (so they need no recompile). */
struct pt_config {
	__u32 enabled;          /* 0: the tap passes everything untouched */
	__u32 capture_ifindex;  /* device whose egress runs the tunnel program */
	__u32 instance;         /* object id carried in pt_meta (low 16 bits) */
	__u32 route_ifindex;    /* device of the route to the collector (FIB lookup) */
	__u8 src[16];           /* outer source address (IPv4 in the first 4 bytes) */
	__u8 dst[16];           /* collector address (IPv4 in the first 4 bytes) */
	__u64 budget_packets;   /* stop mirroring after this many packets; 0 = no limit */
	__u64 budget_bytes;     /* ... or this many bytes; 0 = no limit */
	__u64 expires_ns;       /* stop mirroring at this bpf_ktime_get_ns() time
				 * (CLOCK_MONOTONIC): the earlier of the policy's
				 * deadline and the lease the agent renews, so a
				 * dead agent's taps go quiet by themselves;
				 * 0 = never */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_config);
} pt_config SEC(".maps");

/* Counters by reason; the numbers are part of the interface with userspace
 * (src/datapath/counters.ts) and never change meaning. */
enum pt_reason {
	PT_C_SEEN = 0,          /* tap: packets that reached an attached hook (not counted
	                         * here: the agent sums skipOwn, filtered and matched) */
	PT_C_SKIP_OWN = 1,      /* tap: podtap's own traffic, never mirrored */
	PT_C_FILTERED = 2,      /* tap: did not match the policy's filter */
	PT_C_MATCHED = 3,       /* tap: matched the filter */
	PT_C_SAMPLED_OUT = 4,   /* tap: matched, skipped by 1-in-N sampling */
	PT_C_RATE_LIMITED = 5,  /* tap: matched, over the rate limit (lost) */
	PT_C_CLONE_ERR = 6,     /* tap: clone to the capture device failed (lost) */
	PT_C_TUNNEL_IN = 7,     /* tunnel: copies received */
	PT_C_MIRRORED = 8,      /* tunnel: copies sent (all pieces left) */
	PT_C_FRAGMENTED = 9,    /* tunnel: copies that needed more than one piece */
	PT_C_PIECES = 10,       /* tunnel: pieces sent */
	PT_C_TRUNCATED = 11,    /* tunnel: copies cut to the snap length */
	PT_C_OVERSIZE = 12,     /* tunnel: frames larger than the cache, sent cut */
	PT_C_NO_ROUTE = 13,     /* tunnel: no route or neighbour to the collector (lost) */
	PT_C_REDIRECT_ERR = 14, /* tunnel: a piece could not be sent (lost) */
	PT_C_BUSY = 15,         /* tunnel: nested run on a busy CPU slot (lost) */
	PT_C_FOREIGN = 16,      /* tunnel: untagged packet on the capture device, dropped */
	PT_C_SHAPE_ERR = 17,    /* tunnel: resizing the copy failed (lost) */
	PT_C_MTU = 18,          /* tunnel: route MTU below the compiled MTU (lost) */
	PT_C_CSUM_UNSUPP = 19,  /* (no longer counted: every offloaded checksum kind is handled) */
	PT_C_SLOT_BUSY = 20,    /* tunnel: stash slots all in use: cut synchronously */
	PT_C_CARRIER_LOST = 21, /* emit: a stashed frame's carrier never arrived (lost) */
	PT_C_LIMIT = 22,        /* tap: matched after a limit was reached (budget, deadline, lease) */
	PT_C_XMIT_DROP = 23,    /* tunnel: the uplink dropped a piece; rest of the frame not sent (lost) */
	PT_C_SEGMENTED = 24,    /* tunnel: TCP super-packets sent once, for the kernel to segment */
	PT_C_CARRIER_STALE = 25, /* emit: a carrier whose slot was reclaimed (its frame counted carrierLost) */
	PT_C_NO_SLOT = 26,      /* tunnel: every stash slot waiting, frame with an offloaded checksum (lost) */
	PT_C_NODE_RATE = 27,    /* tap: matched, within the policy's own rate, over the node's mirror budget (lost) */
	PT_C_MAX = 28,
};

struct pt_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_C_MAX);
	__type(key, __u32);
	__type(value, struct pt_count);
} pt_counters SEC(".maps");

/* Per-CPU tunnel state. BH is off while tc programs run, so the only way to
 * re-enter on the same CPU is through our own redirects: busy guards it. */
struct pt_cpu {
	__u32 busy;
	__u32 ring;             /* next stash slot (1 .. PT_SLOTS-1) */
	__u32 seq[PT_FLOW_BUCKETS]; /* next frame number of each of this CPU's streams */
	__u64 route_ns;         /* when the route below was looked up */
	__u32 route_ifindex;    /* device towards the collector */
	__u8 route_macs[12];    /* its next hop's MAC address, then its own */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_cpu);
} pt_cpu SEC(".maps");

/* Identifications of the inner IP fragments we make, shared by every CPU so
 * that two CPUs never give two frames the same one (16 bits for IPv4, 32 for
 * IPv6: a standard receiver joins fragments by it, RFC 4963). */
struct pt_ids {
	struct bpf_spin_lock lock;      /* (a value-returning atomic needs BPF ISA v3) */
	__u32 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_ids);
} pt_ids SEC(".maps");

/* Ownership of each stash slot (key as pt_cache), handed from the tunnel
 * program to the emit stage of whatever CPU cuts it: a slot reclaimed after
 * its carrier was presumed lost gets a new generation, and a late carrier of
 * the old one finds out instead of cutting another frame's bytes. */
enum pt_slot_state {
	PT_SLOT_FREE = 0,
	PT_SLOT_FILLING = 1,    /* the tunnel program copies a frame in */
	PT_SLOT_STASHED = 2,    /* waiting for its carrier */
	PT_SLOT_CUTTING = 3,    /* the emit stage cuts it */
};

struct pt_slot {
	struct bpf_spin_lock lock;
	__u32 state;
	__u32 gen;
	__u32 pad;
	__u64 stashed_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_NR_CPUS * PT_SLOTS);
	__type(key, __u32);
	__type(value, struct pt_slot);
} pt_slot SEC(".maps");

/* Scratch cache: PT_SLOTS entries per CPU, at cpu * PT_SLOTS + slot. An ARRAY,
 * not a PERCPU_ARRAY: per-CPU values are limited to 32 KB. */
struct pt_cache {
	__u8 data[PT_CACHE_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_NR_CPUS * PT_SLOTS);
	__type(key, __u32);
	__type(value, struct pt_cache);
} pt_cache SEC(".maps");

/* Sampling counter and token bucket, global so the policy's figures hold for
 * the node as a whole, not per CPU. */
struct pt_limit {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 sample;           /* matched packets, for 1-in-N */
	__u64 last_ns;          /* last refill */
	__u64 pkt_tokens;       /* in packets * 1e9 (ns units) */
	__u64 byte_tokens;      /* in bytes * 1e9 */
	__u64 admitted_packets; /* mirrored so far, against the budget */
	__u64 admitted_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_limit);
} pt_limit SEC(".maps");

/* The node's mirror budget (podtap agent --node-max-packets-per-second,
 * --node-max-bytes-per-second): one token bucket for every podtap object on
 * the node. The agent pins it once under its pin root and every object it or
 * `podtap sniff` loads gets that map in place of its own copy
 * (src/datapath/node-budget.ts), so N policies tapping one pod still mirror
 * at most the node's rate between them. The agent writes the rates; the
 * bucket state is the programs'. The layout is part of the pinned interface:
 * a change needs a new pin name (NODE_BUDGET_PIN). */
struct pt_node {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 pps;              /* packets per second; 0 = no packet budget */
	__u64 bps;              /* bytes per second; 0 = no byte budget */
	__u64 last_ns;          /* last refill */
	__u64 pkt_tokens;       /* in packets * 1e9 (ns units) */
	__u64 byte_tokens;      /* in bytes * 1e9 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_node);
} pt_node SEC(".maps");

/* Fragmented datagrams whose first fragment matched a port or TCP-flag
 * filter: their later fragments, which carry no L4 header, match too. */
struct pt_frag_key {
	__u8 family;
	__u8 proto;
	__u16 pad;
	__u32 id;               /* IPv4 identification or IPv6 Fragment header identification */
	__u8 src[16];
	__u8 dst[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PT_FRAG_TRACK);
	__type(key, struct pt_frag_key);
	__type(value, __u8);
} pt_frags SEC(".maps");

/* Peer CIDR filter (PT_CIDR_FILTER): LPM tries filled by the agent. */
struct pt_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct pt_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pt_lpm4);
	__type(value, __u8);
} pt_cidr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pt_lpm6);
	__type(value, __u8);
} pt_cidr6 SEC(".maps");

static __always_inline void pt_count_n(__u32 reason, __u64 packets, __u64 bytes)
{
	struct pt_count *c = bpf_map_lookup_elem(&pt_counters, &reason);

	if (c) {
		c->packets += packets;
		c->bytes += bytes;
	}
}

static __always_inline void pt_count(__u32 reason, __u64 bytes)
{
	pt_count_n(reason, 1, bytes);
}

#endif /* PODTAP_MAPS_H */
