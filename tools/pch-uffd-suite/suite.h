/* SPDX-License-Identifier: MIT */
/*
 * suite.h - pch-uffd-suite's private header: memory kinds, the feature probe,
 * the case table and what a case gets to run with.
 *
 * A case declares what it needs (features, registration mode, ioctls of that
 * registration, memory kinds); us_decide() compares that with the probe and
 * either lets the case run or names what is missing.  Kernel versions are
 * never looked at.
 */
#ifndef PCH_UFFD_SUITE_H
#define PCH_UFFD_SUITE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pch/uffd-compat.h"

enum us_kind {
	US_ANON,		/* MAP_PRIVATE|MAP_ANONYMOUS */
	US_SHMEM,		/* memfd, MAP_SHARED */
	US_SHMEM_PRIVATE,	/* memfd, MAP_PRIVATE */
	US_HUGETLB,		/* MAP_HUGETLB|MAP_PRIVATE|MAP_ANONYMOUS */
	US_HUGETLB_SHARED,	/* memfd MFD_HUGETLB, MAP_SHARED */
	US_NKINDS,
	US_KIND_NONE = US_NKINDS, /* a case that maps no memory */
};

#define US_K(k) (1u << (k))
#define US_ALL_KINDS (US_K(US_NKINDS) - 1)
#define US_SHARED_KINDS (US_K(US_SHMEM) | US_K(US_HUGETLB_SHARED))

/* registration modes, as indices into us_probe.reg_* */
enum us_mode { US_MODE_MISSING, US_MODE_WP, US_MODE_MINOR, US_NMODES };

#define US_IOCTL(nr) (1ULL << (nr)) /* a bit of uffdio_register.ioctls */

/* What the kernel offers, probed once at start. */
struct us_probe {
	bool uffd_ok;		/* a uffd could be opened and initialised */
	char uffd_why[128];	/* why not, when !uffd_ok */
	bool syscall_ok;	/* userfaultfd(2) worked */
	bool dev_ok;		/* /dev/userfaultfd worked */
	uint64_t features;	/* UFFDIO_API(features 0).features */
	uint64_t api_ioctls;	/* UFFDIO_API.ioctls */
	bool kind_ok[US_NKINDS];	  /* the kind could be mapped */
	char kind_why[US_NKINDS][96];	  /* why not */
	int reg_err[US_NKINDS][US_NMODES]; /* 0 or the errno UFFDIO_REGISTER gave */
	uint64_t reg_ioctls[US_NKINDS][US_NMODES];
};

enum us_result { US_PASS, US_FAIL, US_SKIP, US_TIMEOUT, US_CRASH };

#define US_MAX_METRICS 16

struct us_ctx;

struct us_case {
	const char *cat;	/* "api", "missing", ... */
	const char *name;	/* "copy" */
	unsigned kinds;		/* US_K() mask; 0: maps no memory, runs once */
	uint64_t features;	/* UFFD_FEATURE_* needed besides those of kind+mode */
	unsigned mode;		/* UFFDIO_REGISTER_MODE_* the case registers with (or 0) */
	uint64_t ioctls;	/* US_IOCTL(_UFFDIO_*) needed in that registration */
	int (*fn)(struct us_ctx *ctx); /* returns enum us_result */
	unsigned arg;		/* for fn: US_ARG_* */
	const char *desc;
};

#define US_ARG_DONTWAKE 1u /* resolve with MODE_DONTWAKE, then UFFDIO_WAKE */

struct us_metric {
	char name[32];
	double value;
};

/* What a case runs with, in its own forked child. */
struct us_ctx {
	const struct us_case *c;
	enum us_kind kind;
	const struct us_probe *probe;
	bool quick;
	char reason[200];	/* why it failed or skipped */
	int nmetrics;
	struct us_metric m[US_MAX_METRICS];
};

/* needs.c: pure functions, no system calls (unit-tested) */
const char *us_kind_name(enum us_kind k);
const char *us_feature_name(uint64_t bit);
const char *us_ioctl_name(unsigned nr);
const char *us_mode_name(unsigned mode);
/* The UFFD_FEATURE_* bits memory kind k needs for registration mode(s) mode. */
uint64_t us_kind_features(enum us_kind k, unsigned mode);
/*
 * Whether case c can run on kind k given probe p.  Returns 0 (run) or 1 (skip)
 * with why set to "missing UFFD_FEATURE_X" / "missing UFFDIO_Y ..." / the
 * reason the memory kind or the uffd is unavailable.
 */
