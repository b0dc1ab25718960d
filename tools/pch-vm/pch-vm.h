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
	VM_WL_BALLOON, /* random, while a balloon discards and unplugs RAM (balloon.c) */
};

/*
 * What backs the guest RAM (--backing), and what that means for the uffd.
 * One entry per enum pch_backing, in ram.c.
 */
struct vm_backing {
	const char *name;       /* as --backing and the report spell it */
	uint32_t kind;          /* enum pch_backing, as BLOCK sends it */
	uint32_t page_size;     /* bytes; 0: the base page size */
	bool shared;            /* a memfd the helper maps too: the fd rides with BLOCK */
	bool thp;               /* anonymous, THP allowed; report AnonHugePages */
	uint64_t reg_mode;      /* UFFDIO_REGISTER_MODE_* for the RAM */
	uint64_t reg_features;  /* UFFD_FEATURE_* that registration needs */
	unsigned install_ioctl; /* _UFFDIO_COPY or _UFFDIO_CONTINUE: must be offered */
};

struct vm_config {
	const char *helper_path;
	uint64_t ram_bytes;
	uint32_t vcpus;
	enum vm_workload workload;
	struct pch_image image; /* seed, fractions, page size: as the source's */
	const char *block_name;
	const struct vm_backing *backing; /* --backing */
	const char *image_file; /* verify against this instead of the image */
	double precopy_s;
	double prefill;         /* fraction of RAM in place before START */
	uint32_t vcpu_delay_ms; /* vCPUs start this long after START (after precopy) */
	bool verify_access;     /* check the whole page after every access */
	uint32_t timeout_s;
	int hung_ms;                  /* --helper-hung-ms, or -1: the library's default */
	const char *report;
	const char *fault_log;  /* --fault-log: CSV of every vCPU fault, or NULL */
	const char *respawn_cmd; /* shell command that starts a new helper, or NULL */
	uint32_t max_respawns;
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
	uint64_t poisoned;   /* accesses that hit a poisoned page */
	uint64_t blocked_ns; /* sum of the stalls */
	uint64_t sink;       /* keeps the loads alive */
	uint64_t early_reads; /* --verify-access: pages seen before their last byte */
	uint8_t *expect;     /* --verify-access: one page of the image */
	struct pch_hist hist; /* stall per fault, ns */
	/* --fault-log: samples in memory, written after the run (faultlog.c) */
	struct vm_fault_sample *flog; /* flog_cap entries, mapped at start; NULL: off */
	uint64_t flog_cap;
	uint64_t flog_n;      /* written by the vCPU (release), read by main (acquire) */
	uint64_t flog_dropped; /* faults past flog_cap (relaxed) */
};

/* One vCPU fault of --fault-log: CLOCK_MONOTONIC ns. */
struct vm_fault_sample {
	uint64_t t_ns;   /* when the load that faulted began */
	uint64_t lat_ns; /* until it returned: the vCPU ran again */
	uint64_t page;   /* page index in the RAM (page_size units) */
};

/* Record one fault (the vCPU's own thread; no lock, no allocation). */
static inline void vm_faultlog_add(struct vm_vcpu *v, uint64_t t_ns, uint64_t lat_ns,
				   uint64_t page)
{
	uint64_t n = v->flog_n;

	if (n < v->flog_cap) {
		v->flog[n] = (struct vm_fault_sample){ t_ns, lat_ns, page };
		__atomic_store_n(&v->flog_n, n + 1, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&v->flog_dropped, v->flog_dropped + 1, __ATOMIC_RELAXED);
	}
}

/* The first early read of the run, published by the vCPU that saw it. */
struct vm_early_read {
	unsigned vcpu;
	uint64_t page;
	int64_t offset; /* first differing byte in the page, -1 if none at a second look */
	uint8_t got, want;
};

struct vm {
	struct vm_config cfg;

