// SPDX-License-Identifier: MIT
/*
 * hist.c - log-linear latency histogram.
 *
 * Values below PCH_HIST_SUB get one bucket each (octave 0).  A larger value
 * v with its top bit at position m (m >= PCH_HIST_SUB_BITS) lands in octave
 * m - PCH_HIST_SUB_BITS + 1, sub-bucket given by the PCH_HIST_SUB_BITS bits
 * below the top bit.  A bucket of octave k >= 1 spans [2^(k+3), 2^(k+4)) in
 * 16 steps of 2^(k-1), so its width is at most 1/16 of its lower bound.
 * Values past the last octave (>= 2^51 ns, about 26 days) share the last
 * bucket, whose upper bound is UINT64_MAX.
 */
#include <math.h>
#include <string.h>

#include "hist.h"

#define LAST_BUCKET (PCH_HIST_BUCKETS - 1)

/* Empty histogram: count 0, min UINT64_MAX. */
void pch_hist_init(struct pch_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* Bucket index of ns (the last bucket for anything too large). */
unsigned pch_hist_bucket_of(uint64_t ns)
{
	unsigned top, octave, sub;

	if (ns < PCH_HIST_SUB)
		return (unsigned)ns;
	top = 63 - (unsigned)__builtin_clzll(ns);
	octave = top - PCH_HIST_SUB_BITS + 1;
	if (octave >= PCH_HIST_OCTAVES)
		return LAST_BUCKET;
	sub = (unsigned)(ns >> (top - PCH_HIST_SUB_BITS)) & (PCH_HIST_SUB - 1);
	return octave * PCH_HIST_SUB + sub;
}

/* Inclusive [lo, hi] of bucket idx; idx past the end is the last bucket. */
void pch_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
	unsigned octave, sub;

	if (idx >= PCH_HIST_BUCKETS)
		idx = LAST_BUCKET;
	if (idx < PCH_HIST_SUB) {
		*lo = *hi = idx;
		return;
	}
	octave = idx / PCH_HIST_SUB;
	sub = idx % PCH_HIST_SUB;
	*lo = (uint64_t)(PCH_HIST_SUB + sub) << (octave - 1);
	*hi = idx == LAST_BUCKET ? UINT64_MAX : *lo + (1ull << (octave - 1)) - 1;
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Record one value (sum saturates rather than wraps). */
void pch_hist_add(struct pch_hist *h, uint64_t ns)
{
	h->bucket[pch_hist_bucket_of(ns)]++;
	h->count++;
	h->sum = sat_add(h->sum, ns);
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

/* Add src into dst: buckets, count, sum, min and max. */
void pch_hist_merge(struct pch_hist *dst, const struct pch_hist *src)
{
	unsigned i;

	if (!src->count)
		return;
	for (i = 0; i < PCH_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum = sat_add(dst->sum, src->sum);
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

/*
 * Value at quantile q: the upper bound of the bucket holding the
 * ceil(q * count)-th smallest value, clamped to [min, max].  q <= 0 is the
 * minimum itself (known exactly), NaN counts as 0.  0 when empty.
 */
uint64_t pch_hist_quantile(const struct pch_hist *h, double q)
{
	uint64_t rank, seen = 0, lo, hi;
	unsigned i;

	if (!h->count)
		return 0;
	if (!(q > 0))
		return h->min;
	if (q >= 1)
		return h->max;
	rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (i = 0; i < PCH_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank)
			break;
	}
	if (i == PCH_HIST_BUCKETS) /* buckets disagree with count: be safe */
		return h->max;
	pch_hist_bucket_range(i, &lo, &hi);
	if (hi < h->min)
		return h->min;
	return hi > h->max ? h->max : hi;
}

/* Mean in ns (integer division), 0 when empty. */
uint64_t pch_hist_mean(const struct pch_hist *h)
{
	return h->count ? h->sum / h->count : 0;
}

/*
 * log2 microsecond distribution.  Each sub-bucket is attributed whole to the
 * slot of its midpoint; a bucket spans at most 1/16 of its value, so only
 * values within ~6% of a power-of-two microsecond boundary can move one slot.
 * Values beyond the last slot are counted in it.
 */
void pch_hist_log2_us(const struct pch_hist *h, uint64_t *out, unsigned n)
{
	unsigned i;

	if (!n)
		return;
	memset(out, 0, n * sizeof(*out));
	for (i = 0; i < PCH_HIST_BUCKETS; i++) {
		uint64_t lo, hi, us;
		unsigned slot;

		if (!h->bucket[i])
			continue;
		pch_hist_bucket_range(i, &lo, &hi);
		us = (lo + (hi - lo) / 2) / 1000;
		slot = us < 2 ? 0 : 63 - (unsigned)__builtin_clzll(us);
		if (slot >= n)
			slot = n - 1;
		out[slot] += h->bucket[i];
	}
}
