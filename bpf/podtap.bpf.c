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
 *       in Geneve (or VXLAN) towards the collector, cut into pieces when it does
 *       not fit the MTU, and never lets it reach the device itself.
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

#define PT_NS 1000000000ull     /* token units per packet / byte (ns resolution) */
#define PT_RATE_LIMITED ((PT_RATE_PPS) != 0 || (PT_RATE_BPS) != 0)

/* The expiry (deadline or lease), 1-in-N sampling, the token bucket and the
 * policy's budget (limits: runtime settings, so a new limit needs no
 * recompile); 1 = mirror. */
static __always_inline int pt_admit(const struct pt_config *cfg, __u32 bytes, __u32 *reason)
{
	__u32 zero = 0;
	struct pt_limit *lim;

	if (cfg->expires_ns && bpf_ktime_get_ns() >= cfg->expires_ns) {
		*reason = PT_C_LIMIT;
		return 0;
	}
	if (PT_SAMPLE_ONE_IN <= 1 && !PT_RATE_LIMITED && !cfg->budget_packets && !cfg->budget_bytes)
		return 1;
	lim = bpf_map_lookup_elem(&pt_limit, &zero);
	if (!lim)
		return 1;
	if (PT_SAMPLE_ONE_IN > 1 &&
	    PT_FETCH_ADD(&lim->lock, &lim->sample, 1) % PT_SAMPLE_ONE_IN != 0) {
		*reason = PT_C_SAMPLED_OUT;
		return 0;
	}
	if (PT_RATE_LIMITED) {
		__u64 now = bpf_ktime_get_ns(), elapsed;
		int ok = 1;

		bpf_spin_lock(&lim->lock);
		elapsed = now - lim->last_ns;
		if (elapsed > PT_NS)
			elapsed = PT_NS;        /* the bucket holds one second */
		lim->last_ns = now;
		if (PT_RATE_PPS) {
			lim->pkt_tokens += elapsed * PT_RATE_PPS;
			if (lim->pkt_tokens > PT_NS * PT_RATE_PPS)
				lim->pkt_tokens = PT_NS * PT_RATE_PPS;
			ok = lim->pkt_tokens >= PT_NS;
		}
		if (PT_RATE_BPS) {
			lim->byte_tokens += elapsed * PT_RATE_BPS;
			if (lim->byte_tokens > PT_NS * PT_RATE_BPS)
				lim->byte_tokens = PT_NS * PT_RATE_BPS;
			ok = ok && lim->byte_tokens >= PT_NS * bytes;
		}
		if (ok) {
			if (PT_RATE_PPS)
				lim->pkt_tokens -= PT_NS;
			if (PT_RATE_BPS)
				lim->byte_tokens -= PT_NS * bytes;
		}
		bpf_spin_unlock(&lim->lock);
		if (!ok) {
			*reason = PT_C_RATE_LIMITED;
			return 0;
		}
	}
	if ((cfg->budget_packets && PT_FETCH_ADD(&lim->lock, &lim->admitted_packets, 1) >= cfg->budget_packets) ||
	    (cfg->budget_bytes && PT_FETCH_ADD(&lim->lock, &lim->admitted_bytes, bytes) >= cfg->budget_bytes)) {
		*reason = PT_C_LIMIT;
		return 0;
	}
	return 1;
}