int us_decide(const struct us_probe *p, const struct us_case *c, enum us_kind k, char *why,
	      size_t len);

/* probe.c */
void us_probe_run(struct us_probe *p);
/* A uffd (syscall, /dev/userfaultfd if refused) after UFFDIO_API with
 * features; flags as for userfaultfd(2).  Returns the fd or -errno. */
int us_uffd_open(uint64_t features, int flags);
int us_uffd_open_dev(int flags);
int us_uffd_open_syscall(int flags);
/* UFFDIO_API on fd.  Returns 0 or -errno; *out gets the reply. */
int us_uffd_api(int fd, uint64_t features, struct uffdio_api *out);

/* mem.c: an area of one kind */
struct us_area {
	enum us_kind kind;
	size_t psize;	/* page size of the kind */
	size_t len;
	char *p;	/* the (registered) mapping */
	char *alias;	/* a second MAP_SHARED mapping of the memfd, or NULL */
	int memfd;	/* -1 for anon and hugetlb */
};

size_t us_kind_psize(enum us_kind k);
/* Map npages of kind k (alias too when want_alias and the kind has a memfd).
 * Returns 0 or -errno; -ENOMEM for hugetlb means no free huge pages. */
int us_area_map(struct us_area *a, enum us_kind k, size_t npages, bool want_alias);
void us_area_unmap(struct us_area *a);
/* fill buf (one page of psize) with the pattern of page pg */
void us_pattern(void *buf, size_t psize, size_t pg, uint64_t seed);
/* 0 when buf holds the pattern of page pg, else the first bad offset + 1 */
size_t us_pattern_check(const void *buf, size_t psize, size_t pg, uint64_t seed);
/* Reserve n free huge pages through vm.nr_hugepages (given back by
 * us_hugepages_restore: only the pages added, by the process that added
 * them).  Returns the number free afterwards. */
long us_hugepages_reserve(long n);
void us_hugepages_restore(void);

