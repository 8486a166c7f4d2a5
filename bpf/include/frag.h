/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Splitting a cached frame into pieces that each fit one outer packet.
 *
 * The frame sits in the per-CPU scratch cache. Piece k is
 *
 *   outer headers | header prefix (the frame's own L2+L3 headers, adjusted)
 *                 | chunk k: frame bytes [data_start + k * chunk, ...)
 *
 * For IP frames the adjusted prefix makes every piece a valid inner IP
 * fragment (RFC 791 / RFC 8200 §4.5), so Wireshark, Zeek or Suricata
 * reassemble the tunnel on their own; pt_meta tells our collector how to undo
 * the adjustment byte for byte.
 */
#ifndef PODTAP_FRAG_H
#define PODTAP_FRAG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "compat.h"
#include "csum.h"
#include "encap.h"
#include "maps.h"
#include "parse.h"
#include "wire.h"

struct pt_plan {
	__u32 cap;              /* frame bytes carried by all pieces */
	__u32 data_start;       /* first frame byte carried in chunks */
	__u32 chunk;            /* chunk bytes per piece (a multiple of 8 for IP) */
	__u32 npieces;
	__u32 prefix;           /* prefix bytes copied from the frame into each piece */
	__u32 hdr;              /* prefix bytes in each piece (prefix + added header) */
	__u32 fh_off;           /* IPv6: offset of the Fragment header (ours or the pod's) */
	__u32 frag_base;        /* original fragment offset in bytes (pod-made fragments) */
	__u16 ip_id;            /* IPv4: identification written in the pieces */
	__u8 frag_more;         /* the original was not the last fragment (MF / M) */
	__u8 kind;              /* PT_K_* */
	__u16 fix[4];           /* pt_meta.fix */
	__u16 geneve_proto;
	__u16 pad;
};

/*
 * Everything a piece needs, one per stash slot next to its cache entry. Too
 * big for the 512-byte stack shared with the bpf_loop() callback. Each piece
 * starts with `outer` and `prefix`, contiguous, written with one store: the
 * outer headers, then the frame's header prefix as adjusted for the piece.
 */
struct pt_work {
	__u32 orig_len;         /* frame length on the interface (for counters) */
	__u32 out_ifindex;
	__s32 err;              /* PT_C_* reason of the first failure, or 0 */
	__u32 pad;
	struct pt_plan plan;
	struct pt_outer outer;
	__u8 prefix[PT_PREFIX_MAX + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_NR_CPUS * PT_SLOTS);
	__type(key, __u32);
	__type(value, struct pt_work);
} pt_work SEC(".maps");

/* The bpf_loop() context, on the tunnel program's stack. */
struct pt_loop {
	struct __sk_buff *skb;
	struct pt_cache *cache;
	struct pt_work *w;
	__u32 key;              /* the stash key of cache and w */
};

static __always_inline __u8 pt_c8(const struct pt_cache *c, __u32 off)
{
	if (off >= PT_PREFIX_MAX + 8)
		return 0;
	return c->data[off];
}

static __always_inline __u16 pt_c16(const struct pt_cache *c, __u32 off)
{
	return (pt_c8(c, off) << 8) | pt_c8(c, off + 1);
}

/*
 * Decide how to cut the cached frame of @cap bytes into @w's pieces and set
 * up the header prefix they share. @id: a fresh identification (pt_ids) for
 * a frame we fragment. Returns 0 or a reason.
 */
static __always_inline int pt_plan_make(const struct pt_cache *c, struct pt_work *w,
					__u32 cap, __u32 id)
{
	struct pt_plan *p = &w->plan;
	__u16 proto;

	__builtin_memset(p, 0, sizeof(*p));
	p->cap = cap;
	p->kind = PT_K_RAW;
	p->geneve_proto = PT_GENEVE_PROTO_ETH;
	proto = cap >= PT_ETH_HLEN ? pt_c16(c, 12) : 0;
	/* the longest prefix any kind uses, copied once: each piece stores
	 * only its first p->hdr bytes */
	__builtin_memcpy(w->prefix, c->data, PT_PREFIX_MAX);

	if (cap <= PT_PIECE_MAX) {
		/* One piece, the frame unchanged. Copied as a short prefix and a
		 * chunk so that no copy exceeds PT_CHUNK_MAX. */
		p->kind = PT_K_WHOLE;
		p->prefix = cap > PT_CHUNK_MAX ? cap - PT_CHUNK_MAX : 0;
		p->hdr = p->prefix;
		p->data_start = p->prefix;
		p->chunk = cap - p->prefix;
		p->npieces = 1;
		return 0;
	}

	if (proto == ETH_P_IP && cap >= PT_ETH_HLEN + 20) {
		__u32 ihl = (pt_c8(c, PT_ETH_HLEN) & 0xf) * 4;
		__u16 frag = pt_c16(c, PT_ETH_HLEN + 6);

		if ((pt_c8(c, PT_ETH_HLEN) >> 4) == 4 && ihl >= 20 && cap >= PT_ETH_HLEN + ihl) {
			p->kind = PT_K_IPV4;
			p->prefix = PT_ETH_HLEN + ihl;
			p->hdr = p->prefix;
			p->fix[0] = pt_c16(c, PT_ETH_HLEN + 2);         /* total length */
			p->fix[1] = pt_c16(c, PT_ETH_HLEN + 4);         /* identification */
			p->fix[2] = frag;                               /* flags + offset */
			p->fix[3] = pt_c16(c, PT_ETH_HLEN + 10);        /* header checksum */
			p->frag_base = (frag & 0x1fff) * 8;
			p->frag_more = (frag & 0x2000) != 0;
			p->ip_id = p->fix[1];
#if PT_TUNNEL == PT_TUN_GENEVE
			/* A fresh identification for a frame we split (our collector
			 * restores the original), so a standard receiver does not join
			 * pieces of two frames that had the same one (RFC 4963). The
			 * pod's own fragments keep theirs: they belong together. */
			if (!p->frag_base && !p->frag_more)
				p->ip_id = (__u16)id;
#endif
		}
	} else if (proto == ETH_P_IPV6 && cap >= PT_ETH_HLEN + 40) {
		__u32 off = PT_ETH_HLEN + 40;
		__u32 nh_off = PT_ETH_HLEN + 6;
		__u8 nh = pt_c8(c, nh_off);
		int i, refrag = 0;

		/* walk the unfragmentable part: Hop-by-Hop, Routing, and
		 * Destination Options that precede a Routing header */
#pragma unroll
		for (i = 0; i < PT_IPV6_EXT_MAX; i++) {
			if (nh == PT_NH_FRAGMENT) {
				refrag = 1;
				break;
			}
			if (nh != PT_NH_HOPOPTS && nh != PT_NH_ROUTING &&
			    !(nh == PT_NH_DSTOPTS && pt_c8(c, off) == PT_NH_ROUTING))
				break;
			if (off + 8 > cap)
				break;
			nh_off = off;
			nh = pt_c8(c, off);
			off += (pt_c8(c, off + 1) + 1) * 8;
		}
		if (refrag && off + 8 <= cap && off <= PT_PREFIX_MAX - 8) {
			__u16 field = pt_c16(c, off + 2);

			p->kind = PT_K_IPV6_REFRAG;
			p->fh_off = off;
			p->prefix = off + 8;
			p->hdr = p->prefix;
			p->fix[0] = pt_c16(c, PT_ETH_HLEN + 4);         /* payload length */
			p->fix[1] = field;                              /* offset + M */
			p->frag_base = field & 0xfff8;
			p->frag_more = field & 1;
		} else if (!refrag && off <= cap && off <= PT_PREFIX_MAX - 8 && nh_off < PT_PREFIX_MAX) {
			__u32 nid = bpf_htonl(id);

			p->kind = PT_K_IPV6_NEW;
			p->fh_off = off;
			p->prefix = off;
			p->hdr = off + 8;
			p->fix[0] = pt_c16(c, PT_ETH_HLEN + 4);         /* payload length */
			p->fix[1] = nh_off;
			p->fix[2] = pt_c8(c, nh_off);                   /* next header */
			/* the same in every piece: next header 44, then our Fragment
			 * header (next header = the original, identification) */
			w->prefix[nh_off] = PT_NH_FRAGMENT;
			w->prefix[off] = (__u8)p->fix[2];
			w->prefix[off + 1] = 0;
			__builtin_memcpy(&w->prefix[off + 4], &nid, 4);
		}
	}

	if (p->kind == PT_K_RAW) {
#if PT_TUNNEL == PT_TUN_VXLAN
		/* VXLAN carries Ethernet frames only: send what fits, cut. */
		p->kind = PT_K_WHOLE;
		p->cap = PT_PIECE_MAX;
		p->prefix = PT_PIECE_MAX - PT_CHUNK_MAX;
		p->hdr = p->prefix;
		p->data_start = p->prefix;
		p->chunk = PT_CHUNK_MAX;
		p->npieces = 1;
		return 0;
#else
		p->geneve_proto = PT_GENEVE_PROTO_RAW;
		p->chunk = PT_CHUNK_MAX;
#endif
	} else {
		p->data_start = p->prefix;
		p->chunk = (PT_PIECE_MAX - p->hdr) & ~7u;
	}
	if (p->chunk < 8 || p->chunk > PT_CHUNK_MAX)
		return PT_C_SHAPE_ERR;
	p->npieces = (p->cap - p->data_start + p->chunk - 1) / p->chunk;
	if (p->npieces < 1 || p->npieces > PT_PIECES_MAX)
		return PT_C_SHAPE_ERR;
	return 0;
}

/* Adjust the prefix's IP header(s) in w->prefix for piece @k (chunk of @n
 * bytes). Returns 0 or -1. */
static __always_inline int pt_piece_ip(struct pt_work *w, __u32 k, __u32 n, __u32 last)
{
	struct pt_plan *p = &w->plan;
	__u32 off = k * p->chunk;                       /* fragment offset of this chunk */
	__u32 more = !last || p->frag_more;
	__u16 v;

	if (p->kind == PT_K_IPV4) {
		__u8 *ip = &w->prefix[PT_ETH_HLEN];
		__u64 ihl = p->prefix - PT_ETH_HLEN;

		barrier_var(ihl);
		if (ihl < 20 || ihl > PT_IPV4_HLEN_MAX)
			return -1;
		v = bpf_htons(ihl + n);
		__builtin_memcpy(&ip[2], &v, 2);
		v = bpf_htons(p->ip_id);
		__builtin_memcpy(&ip[4], &v, 2);
		/* keep the reserved bit, drop DF, offset in 8-byte units, MF */
		v = (p->fix[2] & 0x8000) | (((p->frag_base + off) >> 3) & 0x1fff) |
		    (more ? 0x2000 : 0);
		v = bpf_htons(v);
		__builtin_memcpy(&ip[6], &v, 2);
		ip[10] = 0;
		ip[11] = 0;
		v = pt_csum_fold(pt_csum_add(ip, ihl, 0));
		__builtin_memcpy(&ip[10], &v, 2);
		return 0;
	}
	if (p->kind == PT_K_IPV6_NEW || p->kind == PT_K_IPV6_REFRAG) {
		__u32 fh = p->fh_off;

		v = bpf_htons(p->hdr - PT_ETH_HLEN - 40 + n);
		__builtin_memcpy(&w->prefix[PT_ETH_HLEN + 4], &v, 2);
		if (fh > PT_PREFIX_MAX - 8)
			return -1;
		v = bpf_htons(((p->frag_base + off) & 0xfff8) | (more ? 1 : 0));
		__builtin_memcpy(&w->prefix[fh + 2], &v, 2);
	}
	return 0;
}

/*
 * Build piece @k in the skb, whose length is already right for it when
 * @shaped, else resized here (pieces never grow: only the last is shorter).
 * Two stores: the outer headers with the header prefix, then the chunk.
 * Returns 0 or a PT_C_* reason. A subprogram, not inlined: its stack frame
 * then counts once per call chain instead of swelling the main program's.
 */
static __noinline int pt_piece(struct pt_loop *l, __u32 k, int shaped)
{
	struct __sk_buff *skb = l->skb;
	struct pt_work *w = l->w;
	struct pt_plan *p = &w->plan;
	struct pt_outer *o = &w->outer;
	__u32 src, n, len, last;

	if (k >= PT_PIECES_MAX)
		return PT_C_SHAPE_ERR;
	src = p->data_start + k * p->chunk;
	if (src >= p->cap)
		return PT_C_SHAPE_ERR;
	n = p->cap - src;
	if (n > p->chunk)
		n = p->chunk;
	last = k + 1 == p->npieces;
	len = PT_OUTER_LEN + p->hdr + n;

	/* pieces before the last have piece 0's length: only the last resizes */
	if (!shaped && skb->len != len && bpf_skb_change_tail(skb, len, 0))
		return PT_C_SHAPE_ERR;

	pt_outer_lengths(o, p->hdr + n);
#if PT_TUNNEL == PT_TUN_GENEVE
	o->meta.flags = (o->meta.flags & ~(PT_F_FRAG | PT_F_LAST)) |
			(p->npieces > 1 ? PT_F_FRAG : 0) | (last ? PT_F_LAST : 0);
	o->meta.piece_off = bpf_htonl(src);
	o->meta.hdr_len = bpf_htons(p->hdr);
#endif
	if (pt_piece_ip(w, k, n, last))
		return PT_C_SHAPE_ERR;
	{
		__u64 size = PT_OUTER_LEN + p->hdr;

		barrier_var(size);
		if (size < PT_OUTER_LEN || size > PT_OUTER_LEN + PT_PREFIX_MAX + 8)
			return PT_C_SHAPE_ERR;
		size = pt_at_least_1(size);     /* non-zero: tested above */
		if (bpf_skb_store_bytes(skb, 0, o, size, 0))
			return PT_C_SHAPE_ERR;
	}

	/* The copy the verifier sizes the cache for: offset < PT_FRAME_MAX and
	 * 1 <= n <= PT_CHUNK_MAX, hence PT_CACHE_SIZE. */
	{
		__u64 from = src, size = n;

		/* bounds checked on the very registers passed to the helper */
		barrier_var(from);
		barrier_var(size);
		if (from >= PT_FRAME_MAX || size < 1 || size > PT_CHUNK_MAX ||
		    p->hdr > PT_PREFIX_MAX + 8)
			return PT_C_SHAPE_ERR;
		size = pt_at_least_1(size);
		if (bpf_skb_store_bytes(skb, PT_OUTER_LEN + p->hdr, &l->cache->data[from],
					size, 0))
			return PT_C_SHAPE_ERR;
	}

	if (PT_OUTER_V6 && pt_udp_csum_soft(skb, o, len))
		return PT_C_SHAPE_ERR;
	return 0;
}

/* Send a clone of the piece built in the skb; 0 or why it is lost. Once the
 * uplink drops one piece the frame cannot be rebuilt: the caller stops, which
 * also relieves a congested uplink of the rest. */
static __always_inline __u32 pt_xmit(struct __sk_buff *skb, __u32 ifindex)
{
	long ret = bpf_clone_redirect(skb, ifindex, 0);

	if (ret < 0)
		return PT_C_REDIRECT_ERR;
	/* NET_XMIT_DROP, or NET_XMIT_CN: a device being reconfigured (its
	 * noop qdisc drops and says CN) or a qdisc that dropped a packet of
	 * this flow — of this frame, or of one before it: either way not a
	 * frame to vouch for */
	if (ret != PT_NET_XMIT_SUCCESS)
		return PT_C_XMIT_DROP;
	return 0;
}

static __always_inline __u32 pt_xmit_clone(struct pt_loop *l)
{
	return pt_xmit(l->skb, l->w->out_ifindex);
}

#if PT_HAVE_BPF_LOOP
/* bpf_loop() callback: pieces 1 .. npieces-2, each sent as a clone. */
static long pt_piece_cb(__u64 i, void *ctx)
{
	struct pt_loop *l = ctx;
	__u32 k = (__u32)i + 1;
	int rc;

	rc = pt_piece(l, k, 0);
	if (!rc)
		rc = pt_xmit_clone(l);
	if (rc) {
		l->w->err = rc;
		return 1;
	}
	return 0;
}
#else
/*
 * Piece @k of the frame stashed at @key, sent as a clone; 0 or a reason. A
 * global function where bpf_loop() is missing (compat.h): the verifier checks
 * it once, on its own, instead of once per iteration of the caller's loop. It
 * may take only the context and scalars, so it finds the frame by its key.
 */
__noinline int pt_piece_global(struct __sk_buff *skb, __u32 key, __u32 k)
{
	struct pt_loop l = { .skb = skb, .key = key };
	int rc;

	l.w = bpf_map_lookup_elem(&pt_work, &key);
	l.cache = bpf_map_lookup_elem(&pt_cache, &key);
	if (!l.w || !l.cache)
		return PT_C_SHAPE_ERR;
	rc = pt_piece(&l, k, 0);
	if (!rc)
		rc = pt_xmit_clone(&l);
	return rc;
}
#endif

/* Pieces 1 .. npieces-2 of the frame in @l, each sent as a clone; the first
 * failure is left in l->w->err and stops the rest. */
static __always_inline void pt_pieces_middle(struct pt_loop *l)
{
	__u32 n = l->w->plan.npieces;

	if (n <= 2)
		return;
#if PT_HAVE_BPF_LOOP
	bpf_loop(n - 2, pt_piece_cb, l, 0);
#else
	{
		__u32 k;
		int rc;

		for (k = 1; k < PT_PIECES_MAX - 1; k++) {
			if (k + 1 >= n)
				break;
			rc = pt_piece_global(l->skb, l->key, k);
			if (rc) {
				l->w->err = rc;
				break;
			}
		}
	}
#endif
}

#endif /* PODTAP_FRAG_H */
