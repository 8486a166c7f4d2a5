// SPDX-License-Identifier: GPL-2.0
/*
 * podtap data plane: the entry programs.
 *
 *   pt_tap_ingress / pt_tap_egress   clsact ingress / egress of a pod's
 *       host-side veth. Filter, sample, rate-limit; clone the frame to the
 *       capture device; leave the pod's packet untouched (TC_ACT_UNSPEC, so the
 *       next filter, e.g. the CNI's, still runs).
 *
 *   pt_tunnel   clsact egress of the capture device. Owns the clone: wraps it
 *       in Geneve (or VXLAN) towards the collector — whole when it fits, as one
 *       super-packet for the kernel to segment when it is TCP GSO, else cut
 *       into pieces here or (large frames, offloaded checksums) by pt_emit.
 *
 *   pt_carrier (XDP) / pt_emit   the capture device's peer: the emit stage,
 *       which cuts a stashed frame into pieces built in its small carrier.
 *
 * Constants: include/consts.h. Wire format: include/wire.h.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/consts.h"
#include "include/compat.h"
#include "include/maps.h"
#include "include/parse.h"
#include "include/filter.h"
#include "include/csum.h"
#include "include/encap.h"
#include "include/frag.h"
#include "include/kern.h"
#include "include/wire.h"
#include "include/segment.h"

#define PT_NS 1000000000ull     /* token units per packet / byte (ns resolution) */
#define PT_RATE_LIMITED ((PT_RATE_PPS) != 0 || (PT_RATE_BPS) != 0)

/* *@tokens (units * PT_NS) refilled by @elapsed ns at @rate units per second,
 * up to one second's worth: the add cannot wrap (rates are at most 1e10,
 * NODE_RATE_MAX in src/datapath/node-budget.ts and the API's rate limit) */
static __always_inline void pt_refill(__u64 *tokens, __u64 elapsed, __u64 rate)
{
	__u64 cap = PT_NS * rate, add = elapsed * rate;

	if (*tokens >= cap || add >= cap - *tokens)
		*tokens = cap;
	else
		*tokens += add;
}

/*
 * One token bucket (packets and bytes, each holding one second at its rate;
 * a rate of 0 = none): refill it to @now, then take one packet of @bytes if
 * both have room; 1 = taken. The caller holds the bucket's lock. @now was
 * read before the lock (no helper may run under it): another CPU may have
 * taken the lock with a later time meanwhile, and then nothing has elapsed
 * for this one — never a negative span read as a full bucket.
 */
static __always_inline int pt_bucket_take(__u64 *last_ns, __u64 *pkt_tokens, __u64 *byte_tokens,
					  __u64 now, __u64 pps, __u64 bps, __u32 bytes)
{
	__u64 elapsed = 0;
	int ok = 1;

	if (now > *last_ns) {
		elapsed = now - *last_ns;
		*last_ns = now;
	}
	if (elapsed > PT_NS)
		elapsed = PT_NS;        /* the bucket holds one second */
	if (pps) {
		pt_refill(pkt_tokens, elapsed, pps);
		ok = *pkt_tokens >= PT_NS;
	}
	if (bps) {
		pt_refill(byte_tokens, elapsed, bps);
		ok = ok && *byte_tokens >= PT_NS * bytes;
	}
	if (ok) {
		if (pps)
			*pkt_tokens -= PT_NS;
		if (bps)
			*byte_tokens -= PT_NS * bytes;
	}
	return ok;
}

/* The node's mirror budget (pt_node, shared by every object on the node);
 * 1 = within it. */
static __always_inline int pt_node_admit(__u32 bytes)
{
	__u32 zero = 0;
	struct pt_node *node = bpf_map_lookup_elem(&pt_node, &zero);
	__u64 now;
	int ok;

	/* unlocked reads only skip the lock where the agent set no budget;
	 * the rates used are read again under it */
	if (!node || (!node->pps && !node->bps))
		return 1;
	now = bpf_ktime_get_ns();       /* before the lock: see pt_bucket_take */
	bpf_spin_lock(&node->lock);
	ok = pt_bucket_take(&node->last_ns, &node->pkt_tokens, &node->byte_tokens,
			    now, node->pps, node->bps, bytes);
	bpf_spin_unlock(&node->lock);
	return ok;
}

