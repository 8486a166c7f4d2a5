/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel compatibility: the variant of each kernel-dependent piece this object
 * is built with. The agent (and `podtap sniff`) load a tiny program per
 * feature when they start (src/datapath/features.ts, bpf/probes/) and pass
 * the answers with -D; the defaults are the newest kernels' variants, the
 * fastest ones. Every variant keeps the same promise: each matched packet is
 * delivered whole or counted.
 *
 *   feature                 since  without it
 *   bpf_loop()              5.17   a bounded loop calling a global function
 *   atomic fetch-and-add    5.12   the same read-and-add under pt_limit's lock
 *   bpf_cast_to_kern_ctx()  6.2    bpf_probe_read_kernel() of the same fields
 *   multi-buffer XDP        5.18   the carrier's XDP program without frags; the
 *                                  capture device's MTU is then the uplink's
 *                                  (veth refuses XDP when its peer's MTU
 *                                  exceeds a page)
 */
#ifndef PODTAP_COMPAT_H
#define PODTAP_COMPAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* bpf_loop() cuts the pieces between the first and the last of a frame. */
#ifndef PT_HAVE_BPF_LOOP
#define PT_HAVE_BPF_LOOP 1
#endif
/* __sync_fetch_and_add() whose result is used (BPF_ATOMIC | BPF_FETCH). */
#ifndef PT_HAVE_ATOMIC_FETCH
#define PT_HAVE_ATOMIC_FETCH 1
#endif
/* The bpf_cast_to_kern_ctx() kfunc gives the struct sk_buff behind the
 * context as a trusted pointer; without it the same CO-RE-relocated fields are
 * read with bpf_probe_read_kernel() (the context is that sk_buff). */
#ifndef PT_HAVE_KERN_CTX
#define PT_HAVE_KERN_CTX 1
#endif
/* The carrier's XDP program declares multi-buffer support (xdp.frags). */
#ifndef PT_HAVE_XDP_FRAGS
#define PT_HAVE_XDP_FRAGS 1
#endif

#if PT_HAVE_XDP_FRAGS
#define PT_SEC_CARRIER "xdp.frags"
#else
#define PT_SEC_CARRIER "xdp"
#endif

#if PT_HAVE_KERN_CTX
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
/* the kernel's struct sk_buff of a tc context */
#define PT_KERN_SKB(ctx) ((struct sk_buff *)bpf_cast_to_kern_ctx(ctx))
#define PT_SKB_FIELD(skb, field) ((skb)->field)
#define PT_SKB_BITFIELD(skb, field) BPF_CORE_READ_BITFIELD(skb, field)
#else
#define PT_KERN_SKB(ctx) ((struct sk_buff *)(void *)(ctx))
#define PT_SKB_FIELD(skb, field) BPF_CORE_READ(skb, field)
#define PT_SKB_BITFIELD(skb, field) BPF_CORE_READ_BITFIELD_PROBED(skb, field)
#endif

/* *@p += @v, returning the old value, atomically with respect to every CPU;
 * @lock guards *@p where the kernel lacks atomic fetch operations (never
 * taken around a helper call: the verifier forbids that). */
#if PT_HAVE_ATOMIC_FETCH
#define PT_FETCH_ADD(lock, p, v) __sync_fetch_and_add((p), (v))
#else
#define PT_FETCH_ADD(lock, p, v) pt_fetch_add_locked((lock), (p), (v))
static __always_inline __u64 pt_fetch_add_locked(struct bpf_spin_lock *lock, __u64 *p, __u64 v)
{
	__u64 old;

	bpf_spin_lock(lock);
	old = *p;
	*p = old + v;
	bpf_spin_unlock(lock);
	return old;
}
#endif

/*
 * @x, known to the verifier to be at least 1: a helper's size argument must
 * be. Newer verifiers learn that from a test `x != 0`; 5.10's does not, but it
 * follows this jump. A no-op for every @x >= 1; use it after the upper bound
 * is checked, so that bound is kept.
 */
static __always_inline __u64 pt_at_least_1(__u64 x)
{
	asm volatile("if %0 > 0 goto +1; %0 = 1" : "+r"(x));
	return x;
}

#endif /* PODTAP_COMPAT_H */