	uint8_t *ram;
	int ram_fd;                   /* memfd of a shared backing, or -1 */
	int pagemap_fd;               /* /proc/self/pagemap, or -1: residency by mincore */
	uint64_t *prefilled;          /* bitmap of pages in place at START */
	uint64_t pages_prefilled;
	uint64_t npages;
	uint64_t vcpu_pages;          /* the vCPUs touch pages below this (balloon: not the tail) */
	struct vm_balloon *balloon;   /* --workload balloon */
	struct pch_client *client;    /* set before the vCPUs (and balloon) start */
	uint64_t hot_first, hot_pages; /* hotset region, in pages */

	int uffd;
	uint64_t uffd_features;       /* enabled with UFFDIO_API */
	uint64_t uffd_features_avail; /* offered by the kernel */
	uint64_t uffd_ioctls;         /* from UFFDIO_REGISTER */

	struct vm_vcpu *vcpu;
	int stop; /* atomic: vCPUs stop when set */
	int early_claimed;            /* atomic: a vCPU is filling early */
	int early_published;          /* atomic (release): early is complete */
	struct vm_early_read early;

	/* results; times are CLOCK_MONOTONIC ns, 0 when not reached */
	uint64_t t_start_ns, t_vcpu_ns, t_complete_ns;
	double verify_s;
	bool verified; /* verification ran */
	uint64_t pages_verified, pages_mismatched, pages_missing;
	uint64_t pages_poisoned;      /* read as a memory error (never arrived) */
	unsigned helper_restarts;     /* helpers started after one died (--respawn-helper) */
	pid_t helper_pids[8];         /* ... their pids, reaped at exit */
	uint64_t helper_takeover_max_ns; /* helper death seen -> new one serving, longest */
	unsigned char *resident; /* residency of each page when the migration ended */
	char thp_enabled[16];    /* thp: /sys/kernel/mm/transparent_hugepage/enabled */
	int64_t thp_anon_huge_kb; /* thp: AnonHugePages of the RAM then, or -1 */
	GPtrArray *errors; /* of char *; non-empty means the run failed */
};

/* xorshift64*: small, fast, good enough to pick pages (vCPUs, the balloon). */
static inline uint64_t vm_rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) without a division (Lemire's multiply-shift). */
static inline uint64_t vm_rng_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)vm_rng_next(s) * n) >> 64);
}

/* The vCPUs (and the balloon) should stop. */
static inline bool vm_stopping(const struct vm *vm)
{
	return __atomic_load_n(&vm->stop, __ATOMIC_RELAXED);
}