/* The expiry (deadline or lease), 1-in-N sampling, the policy's token
 * bucket, the node's mirror budget and the policy's budget (limits: runtime
 * settings, so a new limit needs no recompile); 1 = mirror. */
static __always_inline int pt_admit(const struct pt_config *cfg, __u32 bytes, __u32 *reason)
{
	__u32 zero = 0;
	struct pt_limit *lim = 0;

	if (cfg->expires_ns && bpf_ktime_get_ns() >= cfg->expires_ns) {
		*reason = PT_C_LIMIT;
		return 0;
	}
	if (PT_SAMPLE_ONE_IN > 1 || PT_RATE_LIMITED || cfg->budget_packets || cfg->budget_bytes)
		lim = bpf_map_lookup_elem(&pt_limit, &zero);
	if (lim) {
		if (PT_SAMPLE_ONE_IN > 1 &&
		    PT_FETCH_ADD(&lim->lock, &lim->sample, 1) % PT_SAMPLE_ONE_IN != 0) {
			*reason = PT_C_SAMPLED_OUT;
			return 0;
		}
		if (PT_RATE_LIMITED) {
			__u64 now = bpf_ktime_get_ns();     /* before the lock: see pt_bucket_take */
			int ok;

			bpf_spin_lock(&lim->lock);
			ok = pt_bucket_take(&lim->last_ns, &lim->pkt_tokens, &lim->byte_tokens,
					    now, PT_RATE_PPS, PT_RATE_BPS, bytes);
			bpf_spin_unlock(&lim->lock);
			if (!ok) {
				*reason = PT_C_RATE_LIMITED;
				return 0;
			}
		}
		/* a policy past its budget takes nothing from the node's (the
		 * exact check, atomic, follows) */
		if ((cfg->budget_packets && lim->admitted_packets >= cfg->budget_packets) ||
		    (cfg->budget_bytes && lim->admitted_bytes >= cfg->budget_bytes)) {
			*reason = PT_C_LIMIT;
			return 0;
		}
	}
	/* after the policy's own bucket: a copy the policy would not send takes
	 * nothing from the other policies' share */
	if (!pt_node_admit(bytes)) {
		*reason = PT_C_NODE_RATE;
		return 0;
	}
	if (lim &&
	    ((cfg->budget_packets && PT_FETCH_ADD(&lim->lock, &lim->admitted_packets, 1) >= cfg->budget_packets) ||
	     (cfg->budget_bytes && PT_FETCH_ADD(&lim->lock, &lim->admitted_bytes, bytes) >= cfg->budget_bytes))) {
		*reason = PT_C_LIMIT;
		return 0;
	}
	return 1;
}

