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
};

#endif /* PCH_BPF_FAULTLAT_H */