/* case helpers (main.c) */
int us_fail(struct us_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int us_skip(struct us_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void us_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * The first error wins: format into buf (len bytes) unless *set was already
 * true; threads (and, in shared memory, processes) of a case report through
 * it.  Cases wrap it in a macro per error slot.
 */
void us_seterr(atomic_bool *set, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* the scheduler state letter of thread tid of this process ('?' if unknown),
 * for lost-wakeup reports; no malloc or stdio, safe beside a fork() */
char us_thread_state(pid_t tid);
/*
 * Wait (poll, 200 ms at a time) until the uffd or stopfd is readable, then
 * read up to max messages from the O_NONBLOCK uffd.  Returns the number of
 * messages, 0 once stopfd is readable, or -1 with why set.
 */
int us_read_msgs(int uffd, int stopfd, struct uffd_msg *msgs, int max, char *why, size_t len);
void us_metric(struct us_ctx *ctx, const char *name, double value);
uint64_t us_now_us(void);

/* cases.c */
extern const struct us_case us_cases[];
extern const size_t us_ncases;

/* cases_api.c, cases_missing.c */
int us_case_handshake(struct us_ctx *ctx);
int us_case_dev(struct us_ctx *ctx);
int us_case_user_mode_only(struct us_ctx *ctx);
int us_case_register_modes(struct us_ctx *ctx);
int us_case_register_align(struct us_ctx *ctx);
int us_case_zeropage_eexist(struct us_ctx *ctx);
int us_case_copy_bad_range(struct us_ctx *ctx);
int us_case_copy(struct us_ctx *ctx);
int us_case_zeropage(struct us_ctx *ctx);
int us_case_continue(struct us_ctx *ctx);
int us_case_poison(struct us_ctx *ctx);
int us_case_move(struct us_ctx *ctx);

/* cases_wp.c */
int us_case_wp_sync(struct us_ctx *ctx);
int us_case_wp_async(struct us_ctx *ctx);
int us_case_wp_unpopulated(struct us_ctx *ctx);
int us_case_wp_copy_wp(struct us_ctx *ctx);
int us_case_wp_continue_wp(struct us_ctx *ctx);
int us_case_wp_fork(struct us_ctx *ctx);
int us_case_wp_fork_event(struct us_ctx *ctx);
int us_case_wp_mremap(struct us_ctx *ctx);
int us_case_wp_mremap_none(struct us_ctx *ctx);

/* cases_read.c: event reading paths */
int us_case_read_blocking(struct us_ctx *ctx);
int us_case_read_poll(struct us_ctx *ctx);
int us_case_read_epoll(struct us_ctx *ctx);
int us_case_read_uring(struct us_ctx *ctx);
int us_case_read_uring_batch(struct us_ctx *ctx);
int us_case_read_threads(struct us_ctx *ctx);
int us_case_read_uring_nonblock(struct us_ctx *ctx);
int us_case_read_uring_poll(struct us_ctx *ctx);
int us_case_read_uring_mshot(struct us_ctx *ctx);
int us_case_read_uring_cancel(struct us_ctx *ctx);

/* cases_proc.c: the handler in another process */
int us_case_proc_copy(struct us_ctx *ctx);
int us_case_proc_continue(struct us_ctx *ctx);
int us_case_proc_zeropage(struct us_ctx *ctx);
int us_case_proc_move(struct us_ctx *ctx);
int us_case_proc_dies_keeps(struct us_ctx *ctx);
int us_case_proc_dies_closed(struct us_ctx *ctx);
int us_case_proc_sigbus(struct us_ctx *ctx);
int us_case_proc_two(struct us_ctx *ctx);

/* tuning from the command line (main.c); 0: the case's own default */
extern unsigned us_opt_threads;	/* --threads: faulting threads of stress/ */
extern unsigned us_opt_mib;	/* --mib: area of stress/ */
extern unsigned us_opt_seconds;	/* --seconds: run time of stress/ */
extern unsigned us_opt_faults;	/* --faults (--latency): faults per lat/ case */

/* cases_stress.c: helpers (also for cases_lat.c) */
uint64_t us_now_ns(void);
/* fork a helper process that dies with the case (PR_SET_PDEATHSIG): the pid
 * in the parent, 0 in the child, -errno */
pid_t us_fork_helper(void);
/* wait for pid up to timeout_ms, then SIGKILL it; its status or -ETIMEDOUT */
int us_reap(pid_t pid, unsigned timeout_ms);
/* pass fd over a unix socket (SCM_RIGHTS); 0 or -errno */
int us_send_fd(int sock, int fd);
/* the fd received, or -errno (-ETIMEDOUT after timeout_ms) */
int us_recv_fd(int sock, unsigned timeout_ms);
struct us_lat {
	double p50, p99, p999, max, mean; /* µs */
};
/* sorts ns[] (n samples in ns) and summarises it */
void us_lat_summary(uint32_t *ns, size_t n, struct us_lat *out);

/* cases_stress.c: the bounce run */
int us_case_stress_bounce(struct us_ctx *ctx);
int us_case_stress_bounce_proc(struct us_ctx *ctx);
int us_case_stress_bounce_uring(struct us_ctx *ctx);

/* cases_lat.c: the case's arg is the reading path */
enum us_lat_path { US_LAT_READ, US_LAT_POLL, US_LAT_EPOLL, US_LAT_URING };
int us_case_lat_copy(struct us_ctx *ctx);
int us_case_lat_zeropage(struct us_ctx *ctx);
int us_case_lat_continue(struct us_ctx *ctx);
int us_case_lat_move(struct us_ctx *ctx);
int us_case_lat_wp(struct us_ctx *ctx);
int us_case_lat_copy_proc(struct us_ctx *ctx);

/* cases_race.c */
int us_case_race_eexist(struct us_ctx *ctx);
int us_case_race_eexist_continue(struct us_ctx *ctx);
int us_case_race_eagain_fork(struct us_ctx *ctx);
int us_case_race_eagain_remap(struct us_ctx *ctx);
int us_case_race_eagain_remove(struct us_ctx *ctx);
int us_case_race_eagain_unmap(struct us_ctx *ctx);
int us_case_race_dontneed(struct us_ctx *ctx);
int us_case_race_dontneed_event(struct us_ctx *ctx);
int us_case_race_unregister_pending(struct us_ctx *ctx);
int us_case_race_close_pending(struct us_ctx *ctx);
int us_case_race_wake_range(struct us_ctx *ctx);

/* cases_event.c: the event/ cases */
int us_case_ev_fork(struct us_ctx *ctx);
int us_case_ev_fork_none(struct us_ctx *ctx);
int us_case_ev_remap(struct us_ctx *ctx);
int us_case_ev_remove(struct us_ctx *ctx);
int us_case_ev_unmap(struct us_ctx *ctx);
int us_case_ev_order(struct us_ctx *ctx);
int us_case_ev_thread_id(struct us_ctx *ctx);
int us_case_ev_exact(struct us_ctx *ctx);
int us_case_ev_punch(struct us_ctx *ctx);

/*
 * cases_event.c: scripted cases (also cases_wp.c).  The case's thread reads
 * the uffd one message at a time with a deadline; each fault or
 * event-causing syscall runs in a one-shot thread, a struct us_act.
 */
enum us_act_op {
	US_ACT_READ,	/* read addr; with psize, check page pg holds seed's pattern */
	US_ACT_READZ,	/* read psize bytes at addr: all zero */
	US_ACT_WRITE,	/* write addr (one word, then seed's pattern of page pg) */
	US_ACT_MADVISE,	/* madvise(addr, len, advice) */
	US_ACT_MUNMAP,	/* munmap(addr, len) */
	US_ACT_MREMAP,	/* mremap(addr, len, len, MAYMOVE|FIXED, addr2) */
	US_ACT_FORK,	/* fork; the child runs cops on pages from addr, then exits */
	US_ACT_PUNCH,	/* fallocate(advice (an fd), PUNCH_HOLE|KEEP_SIZE, pg * psize, len) */
};

/* what a forked child does to one page: 'r' read seed's pattern, 'z' read
 * zeros, 'w' write seed's pattern (and check it), 'p' / 'P' its pagemap
 * entry has PM_UFFD_WP clear / set */
struct us_cop {
	size_t pg;
	char op;
	uint64_t seed;
};

struct us_act {
	/* in */
	enum us_act_op op;
	char *addr, *addr2;
	size_t len, psize, pg;
	uint64_t seed;
	int advice;
	const struct us_cop *cops;
	int ncops;
	unsigned child_ms;	/* US_ACT_FORK: the child's deadline (3000 when 0) */
	/* out */
	long ret;		/* the syscall's return (mremap: the new address) */
	int err;		/* its errno */
	pid_t pid;		/* US_ACT_FORK: the child */
	int status;		/* its wait status */
	char ferr[160];		/* what went wrong in the thread */
	/* state */
	pthread_t t;
	bool started;
	atomic_int tid;
	atomic_bool done, forked;
};

/* Start a's thread.  Returns US_PASS or a failure (ctx's reason set). */
int us_act_start(struct us_ctx *ctx, struct us_act *a);
/* Wait up to ms for a to finish, join it; fails when it is still blocked
 * (naming its scheduler state) or reported ferr. */
int us_act_wait(struct us_ctx *ctx, struct us_act *a, unsigned ms, const char *what);
/* Wait up to ms until a's thread sleeps (state S or D); fails when it
 * finished instead, or still runs. */
int us_act_blocked(struct us_ctx *ctx, struct us_act *a, unsigned ms, const char *what);
const char *us_event_name(unsigned ev);
/* Read one message from fd (O_NONBLOCK) within ms. */
int us_msg_next(struct us_ctx *ctx, int fd, unsigned ms, struct uffd_msg *m, const char *what);
/* Fails when a message arrives on fd within ms, naming it. */
int us_msg_none(struct us_ctx *ctx, int fd, unsigned ms, const char *what);
/* The next message is a fault in [page, page+psize) with flags & mask == want. */
int us_expect_fault(struct us_ctx *ctx, int fd, unsigned ms, uintptr_t page, size_t psize,
		    uint64_t want, uint64_t mask, const char *what);
/* UFFDIO_COPY seed's pattern of page pg to dst (EAGAIN retried).  0 or -errno. */
int us_copy_page(int fd, uintptr_t dst, size_t psize, size_t pg, uint64_t seed, uint64_t mode);
/* US_PASS when a's forked child exited 0, else a failure naming its cop */
int us_child_status(struct us_ctx *ctx, const struct us_act *a, const char *what);

#endif /* PCH_UFFD_SUITE_H */