static __always_inline int pt_tap(struct __sk_buff *skb, const __u32 to_pod)
{
	__u32 zero = 0, reason = 0, len = skb->len;
	__u32 cb0, cb1, cb2;
	struct pt_config *cfg;
	struct pt_pkt pkt;
	long rc;

	cfg = bpf_map_lookup_elem(&pt_config, &zero);
	if (!cfg || !cfg->enabled)
		return TC_ACT_UNSPEC;
	/* (seen: skipOwn + filtered + matched, summed by the agent; one map
	 * update less on every packet) */
	if (pt_parse(skb, &pkt) < 0) {
		pt_count(PT_C_FILTERED, len);
		return TC_ACT_UNSPEC;
	}
	if (pt_is_own_tunnel(skb, &pkt, cfg)) {
		pt_count(PT_C_SKIP_OWN, len);
		return TC_ACT_UNSPEC;
	}
	if (!pt_match(&pkt, to_pod)) {
		pt_count(PT_C_FILTERED, len);
		return TC_ACT_UNSPEC;
	}
	pt_count(PT_C_MATCHED, len);
	if (!pt_admit(cfg, len, &reason)) {
		pt_count(reason, len);
		return TC_ACT_UNSPEC;
	}

	/* The copy carries its origin to the tunnel program in cb (consts.h);
	 * the pod's packet gets its own cb words back at once. */
	cb0 = skb->cb[0];
	cb1 = skb->cb[1];
	cb2 = skb->cb[2];
	skb->cb[0] = PT_CB_MAGIC | (to_pod ? PT_CB_TO_POD : 0);
	skb->cb[1] = skb->ifindex;
	skb->cb[2] = pt_flow_hash(&pkt);
	rc = bpf_clone_redirect(skb, cfg->capture_ifindex, 0);
	skb->cb[0] = cb0;
	skb->cb[1] = cb1;
	skb->cb[2] = cb2;
	/* a positive NET_XMIT code only says the tunnel consumed the clone */
	if (rc < 0)
		pt_count(PT_C_CLONE_ERR, len);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int pt_tap_ingress(struct __sk_buff *skb)
{
	return pt_tap(skb, 0);          /* host-side ingress: sent by the pod */
}

SEC("tc")
int pt_tap_egress(struct __sk_buff *skb)
{
	return pt_tap(skb, 1);          /* host-side egress: to the pod */
}

/* Send the frame in @l as its pieces, every one a clone whose fate (the
 * uplink's NET_XMIT code) is seen and counted; the skb they were built in
 * carries no offloaded checksum (see the carrier) and is consumed. Returns
 * TC_ACT_STOLEN, or TC_ACT_SHOT with *reason set. */
static __always_inline int pt_send_pieces(struct pt_loop *l, __u32 *reason)
{
	struct __sk_buff *skb = l->skb;
	struct pt_work *w = l->w;
	struct pt_plan *p = &w->plan;
	__u32 n = p->cap - p->data_start;

	if (n > p->chunk)
		n = p->chunk;
	/* piece 0's length; the pieces before the last keep it */
	if (bpf_skb_change_tail(skb, PT_OUTER_LEN + p->hdr + n, 0)) {
		*reason = PT_C_SHAPE_ERR;
		return TC_ACT_SHOT;
	}
	*reason = pt_piece(l, 0, 1);
	if (*reason)
		return TC_ACT_SHOT;
	if (p->npieces > 1) {
		*reason = pt_xmit_clone(l);
		if (*reason)
			return TC_ACT_SHOT;
		pt_pieces_middle(l);
		if (w->err) {
			*reason = w->err;
			return TC_ACT_SHOT;
		}
		*reason = pt_piece(l, p->npieces - 1, 0);
		if (*reason)
			return TC_ACT_SHOT;
	}
	/* the last (or only) piece leaves as a clone too: with bpf_redirect()
	 * an uplink that refused it (full queue or backlog) would go unseen */
	*reason = pt_xmit_clone(l);
	if (*reason)
		return TC_ACT_SHOT;
	if (p->npieces > 1)
		pt_count(PT_C_FRAGMENTED, w->orig_len);
	pt_count_n(PT_C_PIECES, p->npieces, 0);
	pt_count(PT_C_MIRRORED, w->orig_len);
	return TC_ACT_STOLEN;
}

/* A hardware-accelerated VLAN tag (skb->vlan_tci) is part of the frame on
 * the wire, and tcpdump shows it: it goes into the copy's bytes, after the
 * MAC addresses, and off the skb — it would otherwise be inserted into the
 * outer frame by the uplink. 0 or -1. */
static __always_inline int pt_vlan_into_frame(struct __sk_buff *skb)
{
	__u8 macs[2 * ETH_ALEN];
	__u16 tag[2];

	tag[0] = skb->vlan_proto;       /* network order already */
	tag[1] = bpf_htons(skb->vlan_tci);
	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) ||
	    bpf_skb_change_head(skb, sizeof(tag), 0) ||
	    bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) ||
	    bpf_skb_store_bytes(skb, sizeof(macs), tag, sizeof(tag), 0))
		return -1;
	/* clears the accelerated tag; skb->protocol is not a VLAN, so no tag in
	 * the frame moves into its place */
	return bpf_skb_vlan_pop(skb) ? -1 : 0;
}