/* Record a failure: logged once here, and listed in the report. */
void vm_fail(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ram.c */
/* The backing called name, or NULL. */
const struct vm_backing *vm_backing_find(const char *name);
/* The page size of a backing, in bytes. */
uint32_t vm_backing_page_size(const struct vm_backing *bk);
/* "anon|memfd|...", for messages. */
const char *vm_backing_names(void);
/*
 * Map cfg.ram_bytes of guest RAM as cfg.backing says, and open what the
 * residency checks need.  0 or -errno (failure recorded).
 */
int vm_ram_map(struct vm *vm);
/* After registration: settings the prefill and khugepaged must not see (thp). */
void vm_ram_ready(struct vm *vm);
/* Unmap the RAM and close its fds. */
void vm_ram_unmap(struct vm *vm);
/*
 * Is page mapped in this process (not merely in the page cache)?  Errors
 * read as "resident": the caller then just reads, untimed.
 */
bool vm_ram_resident(const struct vm *vm, uint64_t page);
/*
 * Residency of every page into out (npages bytes, bit 0 set when mapped).
 * 0 or -errno.
 */
int vm_ram_residency(const struct vm *vm, unsigned char *out);
/* thp: record the THP mode and the RAM's AnonHugePages now. */
void vm_ram_thp_sample(struct vm *vm);

/*
 * Memory errors: the helper poisons pages that can never arrive, and a
 * load from one raises SIGBUS.  vm_guard_install() sets the handler once;
 * VM_GUARDED(expr_on_error) { loads } runs the loads and, on such an
 * error, the first block instead (per thread).
 */
#include <setjmp.h>
extern __thread sigjmp_buf *vm_guard;
int vm_guard_install(void);
#define VM_GUARD_BEGIN(jb) (sigsetjmp(jb, 0) ? (vm_guard = NULL, 1) : (vm_guard = &(jb), 0))
#define VM_GUARD_END() (vm_guard = NULL)

/* uffd.c */
/*
 * Open a userfaultfd (syscall, then /dev/userfaultfd), enable the features
 * pch-vm wants from those probed, and register the RAM: MISSING faults, and
 * MINOR ones too for a shared backing.
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
/*
 * --verify-access: record the first early read a vCPU published as the
 * run's failure.  Call after the join (or its timeout).
 */
void vm_vcpus_check_early(struct vm *vm);
/* Free what the vCPUs allocated. */
void vm_vcpus_free(struct vm *vm);

/* faultlog.c */
/* Most faults --fault-log keeps, all vCPUs together; later ones are counted. */
#define VM_FAULT_LOG_MAX (4ull << 20)
/*
 * --fault-log: give every vCPU its share of VM_FAULT_LOG_MAX samples (mapped,
 * not touched: memory is used as faults are recorded).  0 or -errno (logged).
 */
int vm_faultlog_init(struct vm *vm);
/* Samples kept and dropped, over all vCPUs. */
uint64_t vm_faultlog_rows(const struct vm *vm);
uint64_t vm_faultlog_dropped(const struct vm *vm);
/*
 * Write cfg.fault_log: header t_us,lat_us,vcpu,page and a row per sample
 * kept, vCPU by vCPU, in time order within one.  Safe while a vCPU still
 * runs (it sees what was published).  0 or -errno (logged).
 */
int vm_faultlog_write(struct vm *vm);
void vm_faultlog_free(struct vm *vm);

/* verify.c */
/* Snapshot page residency into vm->resident; call before unregistering. */
int vm_verify_snapshot(struct vm *vm);
/* Check every page against the image or cfg.image_file; fills the counts. */
int vm_verify(struct vm *vm);

/*
 * main.c: the pages are about to be discarded or unmapped: record it in the
 * page state the VMM owns (pch_client_state_discard), if there is one.
 */
void vm_state_discard(struct vm *vm, uint64_t first, uint64_t n);

/* balloon.c */
struct _JsonBuilder;
/* The uffd features --workload balloon needs (REMOVE, UNMAP events). */
uint64_t vm_balloon_uffd_features(void);
/* After the RAM is mapped: page states, the tail to unplug.  0 or -errno (recorded). */
int vm_balloon_init(struct vm *vm);
/* Start the balloon thread (it stops with the vCPUs).  0 or -errno (recorded). */
int vm_balloon_start(struct vm *vm);
/* Join it within timeout_ms; 0 or -ETIMEDOUT (blocked in a discard). */
int vm_balloon_join(struct vm *vm, int timeout_ms);
/* Did the balloon touch page (a vCPU check must not expect the image there)? */
bool vm_balloon_touched(const struct vm *vm, uint64_t page);
/*
 * Verify a page the balloon touched: -1 not touched (check it as usual),
 * 1 as expected (zeros; zeros and the marker when reused), 2 unplugged
 * (gone, not checked), 0 wrong (old content counts as stale_after_discard).
 */
int vm_balloon_check_page(struct vm *vm, uint64_t page, const uint8_t *got);
/* Pages unplugged (unmapped), not verifiable. */
uint64_t vm_balloon_unplugged(const struct vm *vm);
/* After verification: turn what it found into failures. */
void vm_balloon_finish(struct vm *vm);
/* The report's "balloon" object. */
void vm_balloon_report(const struct vm *vm, struct _JsonBuilder *jb);
void vm_balloon_free(struct vm *vm);

/* report.c */
/* Write the JSON report to cfg.report.  0 or -errno. */
int vm_report_write(struct vm *vm);

/* the workload names, for the CLI and the report */
const char *vm_workload_name(enum vm_workload w);

#endif /* PCH_VM_H */
