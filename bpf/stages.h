/* SPDX-License-Identifier: MIT */
/*
 * stages.h - pch-stages: what its BPF side and its loader share.  The
 * stages are defined in stages.bpf.c and bpf/README.md, "pch-stages".
 */
#ifndef PCH_BPF_STAGES_H
#define PCH_BPF_STAGES_H

#include "hist_bpf.h"

/* The histograms, one per stage (index into stages_bpf.bss->hist). */
enum stage {
	ST_QUEUE,    /* page_fault_user -> fault_read */
	ST_DECIDE,   /* fault_read -> request_sent */
	ST_NETWORK,  /* request_sent -> page_arrived */
	ST_INSTALL,  /* page_arrived -> page_installed (or the thread runs) */
	ST_WAKE,     /* page_installed -> the thread runs */
	ST_TOTAL,    /* page_fault_user -> the thread runs */
	ST_SRC_TO,   /* request_sent -> request_received (source traced) */
	ST_SRC_SERVE, /* request_received -> page_sent */
	ST_SRC_BACK, /* page_sent -> page_arrived */
	ST_NR
};

/* QEMU 10.1 postcopy-latency-dist: 24 log2 us buckets, the last open. */
#define STAGES_LOG2_SLOTS 24

/*
 * Counters.  A fault is tracked from its page_fault_user; it ends as one
 * of full, other_* or lost_*.
 */
struct stages_counts {
	__u64 faults;          /* page_fault_user recorded (any fault of the VM) */
	__u64 reads;           /* fault_read */
	__u64 reads_matched;   /* ... linked to its page_fault_user */
	__u64 reads_unmatched; /* ... no fault of that page seen, or forgotten */
	__u64 requests;        /* request_sent */
	__u64 requests_fault;  /* ... for a fault read (the others: sweep) */
	__u64 arrived;         /* page_arrived on URGENT */
	__u64 src_received;    /* request_received of a tracked request */
	__u64 full;            /* faults with every stage */
	__u64 no_wait;         /* ... of which the thread was on a CPU at install */
	__u64 other_before_read; /* woken before the helper read the fault */
	__u64 other_no_request; /* read, ran again without a request (zero, present, dup) */
	__u64 other_raced;     /* requested, installed by another path (bulk) first */
	__u64 abandoned;       /* installed, then lost sight of (never in the stages) */
	__u64 lost;            /* in-flight entry evicted from a full table */
	__u64 inconsistent;    /* complete, but a time missing or out of order: not recorded */
};

#endif /* PCH_BPF_STAGES_H */