/* A fresh identification for a frame we fragment, unique across CPUs until
 * the counter wraps (16 bits used for IPv4, 32 for IPv6). */
static __always_inline __u32 pt_new_id(void)
{
	__u32 zero = 0;
	struct pt_ids *ids = bpf_map_lookup_elem(&pt_ids, &zero);

	__u32 id;

	if (!ids)
		return 0;
	bpf_spin_lock(&ids->lock);
	id = ids->next++;
	bpf_spin_unlock(&ids->lock);
	return id;
}

/*
 * Claim stash slot @key for a frame (the emit stage cuts it once its carrier
 * arrives). A slot whose carrier is overdue is reclaimed — its frame counted
 * lost — under a new generation, so that a late carrier of it finds out
 * instead of cutting this frame. Returns the generation, or 0 if every slot
 * is busy.
 */
static __always_inline __u32 pt_slot_claim(__u32 key, __u64 now, __u32 *reclaimed)
{
	struct pt_slot *sl = bpf_map_lookup_elem(&pt_slot, &key);
	__u32 gen = 0;

	*reclaimed = 0;
	if (!sl)
		return 0;
	bpf_spin_lock(&sl->lock);
	if (sl->state == PT_SLOT_FREE ||
	    (sl->state == PT_SLOT_STASHED && now - sl->stashed_ns >= PT_SLOT_TIMEOUT_NS)) {
		*reclaimed = sl->state == PT_SLOT_STASHED;
		sl->state = PT_SLOT_FILLING;
		gen = ++sl->gen;
		if (!gen)
			gen = ++sl->gen;        /* 0 means "no slot" */
	}
	bpf_spin_unlock(&sl->lock);
	return gen;
}

/* Move slot @key of generation @gen from state @from to @to; 1 if it was
 * there. */
static __always_inline int pt_slot_move(__u32 key, __u32 gen, __u32 from, __u32 to, __u64 now)
{
	struct pt_slot *sl = bpf_map_lookup_elem(&pt_slot, &key);
	int ok = 0;

	if (!sl)
		return 0;
	bpf_spin_lock(&sl->lock);
	if (sl->gen == gen && sl->state == from) {
		sl->state = to;
		sl->stashed_ns = now;
		ok = 1;
	}
	bpf_spin_unlock(&sl->lock);
	return ok;
}

/*
 * Stage 1, at egress of the capture device: the copy the tap cloned.
 *
 * A frame that fits one outer packet is wrapped here and now; a TCP
 * super-packet leaves once, for the kernel to segment (segment.h). Others are
 * cut into pieces, each a clone of the skb it is built in. A clone shares its
 * buffer — for a 64 KB frame, a 64 KB buffer per 1.4 KB piece, which is what
 * a receiver's socket accounting (truesize) and the node's memory then see —
 * and the pieces must carry no offloaded checksum a device would write into
 * them. So a frame without one, up to PT_SYNC_MAX, is cut here; any other is
 * stashed in a slot and continues as a small carrier through the capture
 * veth, whose disabled transmit checksum offload makes the kernel complete
 * the checksum in it, and whose peer's XDP program (pt_carrier) makes the
 * kernel copy it into a fresh page-sized buffer; pt_emit cuts the pieces
 * there.
 */
