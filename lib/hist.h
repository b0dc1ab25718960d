/* SPDX-License-Identifier: MIT */
/*
 * hist.h - latency histogram: log2 octaves split into 16 linear sub-buckets
 * (relative error <= 1/16), values in nanoseconds.  Not thread-safe: each
 * thread records into its own and they are merged when read.
 */
#ifndef PCH_HIST_H
#define PCH_HIST_H

#include <stdint.h>

#define PCH_HIST_SUB_BITS 4
#define PCH_HIST_SUB (1u << PCH_HIST_SUB_BITS)
#define PCH_HIST_OCTAVES 48 /* up to ~2^48 ns = 78 h */
#define PCH_HIST_BUCKETS (PCH_HIST_OCTAVES * PCH_HIST_SUB)

struct pch_hist {
	uint64_t count;
	uint64_t sum; /* ns */
	uint64_t min; /* ns; UINT64_MAX when empty */
	uint64_t max; /* ns */
	uint64_t bucket[PCH_HIST_BUCKETS];
};

void pch_hist_init(struct pch_hist *h);
void pch_hist_add(struct pch_hist *h, uint64_t ns);
void pch_hist_merge(struct pch_hist *dst, const struct pch_hist *src);
/*
 * Value at quantile q in [0, 1] (q = 0.5 is the median): the upper bound of
 * the bucket holding it, clamped to [min, max].  0 when empty.
 */
uint64_t pch_hist_quantile(const struct pch_hist *h, double q);
/* Mean in ns, 0 when empty. */
uint64_t pch_hist_mean(const struct pch_hist *h);
/* Bucket index of a value, and the [lo, hi] range of a bucket (for tests). */
unsigned pch_hist_bucket_of(uint64_t ns);
void pch_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

/*
 * QEMU-style log2 microsecond distribution (as postcopy-latency-dist): out[i]
 * counts values v with floor(log2(v_us)) == i (i = 0 holds v_us < 2),
 * approximated from the sub-buckets.  n entries.
 */
void pch_hist_log2_us(const struct pch_hist *h, uint64_t *out, unsigned n);

#endif
