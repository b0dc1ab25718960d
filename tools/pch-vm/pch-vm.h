/* SPDX-License-Identifier: MIT */
/*
 * pch-vm.h - private to pch-vm, the QEMU stand-in: guest RAM under a
 * userfaultfd, handed to pch-helper through libpch-client, with vCPU-like
 * threads reading it while it arrives, and a byte-exact check at the end.
 */
#ifndef PCH_VM_H
#define PCH_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "hist.h"
#include "image.h"

enum vm_workload {
	VM_WL_NONE,   /* no accesses */
	VM_WL_SEQ,    /* each vCPU reads its slice once, in order */
	VM_WL_RANDOM, /* uniform over all RAM until complete */
	VM_WL_HOTSET, /* 90% in a hot 10%, 10% uniform, until complete */
};

struct vm_config {
	const char *helper_path;
	uint64_t ram_bytes;
	uint32_t vcpus;
	enum vm_workload workload;
	struct pch_image image; /* seed, fractions, page size: as the source's */
	const char *block_name;
	const char *image_file; /* verify against this instead of the image */
	double precopy_s;
	double prefill;         /* fraction of RAM in place before START */
	uint32_t timeout_s;
	const char *report;
};

struct vm;

/* One vCPU thread; counters are its own, read by main after the join. */
struct vm_vcpu {
	struct vm *vm;
	unsigned idx;
	pthread_t thread;
	bool started;
	bool joined;
	uint64_t rng;        /* xorshift64* state */
	uint64_t accesses;   /* relaxed atomics: main may read them early */
	uint64_t faults;
	uint64_t blocked_ns; /* sum of the stalls */
	uint64_t sink;       /* keeps the loads alive */
	struct pch_hist hist; /* stall per fault, ns */
};

struct vm {
	struct vm_config cfg;

	uint8_t *ram;
	uint64_t *prefilled;          /* bitmap of pages in place at START */
	uint64_t pages_prefilled;
	uint64_t npages;
	uint64_t hot_first, hot_pages; /* hotset region, in pages */

	int uffd;
	uint64_t uffd_features;       /* enabled with UFFDIO_API */
	uint64_t uffd_features_avail; /* offered by the kernel */
	uint64_t uffd_ioctls;         /* from UFFDIO_REGISTER */

	struct vm_vcpu *vcpu;
	int stop; /* atomic: vCPUs stop when set */

	/* results; times are CLOCK_MONOTONIC ns, 0 when not reached */
	uint64_t t_start_ns, t_vcpu_ns, t_complete_ns;
	double verify_s;
	bool verified; /* verification ran */
	uint64_t pages_verified, pages_mismatched, pages_missing;
	unsigned char *resident; /* mincore() of the RAM when the migration ended */
	GPtrArray *errors; /* of char *; non-empty means the run failed */
};

/* Record a failure: logged once here, and listed in the report. */
void vm_fail(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* uffd.c */
/*
 * Open a userfaultfd (syscall, then /dev/userfaultfd), enable the features
 * pch-vm wants from those probed, and register the RAM for MISSING faults.
 * 0 or -errno (logged); *unavailable is set when no userfaultfd could be
 * opened at all (the caller skips rather than fails).
 */
int vm_uffd_setup(struct vm *vm, bool *unavailable);
/* Unregister the RAM: wakes blocked vCPUs, later faults read zero pages. */
int vm_uffd_unregister(struct vm *vm);

/* vcpu.c */
/* Start cfg.vcpus threads "vcpu/N".  0 or -errno (started ones keep running). */
int vm_vcpus_start(struct vm *vm);
/* Tell the vCPUs to stop (they finish their current access). */
void vm_vcpus_stop(struct vm *vm);
/* Join every started vCPU within timeout_ms in total; 0 or -ETIMEDOUT. */
int vm_vcpus_join(struct vm *vm, int timeout_ms);

/* verify.c */
/* Snapshot page residency into vm->resident; call before unregistering. */
int vm_verify_snapshot(struct vm *vm);
/* Check every page against the image or cfg.image_file; fills the counts. */
int vm_verify(struct vm *vm);

/* report.c */
/* Write the JSON report to cfg.report.  0 or -errno. */
int vm_report_write(struct vm *vm);

/* the workload names, for the CLI and the report */
const char *vm_workload_name(enum vm_workload w);

#endif /* PCH_VM_H */