SEC("tc")
int pt_tunnel(struct __sk_buff *skb)
{
	__u32 zero = 0, cb0 = skb->cb[0], len = skb->len, cpu, slot = 0, key, bucket;
	__u32 seq, cap, gen = 0, reclaimed, flags = 0, reason = 0, partial;
	__u64 now;
	struct pt_csum_state st;
	struct pt_config *cfg;
	struct pt_cpu *state;
	struct pt_loop l = {};
	struct pt_work *w;
	int rc = TC_ACT_SHOT;

	/* a carrier's second pass (see below): on to the capture veth */
	if (cb0 == PT_CB_CARRIER)
		return TC_ACT_OK;
	if ((cb0 & PT_CB_MAGIC_MASK) != PT_CB_MAGIC) {
		pt_count(PT_C_FOREIGN, len);
		return TC_ACT_SHOT;
	}
	pt_count(PT_C_TUNNEL_IN, len);
	cfg = bpf_map_lookup_elem(&pt_config, &zero);
	state = bpf_map_lookup_elem(&pt_cpu, &zero);
	if (!cfg || !state)
		return TC_ACT_SHOT;
	if (state->busy) {
		pt_count(PT_C_BUSY, len);
		return TC_ACT_SHOT;
	}
	state->busy = 1;
	now = bpf_ktime_get_ns();
	cpu = bpf_get_smp_processor_id();
	bucket = (skb->cb[2] ^ (skb->cb[2] >> 16)) & (PT_FLOW_BUCKETS - 1);
	seq = state->seq[bucket]++;

	if (skb->vlan_present) {
		if (pt_vlan_into_frame(skb)) {
			reason = PT_C_SHAPE_ERR;
			goto out;
		}
		len = skb->len;
	}

	/* what we carry: at most the cache, at most the snap length */
	cap = len;
	if (cap > PT_FRAME_MAX) {
		cap = PT_FRAME_MAX;
		flags |= PT_F_OVERSIZE | PT_F_TRUNC;
		pt_count(PT_C_OVERSIZE, len);
	}
	if (PT_SNAPLEN && cap > PT_SNAPLEN) {
		cap = PT_SNAPLEN;
		flags |= PT_F_TRUNC;
		pt_count(PT_C_TRUNCATED, len);
	}
	if (cb0 & PT_CB_TO_POD)
		flags |= PT_F_TO_POD;
	(void)flags;            /* VXLAN carries no metadata */
	(void)seq;

	/* slot 0's work area: frames sent from here */
	key = cpu * PT_SLOTS;
	w = bpf_map_lookup_elem(&pt_work, &key);
	if (!w) {
		reason = PT_C_SHAPE_ERR;
		goto out;
	}
	__builtin_memset(&w->outer, 0, sizeof(w->outer));
	w->orig_len = len;
	w->err = 0;
	pt_outer_init(&w->outer, cfg,
		      PT_SPORT_BASE | ((cfg->instance * 0x9e37 + cpu * PT_FLOW_BUCKETS + bucket) & 0x3fff),
		      PT_GENEVE_PROTO_ETH);
	/* the route to the collector, looked up again after PT_ROUTE_TTL_NS */
	if (now - state->route_ns < PT_ROUTE_TTL_NS) {
		w->out_ifindex = state->route_ifindex;
		__builtin_memcpy(w->outer.eth.h_dest, state->route_macs, 2 * ETH_ALEN);
	} else {
		reason = pt_route(skb, cfg, &w->outer, &w->out_ifindex, PT_MTU);
		if (reason)
			goto out;
		state->route_ns = now;
		state->route_ifindex = w->out_ifindex;
		__builtin_memcpy(state->route_macs, w->outer.eth.h_dest, 2 * ETH_ALEN);
	}
#if PT_TUNNEL == PT_TUN_GENEVE
	w->outer.meta.flags = flags;
	w->outer.meta.flow = bucket;
	w->outer.meta.cpu = bpf_htons(cpu);
	w->outer.meta.instance = bpf_htons(cfg->instance);
	w->outer.meta.seq = bpf_htonl(seq);
	w->outer.meta.ifindex = bpf_htonl(skb->cb[1]);
	w->outer.meta.orig_len = bpf_htonl(len);
	w->outer.meta.cap_len = bpf_htonl(cap);
	w->outer.meta.l3_off = bpf_htons(PT_ETH_HLEN);
	w->outer.meta.tstamp = bpf_cpu_to_be64(now);
#endif
	/* pieces leave as the node's own packets: no mark, no priority, and no
	 * departure time (the pod's pacing, which an fq qdisc would honour) */
	skb->mark = 0;
	skb->priority = 0;
	skb->tstamp = 0;

	/* in one go: whole, or a TCP super-packet the kernel segments */
	if (cap == len && (skb->gso_size ? pt_send_segmented(skb, w, len, &reason) :
			   len <= PT_PIECE_MAX && pt_send_whole(skb, w, len, &reason))) {
		if (!reason)
			rc = TC_ACT_STOLEN;
		goto out;
	}
#if PT_TUNNEL == PT_TUN_GENEVE
	/* (a path that declined may have set these) */
	w->outer.meta.flags = flags;
	w->outer.meta.tcp_flags = 0;
	w->outer.meta.l4_off = 0;
#endif

	/* Cut into pieces: here in slot 0, or through a carrier from a ring slot */
	pt_csum_state(skb, &st);
	partial = st.partial || st.not_inet;
	if (partial || cap > PT_SYNC_MAX) {
		__u32 k = 0;
		struct pt_work *rw;

		/* the next slots of this CPU's ring, then of the next CPU's
		 * (consts.h: PT_CLAIM_TRIES) */
		for (int i = 0; i < PT_CLAIM_TRIES && !gen; i++) {
			__u32 c = i < PT_SLOTS - 1 ? cpu : (cpu + 1) % PT_NR_CPUS;

			k = c * PT_SLOTS + 1 + state->ring % (PT_SLOTS - 1);
			state->ring++;
			gen = pt_slot_claim(k, now, &reclaimed);
		}
		if (!gen && partial) {
			/* every slot waiting, and only a carrier can rid this frame
			 * of its offloaded checksum */
			reason = PT_C_NO_SLOT;
			goto out;
		}
		if (!gen) {
			/* every slot waiting: cut this one here, at a higher cost */
			pt_count(PT_C_SLOT_BUSY, len);
		} else {
			key = k;
			slot = k % PT_SLOTS;
			rw = bpf_map_lookup_elem(&pt_work, &key);
			if (!rw) {
				reason = PT_C_SHAPE_ERR;
				goto out;
			}
			if (reclaimed)
				/* its carrier was lost on the way (counted now, once) */
				pt_count(PT_C_CARRIER_LOST, rw->orig_len);
			rw->orig_len = len;
			rw->out_ifindex = w->out_ifindex;
			rw->err = 0;
			__builtin_memcpy(&rw->outer, &w->outer, sizeof(w->outer));
			w = rw;
		}
	}
	l.cache = bpf_map_lookup_elem(&pt_cache, &key);
	l.key = key;
	if (!l.cache) {
		reason = PT_C_SHAPE_ERR;
		goto out;
	}
	l.skb = skb;
	l.w = w;

	/* Copy the frame into the slot's cache and plan its pieces. */
	{
		__u64 size = cap;

		barrier_var(size);
		if (size < 1 || size > PT_FRAME_MAX ||
		    bpf_skb_load_bytes(skb, 0, l.cache->data, pt_at_least_1(size))) {
			reason = PT_C_SHAPE_ERR;
			goto out;
		}
	}
	reason = pt_plan_make(l.cache, w, cap, cap > PT_PIECE_MAX ? pt_new_id() : 0);
	if (reason)
		goto out;
#if PT_TUNNEL == PT_TUN_GENEVE
	w->outer.meta.kind = w->plan.kind;
	w->outer.meta.cap_len = bpf_htonl(w->plan.cap);
	w->outer.meta.fix[0] = bpf_htons(w->plan.fix[0]);
	w->outer.meta.fix[1] = bpf_htons(w->plan.fix[1]);
	w->outer.meta.fix[2] = bpf_htons(w->plan.fix[2]);
	w->outer.meta.fix[3] = bpf_htons(w->plan.fix[3]);
	w->outer.tun[2] = w->plan.geneve_proto >> 8;
	w->outer.tun[3] = w->plan.geneve_proto & 0xff;
#endif
	if (!slot) {
		rc = pt_send_pieces(&l, &reason);
		goto out;
	}

	/* Stash: the carrier keeps a few bytes (any checksum the capture veth
	 * completes in it included), names its slot in its first ones, and
	 * goes to the capture veth's queue of this CPU (so each CPU's carriers
	 * are cut on that CPU while it can), as a clone whose fate is seen. */
	{
		__u32 clen = PT_CARRIER_LEN, need = (__u32)st.start + st.offset + 4;
		__u8 tag[PT_CARRIER_TAG_LEN];
		__u16 v;
		__u32 g;

		if (partial && st.start >= 0 && need > clen)
			clen = need;
		if (clen > len)
			clen = len;
		if (clen > PT_CARRIER_MAX || bpf_skb_change_tail(skb, clen, 0)) {
			reason = PT_C_SHAPE_ERR;
			goto out;
		}
		v = bpf_htons(PT_CARRIER_MAGIC);
		__builtin_memcpy(&tag[0], &v, 2);
		v = bpf_htons(key);
		__builtin_memcpy(&tag[2], &v, 2);
		g = bpf_htonl(gen);
		__builtin_memcpy(&tag[4], &g, 4);
		if (bpf_skb_store_bytes(skb, 0, tag, sizeof(tag), 0)) {
			reason = PT_C_SHAPE_ERR;
			goto out;
		}
		g = gen;
		gen = 0;        /* from here on the emit stage owns the slot */
		pt_slot_move(key, g, PT_SLOT_FILLING, PT_SLOT_STASHED, bpf_ktime_get_ns());
		skb->cb[0] = PT_CB_CARRIER;
		skb->queue_mapping = cpu + 1;
		if (pt_xmit(skb, cfg->capture_ifindex)) {
			/* the capture veth's queue was full: the frame is lost */
			pt_slot_move(key, g, PT_SLOT_STASHED, PT_SLOT_FREE, 0);
			reason = PT_C_CARRIER_LOST;
			goto out;
		}
		rc = TC_ACT_STOLEN;
	}
out:
	if (gen)
		/* a slot claimed for a frame that never got stashed */
		pt_slot_move(key, gen, PT_SLOT_FILLING, PT_SLOT_FREE, 0);
	if (reason) {
		pt_count(reason, len);
		rc = TC_ACT_SHOT;
	}
	state->busy = 0;
	return rc;
}