static __always_inline int pt_tap(struct __sk_buff *skb, const __u32 to_pod)
{
	__u32 zero = 0, reason = 0, len = skb->len;
	struct pt_config *cfg;
	struct pt_pkt pkt;
	__u32 mark, prio;
	long rc;

	if ((skb->mark & PT_MARK_MASK) == PT_MARK_MAGIC) {
		pt_count(PT_C_SKIP_OWN, len);
		return TC_ACT_UNSPEC;
	}
	cfg = bpf_map_lookup_elem(&pt_config, &zero);
	if (!cfg || !cfg->enabled)
		return TC_ACT_UNSPEC;
	pt_count(PT_C_SEEN, len);
	if (pt_parse(skb, &pkt) < 0) {
		pt_count(PT_C_FILTERED, len);
		return TC_ACT_UNSPEC;
	}
	if (pt_is_own_tunnel(&pkt, cfg)) {
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

	/* The copy carries its origin to the tunnel program in mark (tag and
	 * direction) and priority (interface); both are restored at once. */
	mark = skb->mark;
	prio = skb->priority;
	skb->mark = PT_MARK_MAGIC | (to_pod ? PT_MARK_TO_POD : 0);
	skb->priority = skb->ifindex;
	rc = bpf_clone_redirect(skb, cfg->capture_ifindex, 0);
	skb->mark = mark;
	skb->priority = prio;
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

/* Resize the full copy to piece 0's length; for a CHECKSUM_PARTIAL copy also
 * move csum_start so the device's checksum lands in the sink (encap.h).
 * Returns 0 or a reason. */
static __always_inline int pt_shape_first(struct pt_loop *l, const struct pt_csum_state *st)
{
	struct __sk_buff *skb = l->skb;
	struct pt_plan *p = &l->w->plan;
	__u32 n = p->cap - p->data_start;
	__u32 len;
	__s32 delta;

	if (n > p->chunk)
		n = p->chunk;
	len = PT_OUTER_LEN + p->hdr + n;
	if (l->w->csum_mode != PT_CSUM_STEER)
		return bpf_skb_change_tail(skb, len, 0) ? PT_C_SHAPE_ERR : 0;

	delta = (__s32)(PT_SINK_OFF - st->offset) - st->start;
	if (delta < -0xfff || delta > 0xfff)
		return PT_C_SHAPE_ERR;
	if (delta >= 0) {
		if (bpf_skb_change_tail(skb, len - delta, 0))
			return PT_C_SHAPE_ERR;
		if (delta && bpf_skb_change_head(skb, delta, 0))
			return PT_C_SHAPE_ERR;
	} else {
		if (bpf_skb_change_tail(skb, len - delta, 0))
			return PT_C_SHAPE_ERR;
		if (bpf_skb_adjust_room(skb, delta, BPF_ADJ_ROOM_MAC, 0))
			return PT_C_SHAPE_ERR;
	}
	return 0;
}

/* Decide the outer UDP checksum for the skb about to be cut into pieces. */
static __always_inline void pt_csum_mode(struct __sk_buff *skb, struct pt_work *w,
					 struct pt_csum_state *st, __u32 len)
{
	pt_csum_state(skb, st);
	if (st->not_inet)
		pt_count(PT_C_CSUM_UNSUPP, len);
	if (st->partial && ((st->offset != 6 && st->offset != 16) || st->start < 0)) {
		/* only UDP (6) and TCP (16) checksum offsets are steered */
		pt_count(PT_C_CSUM_UNSUPP, len);
		st->partial = 0;
	}
	if (st->partial) {
		w->csum_mode = PT_CSUM_STEER;
		w->csum_off = st->offset;
	} else {
		w->csum_mode = PT_OUTER_V6 ? PT_CSUM_SOFT : PT_CSUM_ZERO;
	}
}

/* Send the frame stashed in @l as its pieces, the last with bpf_redirect().
 * Returns TC_ACT_REDIRECT, or TC_ACT_SHOT with *reason set. */
static __always_inline int pt_send_pieces(struct pt_loop *l, __u32 *reason)
{
	struct __sk_buff *skb = l->skb;
	struct pt_work *w = l->w;
	struct pt_csum_state st;

	pt_csum_mode(skb, w, &st, w->orig_len);
	*reason = pt_shape_first(l, &st);
	if (*reason)
		return TC_ACT_SHOT;
	if (w->csum_mode == PT_CSUM_STEER) {
		struct pt_csum_state now;

		pt_csum_state(skb, &now);
		if (!now.partial || now.start != (__s32)(PT_SINK_OFF - st.offset)) {
			*reason = PT_C_SHAPE_ERR;
			return TC_ACT_SHOT;
		}
	}
	*reason = pt_piece(l, 0, 1);
	if (*reason)
		return TC_ACT_SHOT;
	if (w->plan.npieces > 1) {
		*reason = pt_xmit_clone(l);
		if (*reason)
			return TC_ACT_SHOT;
		pt_pieces_middle(l);
		if (w->err) {
			*reason = w->err;
			return TC_ACT_SHOT;
		}
		*reason = pt_piece(l, w->plan.npieces - 1, 0);
		if (*reason)
			return TC_ACT_SHOT;
		pt_count(PT_C_FRAGMENTED, w->orig_len);
	}
	pt_count_n(PT_C_PIECES, w->plan.npieces, 0);
	pt_count(PT_C_MIRRORED, w->orig_len);
	return bpf_redirect(w->out_ifindex, 0);
}

/*
 * Stage 1, at egress of the capture device: the copy the tap cloned.
 *
 * A frame that fits one outer packet is wrapped here and now. A larger one is
 * stashed in a slot and continues as a small "carrier": every piece we send
 * is a clone of the skb it is built in, and a clone shares its buffer — for a
 * 64 KB frame, a 64 KB buffer per 1.4 KB piece, which is what a receiver's
 * socket accounting (truesize) and the node's memory then see. The carrier
 * crosses the capture veth, whose XDP program (pt_carrier) makes the kernel
 * copy it into a fresh page-sized buffer, and pt_emit cuts the pieces there.
 */
SEC("tc")
int pt_tunnel(struct __sk_buff *skb)
{
	__u32 zero = 0, mark = skb->mark, len = skb->len, cpu, slot = 0, key;
	struct pt_config *cfg;
	struct pt_cpu *state;
	struct pt_loop l = {};
	struct pt_work *w;
	__u32 seq, cap, flags = 0, reason = 0;
	int rc = TC_ACT_SHOT;

	if ((mark & PT_MARK_MASK) != PT_MARK_MAGIC || (mark & (PT_MARK_PIECE | PT_MARK_CARRIER))) {
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
	seq = state->seq++;
	cpu = bpf_get_smp_processor_id();

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
	if (mark & PT_MARK_TO_POD)
		flags |= PT_F_TO_POD;
	(void)flags;            /* VXLAN carries no metadata */

	/* slot 0: frames cut here and now; a ring slot: frames for pt_emit */
	if (cap > PT_SYNC_MAX) {
		slot = 1 + state->ring % (PT_SLOTS - 1);
		state->ring++;
	}
	key = cpu * PT_SLOTS + slot;
	w = bpf_map_lookup_elem(&pt_work, &key);
	if (w && slot && w->busy) {
		if (bpf_ktime_get_ns() - w->stashed_ns < PT_SLOT_TIMEOUT_NS) {
			/* all slots waiting: cut this one here, at a higher cost */
			pt_count(PT_C_SLOT_BUSY, len);
			slot = 0;
			key = cpu * PT_SLOTS;
			w = bpf_map_lookup_elem(&pt_work, &key);
		} else {
			/* its carrier was lost on the way (counted now, once) */
			pt_count(PT_C_CARRIER_LOST, w->orig_len);
		}
	}
	l.cache = bpf_map_lookup_elem(&pt_cache, &key);
	l.key = key;
	if (!w || !l.cache) {
		reason = PT_C_SHAPE_ERR;
		goto out;
	}
	__builtin_memset(w, 0, sizeof(*w));
	w->orig_len = len;
	l.skb = skb;
	l.w = w;

	pt_outer_init(&w->outer, cfg, PT_SPORT_BASE | ((cfg->instance ^ cpu) & 0x3fff),
		      PT_GENEVE_PROTO_ETH);
	reason = pt_route(skb, cfg, &w->outer, &w->out_ifindex, PT_MTU);
	if (reason)
		goto out;
#if PT_TUNNEL == PT_TUN_GENEVE
	w->outer.meta.flags = flags;
	w->outer.meta.cpu = bpf_htons(cpu);
	w->outer.meta.instance = bpf_htons(cfg->instance);
	w->outer.meta.seq = bpf_htonl(seq);
	w->outer.meta.ifindex = bpf_htonl(skb->priority);
	w->outer.meta.orig_len = bpf_htonl(len);
	w->outer.meta.cap_len = bpf_htonl(cap);
	w->outer.meta.l3_off = bpf_htons(PT_ETH_HLEN);
	w->outer.meta.tstamp = bpf_cpu_to_be64(bpf_ktime_get_ns());
#endif
	skb->mark = PT_MARK_MAGIC | PT_MARK_PIECE;
	skb->priority = 0;

	/* Fast path: a small, complete, unoffloaded frame is wrapped in place. */
	if (!PT_OUTER_V6 && cap == len && len <= PT_PIECE_MAX) {
		struct pt_csum_state st;
		__u32 gso = skb->gso_size;

		pt_csum_state(skb, &st);
		if (!gso && !st.partial && !st.not_inet) {
			pt_outer_lengths(&w->outer, len);
#if PT_TUNNEL == PT_TUN_GENEVE
			w->outer.meta.flags = flags | PT_F_LAST;
			w->outer.meta.kind = PT_K_WHOLE;
#endif
			if (bpf_skb_change_head(skb, PT_OUTER_LEN, 0) ||
			    bpf_skb_store_bytes(skb, 0, &w->outer, sizeof(w->outer),
						BPF_F_RECOMPUTE_CSUM)) {
				reason = PT_C_SHAPE_ERR;
				goto out;
			}
			pt_count(PT_C_PIECES, 0);
			pt_count(PT_C_MIRRORED, len);
			rc = bpf_redirect(w->out_ifindex, 0);
			goto out;
		}
	}

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
	reason = pt_plan_make(l.cache, &w->plan, cap, seq, cpu);
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

	/* Stash: the carrier keeps a few bytes (any checksum offset it carries
	 * must stay inside) and names its slot in the mark. */
	if (bpf_skb_change_tail(skb, PT_CARRIER_LEN < len ? PT_CARRIER_LEN : len, 0)) {
		reason = PT_C_SHAPE_ERR;
		goto out;
	}
	w->stashed_ns = bpf_ktime_get_ns();
	w->busy = 1;
	skb->mark = PT_MARK_MAGIC | PT_MARK_CARRIER | (key & PT_MARK_KEY);
	rc = TC_ACT_OK;
out:
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
	__u32 mark = skb->mark, key = mark & PT_MARK_KEY, reason = 0;
	struct pt_loop l = {};
	struct pt_work *w;
	int rc;

	if ((mark & PT_MARK_MASK) != PT_MARK_MAGIC || !(mark & PT_MARK_CARRIER)) {
		pt_count(PT_C_FOREIGN, skb->len);
		return TC_ACT_SHOT;
	}
	w = bpf_map_lookup_elem(&pt_work, &key);
	l.cache = bpf_map_lookup_elem(&pt_cache, &key);
	if (!w || !l.cache || !w->busy) {
		pt_count(PT_C_FOREIGN, skb->len);
		return TC_ACT_SHOT;
	}
	l.skb = skb;
	l.w = w;
	l.key = key;
	skb->mark = PT_MARK_MAGIC | PT_MARK_PIECE;
	skb->priority = 0;
	rc = pt_send_pieces(&l, &reason);
	if (reason)
		pt_count(reason, w->orig_len);
	w->busy = 0;
	return rc;
}

char _license[] SEC("license") = "GPL";
