/* SPDX-License-Identifier: MIT */
/*
 * hist_bpf.h - the latency histogram the BPF tools fill in the kernel and
 * read from user space (shared by both sides).
 *
 * Two views of the same values:
 *  - log2_us: QEMU's postcopy-latency-dist layout, as lib/hist.h's
 *    pch_hist_log2_us: slot i counts latencies whose floor(log2(us)) is i,
 *    slot 0 those under 2 us, the last slot everything above;
 *  - fine: log2 octaves of nanoseconds split in 16 linear sub-buckets
 *    (as lib/hist.h), relative error <= 1/16, for percentiles.
 */
#ifndef PCH_BPF_HIST_H
#define PCH_BPF_HIST_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define LAT_LOG2_SLOTS 33 /* up to 2^32 us, like QEMU's distribution */
#define LAT_LOG2_ALLOC 64 /* >= LAT_LOG2_SLOTS, a power of 2: indexes are masked */
#define LAT_SUB_BITS 4
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_OCTAVES 44 /* 2^47 ns: 39 hours */
#define LAT_FINE_SLOTS (LAT_OCTAVES * LAT_SUB)
#define LAT_FINE_ALLOC 1024 /* >= LAT_FINE_SLOTS, a power of 2: indexes are masked */

struct lat_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	__u64 log2_us[LAT_LOG2_ALLOC];
	__u64 fine[LAT_FINE_ALLOC];
};

/* floor(log2(v)) for v > 0, without loops (the verifier likes that) */
static inline unsigned lat_log2(__u64 v)
{
	unsigned r = 0, s;

	s = (v > 0xffffffffull) << 5; v >>= s; r |= s;
	s = (v > 0xffff) << 4; v >>= s; r |= s;
	s = (v > 0xff) << 3; v >>= s; r |= s;
	s = (v > 0xf) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (unsigned)(v >> 1);
	return r;
}

static inline unsigned lat_log2_slot(__u64 ns)
{
	__u64 us = ns / 1000;
	unsigned s = us < 2 ? 0 : lat_log2(us);

	return s < LAT_LOG2_SLOTS ? s : LAT_LOG2_SLOTS - 1;
}

static inline unsigned lat_fine_slot(__u64 ns)
{
	unsigned top, oct;

	if (ns < LAT_SUB)
		return (unsigned)ns;
	top = lat_log2(ns);
	oct = top - LAT_SUB_BITS + 1;
	if (oct >= LAT_OCTAVES)
		return LAT_FINE_SLOTS - 1;
	return oct * LAT_SUB + ((unsigned)(ns >> (top - LAT_SUB_BITS)) & (LAT_SUB - 1));
}

/* Upper bound (inclusive), ns, of fine slot i. */
static inline __u64 lat_fine_hi(unsigned i)
{
	unsigned oct = i / LAT_SUB, sub = i % LAT_SUB;

	if (!oct)
		return sub;
	return (((__u64)(LAT_SUB + sub + 1)) << (oct - 1)) - 1;
}

#endif /* PCH_BPF_HIST_H */