/* The capture veth's peer runs this XDP program only so that the kernel
 * copies each carrier into a fresh page-pool buffer (veth's XDP path does so
 * for skbs whose head it may not write) before pt_emit sees it. Declared
 * frags-aware where the kernel can (compat.h), so the veth may keep its 64 KB
 * MTU. */
SEC(PT_SEC_CARRIER)
int pt_carrier(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Stage 2, at ingress of the capture veth's peer: cut the stashed frame the
 * carrier names into pieces, built in the carrier's small buffer. */
SEC("tc")
int pt_emit(struct __sk_buff *skb)
{
	__u8 tag[PT_CARRIER_TAG_LEN];
	__u32 key, gen, reason = 0;
	struct pt_loop l = {};
	struct pt_work *w;
	int rc;

	if (bpf_skb_load_bytes(skb, 0, tag, sizeof(tag)) ||
	    ((tag[0] << 8) | tag[1]) != PT_CARRIER_MAGIC) {
		pt_count(PT_C_FOREIGN, skb->len);
		return TC_ACT_SHOT;
	}
	key = (tag[2] << 8) | tag[3];
	gen = ((__u32)tag[4] << 24) | (tag[5] << 16) | (tag[6] << 8) | tag[7];
	w = bpf_map_lookup_elem(&pt_work, &key);
	l.cache = bpf_map_lookup_elem(&pt_cache, &key);
	if (!w || !l.cache) {
		pt_count(PT_C_FOREIGN, skb->len);
		return TC_ACT_SHOT;
	}
	if (!pt_slot_move(key, gen, PT_SLOT_STASHED, PT_SLOT_CUTTING, 0)) {
		/* its slot was reclaimed while it travelled (the frame was counted
		 * lost then); the slot now holds another frame */
		pt_count(PT_C_CARRIER_STALE, skb->len);
		return TC_ACT_SHOT;
	}
	l.skb = skb;
	l.w = w;
	l.key = key;
	skb->mark = 0;
	skb->priority = 0;
	rc = pt_send_pieces(&l, &reason);
	if (reason)
		pt_count(reason, w->orig_len);
	pt_slot_move(key, gen, PT_SLOT_CUTTING, PT_SLOT_FREE, 0);
	return rc;
}

char _license[] SEC("license") = "GPL";
