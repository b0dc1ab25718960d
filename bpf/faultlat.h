/* SPDX-License-Identifier: MIT */
/* faultlat.h - pch-faultlat: what its BPF side and its loader share. */
#ifndef PCH_BPF_FAULTLAT_H
#define PCH_BPF_FAULTLAT_H

#include "hist_bpf.h"

/* prev_state values of sched_switch (the kernel's "report" states) */
#define FL_STATE_S 0x1 /* TASK_INTERRUPTIBLE: a uffd wait of a user fault */
#define FL_STATE_D 0x2 /* TASK_UNINTERRUPTIBLE / KILLABLE */

/*
 * QEMU 10.1's postcopy-latency-dist (migration/postcopy-ram.c,
 * BLOCKTIME_LATENCY_BUCKET_N): 24 buckets; a latency of t us goes to
 * bucket floor(log2(t)), t = 0 to bucket 0, everything from 2^23 us on
 * to bucket 23.  Bucket N covers [2^N, 2^(N+1)) us.
 */
#define FL_DIST_N 24

static inline unsigned fl_dist_slot(__u64 ns)
{
	unsigned s = lat_log2_slot(ns); /* floor(log2(us)), 0 for 0 and 1 us */

	return s < FL_DIST_N ? s : FL_DIST_N - 1;
}

struct faultlat_counts {
	__u64 faults;        /* page_fault_user of the traced threads */
	__u64 blocked_s;     /* waits that started asleep in S */
	__u64 blocked_d;     /* ... in D (only with --any-sleep) */
	__u64 faults_blocked; /* faults that blocked at least once */
	__u64 lost;          /* no room to track a fault */
	__u64 threads_lost;  /* -T: waits of threads the threads map had no room for */
};

/*
 * -T: one histogram per faulting thread, in a hash map of FL_THREADS
 * entries, allocated as threads first block (BPF_F_NO_PREALLOC) and kept
 * after they exit, for the totals.  When it is full, the waits of further
 * threads count in the totals only (counts.threads_lost).
 *
 * Percentiles per thread come from a log-linear histogram coarser than
 * struct lat_hist's, to keep an entry at 2.3 KiB: log2 octaves of
 * nanoseconds in 8 linear sub-buckets (error <= 1/8), up to 2^34 ns.
 */
#define FL_THREADS 4096
#define FL_SUB_BITS 3
#define FL_SUB (1u << FL_SUB_BITS)
#define FL_OCTAVES 32
#define FL_FINE_N (FL_OCTAVES * FL_SUB) /* a power of 2: indexes are masked */

struct faultlat_thread {
	__u32 tgid;
	__u32 pad;
	char comm[16]; /* the thread's name at its last wait */
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	__u64 dist[FL_DIST_N];
	__u64 fine[FL_FINE_N];
};

static inline unsigned fl_fine_slot(__u64 ns)
{
	unsigned top, oct;

	if (ns < FL_SUB)
		return (unsigned)ns;
	top = lat_log2(ns);
	oct = top - FL_SUB_BITS + 1;
	if (oct >= FL_OCTAVES)
		return FL_FINE_N - 1;
	return oct * FL_SUB + ((unsigned)(ns >> (top - FL_SUB_BITS)) & (FL_SUB - 1));
}

/* Upper bound (inclusive), ns, of fine slot i (the last: unbounded). */
static inline __u64 fl_fine_hi(unsigned i)
{
	unsigned oct = i / FL_SUB, sub = i % FL_SUB;

	if (!oct)
		return sub;
	return (((__u64)(FL_SUB + sub + 1)) << (oct - 1)) - 1;
}

#endif /* PCH_BPF_FAULTLAT_H */
