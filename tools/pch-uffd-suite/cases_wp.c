// SPDX-License-Identifier: MIT
/*
 * cases_wp.c - the wp/ cases: write-protect.
 *
 * wp/sync[-dontwake]: populated pages, UFFDIO_WRITEPROTECT the range; a
 *   writing thread traps on every page (UFFD_PAGEFAULT_FLAG_WP|WRITE), a
 *   handler thread (poll + read) un-protects the page (mode 0 wakes; or
 *   MODE_DONTWAKE followed by UFFDIO_WAKE); every byte checked.
 * wp/async: UFFD_FEATURE_WP_ASYNC: the kernel resolves WP faults itself (no
 *   message); PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and PAGE_IS_WRITTEN
 *   returns exactly the pages written since protection, and re-protects them.
 *   On anon the scan also needs UFFD_FEATURE_WP_UNPOPULATED (the kernel
 *   only allows WP_MATCHING on VMAs that use pte markers).
 * wp/unpopulated: UFFD_FEATURE_WP_UNPOPULATED on anon: an unpopulated range
 *   write-protected traps a later write as a WP fault, not a MISSING one.
 *
 * The writing thread is watched: still blocked after a deadline (a lost
 * wakeup, or a message nobody expected) the case fails with its state.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

enum wmode { W_SYNC, W_ASYNC, W_UNPOP };

struct wrun {
	struct us_ctx *ctx;
	struct us_area a;
	enum wmode w;
	bool dontwake;
	int uffd;
	int stopfd;
	size_t npages;
	uint64_t seed_old, seed_new;
	const unsigned char *wmask;	/* pages the writer writes (NULL: all) */
	/* handler */
	atomic_int faults, wakes;
	atomic_bool herr_set;
	char herr[160];
	/* writer */
	atomic_size_t at;
	atomic_bool done;
	pid_t ftid;
	char ferr[160];
	uint64_t lat_sum, lat_max;
	size_t written;
};

#define herror(r, ...) us_seterr(&(r)->herr_set, (r)->herr, sizeof((r)->herr), __VA_ARGS__)

/* UFFDIO_WRITEPROTECT [start, start+len); returns 0 or -errno */
static int wprotect(int uffd, void *start, size_t len, uint64_t mode)
{
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)start, len }, .mode = mode };

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

static void handle_fault(struct wrun *r, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uint64_t fl = msg->arg.pagefault.flags;
	char *page;
	size_t pg;
	int ret;

	atomic_fetch_add(&r->faults, 1);
	if (addr < (uintptr_t)r->a.p || addr >= (uintptr_t)r->a.p + r->a.len) {
		herror(r, "fault at 0x%lx, outside the area", (unsigned long)addr);
		return;
	}
	pg = (addr - (uintptr_t)r->a.p) / r->a.psize;
	page = r->a.p + pg * r->a.psize;
	if (r->w == W_ASYNC)
		herror(r, "page %zu: fault message (flags 0x%llx) with WP_ASYNC", pg,
		       (unsigned long long)fl);
	else if (!(fl & UFFD_PAGEFAULT_FLAG_WP) || !(fl & UFFD_PAGEFAULT_FLAG_WRITE))
		herror(r, "page %zu: fault flags 0x%llx, want WP|WRITE%s", pg,
		       (unsigned long long)fl,
		       r->w == W_UNPOP && !(fl & UFFD_PAGEFAULT_FLAG_WP) ? " (a MISSING fault)" : "");
	/* un-protect whatever happened, so that the writer goes on */
	ret = wprotect(r->uffd, page, r->a.psize, r->dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
	if (ret < 0)
		herror(r, "UFFDIO_WRITEPROTECT (un-protect) page %zu: %s", pg, strerror(-ret));
	if (r->dontwake || ret < 0) {
		struct uffdio_range w = { (uintptr_t)page, r->a.psize };

		if (ioctl(r->uffd, UFFDIO_WAKE, &w) < 0)
			herror(r, "UFFDIO_WAKE page %zu: %s", pg, strerror(errno));
		else
			atomic_fetch_add(&r->wakes, 1);
	}
}

static void *handler(void *arg)
{
	struct wrun *r = arg;
	struct uffd_msg msgs[16];

	for (;;) {
		char why[96];
		int n = us_read_msgs(r->uffd, r->stopfd, msgs, 16, why, sizeof(why));

		if (n < 0)
			herror(r, "%s", why);
		if (n <= 0)
			return NULL;
		for (int i = 0; i < n; i++) {
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				handle_fault(r, &msgs[i]);
			else
				herror(r, "unexpected event 0x%x", msgs[i].event);
		}
	}
}

/* writes seed_new's pattern into the pages of wmask (all when NULL) */
static void *writer(void *arg)
{
	struct wrun *r = arg;
	size_t ps = r->a.psize, bad;

	r->ftid = (pid_t)syscall(SYS_gettid);
	for (size_t pg = 0; pg < r->npages; pg++) {
		char *page = r->a.p + pg * ps;
		uint64_t t0, dt;

		if (r->wmask && !r->wmask[pg])
			continue;
		atomic_store(&r->at, pg);
		/* a protected page reads without a fault */
		if (r->w != W_UNPOP && (bad = us_pattern_check(page, ps, pg, r->seed_old))) {
			snprintf(r->ferr, sizeof(r->ferr),
				 "page %zu: content wrong at byte %zu before the write", pg, bad - 1);
			break;
		}
		t0 = us_now_us();
		*(volatile uint64_t *)page = 0; /* the trapping write */
		dt = us_now_us() - t0;
		r->lat_sum += dt;
		if (dt > r->lat_max)
			r->lat_max = dt;
		r->written++;
		us_pattern(page, ps, pg, r->seed_new);
		if ((bad = us_pattern_check(page, ps, pg, r->seed_new))) {
			snprintf(r->ferr, sizeof(r->ferr),
				 "page %zu: content wrong at byte %zu after the write", pg, bad - 1);
			break;
		}
	}
	atomic_store(&r->done, true);
	return NULL;
}

/*
 * Run the writer over wmask with a watchdog.  Returns US_PASS, or the
 * failure (the threads are then left behind: the case's child exits).
 */
static int run_writer(struct wrun *r, const unsigned char *wmask)
{
	struct us_ctx *ctx = r->ctx;
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000;
	pthread_t ft;
	uint64_t t0;

	r->wmask = wmask;
	atomic_store(&r->done, false);
	atomic_store(&r->at, 0);
	t0 = us_now_us();
	if (pthread_create(&ft, NULL, writer, r))
		return us_fail(ctx, "pthread_create failed");
	while (!atomic_load(&r->done) && us_now_us() - t0 < watchdog_ms * 1000ULL)
		usleep(1000);
	if (!atomic_load(&r->done))
		return us_fail(ctx, "writing thread still blocked after %u ms on page %zu of %zu "
			       "(state %c), %d faults read, %d wakes%s%s", watchdog_ms,
			       atomic_load(&r->at), r->npages, us_thread_state(r->ftid),
			       atomic_load(&r->faults), atomic_load(&r->wakes),
			       atomic_load(&r->herr_set) ? "; handler: " : "",
			       atomic_load(&r->herr_set) ? r->herr : "");
	pthread_join(ft, NULL);
	if (r->ferr[0])
		return us_fail(ctx, "%s", r->ferr);
	return US_PASS;
}

/*
 * PAGEMAP_SCAN the area for written pages (and write-protect them again);
 * got[pg] = 1 for each.  Returns the number of pages or -errno.
 */
static long scan_written(struct wrun *r, int pagemap, unsigned char *got)
{
	struct page_region *v = calloc(r->npages, sizeof(*v));
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (uintptr_t)r->a.p,
		.end = (uintptr_t)r->a.p + r->a.len,
		.vec = (uintptr_t)v,
		.vec_len = r->npages,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long n, pages = 0;

	if (!v)
		return -ENOMEM;
	memset(got, 0, r->npages);
	n = ioctl(pagemap, PAGEMAP_SCAN, &arg);
	if (n < 0) {
		n = -errno;
		free(v);
		return n;
	}
	for (long i = 0; i < n; i++)
		for (uint64_t a = v[i].start; a < v[i].end; a += r->a.psize) {
			if (a < arg.start || a >= arg.end) {
				free(v);
				return -ERANGE;
			}
			got[(a - arg.start) / r->a.psize] = 1;
			pages++;
		}
	free(v);
	return pages;
}

/* "pages 1, 3" of mask, for a failure message */
static const char *mask_str(const unsigned char *m, size_t n, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off + 8 < len; i++)
		if (m[i])
			off += (size_t)snprintf(buf + off, len - off, "%s%zu", off ? "," : "", i);
	return off ? buf : "none";
}

/* one scan: the pages written must be exactly want */
static int check_scan(struct wrun *r, int pagemap, const unsigned char *want, const char *when)
{
	unsigned char *got = calloc(r->npages, 1);
	char b1[96], b2[96];
	long n;
	int rc = US_PASS;

	if (!got)
		return us_fail(r->ctx, "out of memory");
	n = scan_written(r, pagemap, got);
	if (n < 0)
		rc = us_fail(r->ctx, "PAGEMAP_SCAN %s: %s", when, strerror((int)-n));
	else if (memcmp(got, want, r->npages))
		rc = us_fail(r->ctx, "PAGEMAP_SCAN %s: written pages %s, want %s", when,
			     mask_str(got, r->npages, b1, sizeof(b1)),
			     mask_str(want, r->npages, b2, sizeof(b2)));
	free(got);
	return rc;
}

static int run_async(struct wrun *r)
{
	struct us_ctx *ctx = r->ctx;
	unsigned char *want = calloc(r->npages, 1), *none = calloc(r->npages, 1);
	int pagemap, rc;

	if (!want || !none)
		return us_fail(ctx, "out of memory");
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0)
		return us_fail(ctx, "open /proc/self/pagemap: %s", strerror(errno));
	for (size_t pg = 0; pg < r->npages; pg++) /* 0,3,6,7,9,11,12,15,... */
		want[pg] = pg % 3 == 0 || pg % 4 == 3;
	/* protected: nothing written yet */
	rc = check_scan(r, pagemap, none, "after UFFDIO_WRITEPROTECT");
	if (rc == US_PASS)
		rc = run_writer(r, want);
	if (rc == US_PASS)
		rc = check_scan(r, pagemap, want, "after the writes");
	/* WP_MATCHING protected them again */
	if (rc == US_PASS)
		rc = check_scan(r, pagemap, none, "a second time");
	if (rc == US_PASS) {
		/* write the last page again: only it is reported */
		size_t last = r->npages - 1;
		uint64_t seed0 = r->seed_old;
		bool first = want[last];

		memset(want, 0, r->npages);
		want[last] = 1;
		if (first) /* the writer checks what the page holds */
			r->seed_old = r->seed_new;
		rc = run_writer(r, want);
		r->seed_old = seed0;
		if (rc == US_PASS)
			rc = check_scan(r, pagemap, want, "after writing the last page again");
	}
	/* every page holds what was written last, or what it was populated with */
	for (size_t pg = 0; rc == US_PASS && pg < r->npages; pg++) {
		bool w = pg % 3 == 0 || pg % 4 == 3 || pg == r->npages - 1;
		size_t bad = us_pattern_check(r->a.p + pg * r->a.psize, r->a.psize, pg,
					      w ? r->seed_new : r->seed_old);

		if (bad)
			rc = us_fail(ctx, "page %zu: content wrong at byte %zu at the end", pg,
				     bad - 1);
	}
	close(pagemap);
	free(want);
	free(none);
	return rc;
}

static int run_wp(struct us_ctx *ctx, enum wmode w)
{
	struct wrun *r;
	pthread_t ht;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	int ret, rc;
	uint64_t t0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->w = w;
	r->dontwake = ctx->c->arg & US_ARG_DONTWAKE;
	r->npages = huge ? (ctx->quick ? 2 : 4) : (ctx->quick ? 16 : 256);
	r->seed_old = 0x3b0000ULL + (uint64_t)w * 7 + ctx->kind;
	r->seed_new = r->seed_old ^ 0xa5a5a5a5ULL;
	ret = us_area_map(&r->a, ctx->kind, r->npages, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages (%zu needed)", r->npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	if (w != W_UNPOP) /* populate, before registering */
		for (size_t pg = 0; pg < r->npages; pg++)
			us_pattern(r->a.p + pg * r->a.psize, r->a.psize, pg, r->seed_old);

	r->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-r->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = ctx->c->mode };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			       strerror(errno));
	ret = wprotect(r->uffd, r->a.p, r->a.len, UFFDIO_WRITEPROTECT_MODE_WP);
	if (ret < 0)
		return us_fail(ctx, "UFFDIO_WRITEPROTECT_MODE_WP: %s", strerror(-ret));
	r->stopfd = eventfd(0, EFD_CLOEXEC);
	if (r->stopfd < 0)
		return us_fail(ctx, "eventfd: %s", strerror(errno));

	/* the handler runs for WP_ASYNC too: a message there is a failure */
	if (pthread_create(&ht, NULL, handler, r))
		return us_fail(ctx, "pthread_create failed");
	t0 = us_now_us();
	rc = w == W_ASYNC ? run_async(r) : run_writer(r, NULL);
	if (rc != US_PASS)
		return rc; /* threads may be blocked: left to the child's exit */
	uint64_t elapsed = us_now_us() - t0;

	eventfd_write(r->stopfd, 1);
	pthread_join(ht, NULL);

	int faults = atomic_load(&r->faults);

	if (atomic_load(&r->herr_set))
		rc = us_fail(ctx, "handler: %s", r->herr);
	else if (w != W_ASYNC && faults < (int)r->npages)
		rc = us_fail(ctx, "%d WP faults read for %zu written pages", faults, r->npages);
	else if (r->dontwake && atomic_load(&r->wakes) < faults)
		rc = us_fail(ctx, "%d UFFDIO_WAKE for %d DONTWAKE faults", atomic_load(&r->wakes),
			     faults);
	if (rc == US_PASS && w != W_ASYNC) {
		/* un-protected: every page holds what was written */
		for (size_t pg = 0; pg < r->npages; pg++) {
			size_t bad = us_pattern_check(r->a.p + pg * r->a.psize, r->a.psize, pg,
						      r->seed_new);
			if (bad) {
				rc = us_fail(ctx, "page %zu: content wrong at byte %zu at the end",
					     pg, bad - 1);
				break;
			}
		}
	}
	us_metric(ctx, "pages", (double)r->npages);
	us_metric(ctx, "pages_written", (double)r->written);
	us_metric(ctx, "faults", faults);
	us_metric(ctx, "wakes", atomic_load(&r->wakes));
	us_metric(ctx, "fault_us_mean", r->written ? (double)r->lat_sum / (double)r->written : 0);
	us_metric(ctx, "fault_us_max", (double)r->lat_max);
	us_metric(ctx, "elapsed_us", (double)elapsed);
	close(r->uffd);
	close(r->stopfd);
	return rc;
}

int us_case_wp_sync(struct us_ctx *ctx)
{
	return run_wp(ctx, W_SYNC);
}

int us_case_wp_async(struct us_ctx *ctx)
{
	return run_wp(ctx, W_ASYNC);
}

int us_case_wp_unpopulated(struct us_ctx *ctx)
{
	return run_wp(ctx, W_UNPOP);
}

/*
 * The scripted wp/ cases (the helpers are cases_event.c's: the case's thread
 * reads one message at a time with a deadline, the accesses run in one-shot
 * threads):
 *
 * wp/copy-wp: MISSING|WP registration; a MISSING fault resolved with
 *   UFFDIO_COPY_MODE_WP installs a protected page: the read goes on, a later
 *   write traps as a WP fault; a write to a missing page faults MISSING,
 *   then WP on the installed page.  A COPY without MODE_WP (page 2) is not
 *   protected: its write goes on with no second fault.
 * wp/continue-wp: the same with MINOR|WP and UFFDIO_CONTINUE_MODE_WP.
 * wp/fork[-event]: protected pages across fork().  Without EVENT_FORK the
 *   child's VMA is not registered and its ptes lose the uffd-wp bit: the
 *   child's writes go on without a message.  With EVENT_FORK the child's
 *   copy keeps the protection: each write of the child traps on the child's
 *   uffd and is un-protected there.  Either way the parent's pages stay
 *   protected.  (Kernel: "mm/uffd: fix pte marker when fork() without fork
 *   event", 49d6d7fb6313, and selftests uffd-unit-tests wp-fork[-with-event].)
 * wp/mremap[-none]: protected pages moved by mremap(MAYMOVE|FIXED).  With
 *   EVENT_REMAP the registration moves with them (REMAP event) and they stay
 *   protected: a write at the new address traps there.  Without it the new
 *   VMA is not registered and the uffd-wp bits are cleared (pagemap
 *   PM_UFFD_WP, bit 57, on every page): writes go on, no message.  (Kernel:
 *   "mm: clear uffd-wp PTE/PMD state on mremap()", Ryan Roberts 2025, checked
 *   by selftests uffd-wp-mremap.)
 */

enum scase { S_COPY_WP, S_CONTINUE_WP, S_FORK, S_FORK_EVENT, S_MREMAP, S_MREMAP_NONE };

struct srun {
	struct us_ctx *ctx;
	struct us_area a;
	int uffd;
	size_t ps, npages;
	unsigned ms;
	uint64_t seed;
	struct us_act t[2];
};

#define PM_UFFD_WP (1ULL << 57)
#define SFLAGS (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_MINOR)

static bool s_shared(enum us_kind k)
{
	return k == US_SHMEM || k == US_HUGETLB_SHARED;
}

static uintptr_t s_page(const char *base, size_t ps, size_t pg)
{
	return (uintptr_t)base + pg * ps;
}

/* /proc/self/pagemap entry of addr; 0 when unreadable */
static uint64_t pagemap_entry(uintptr_t addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (off_t)(addr / 4096 * sizeof(e))) != sizeof(e))
		e = 0;
	close(fd);
	return e;
}

/* every page of [base, +npages) has PM_UFFD_WP == want */
static int check_wp_bits(struct srun *s, const char *base, bool want, const char *what)
{
	for (size_t pg = 0; pg < s->npages; pg++) {
		uint64_t e = pagemap_entry(s_page(base, s->ps, pg));

		if (!!(e & PM_UFFD_WP) != want)
			return us_fail(s->ctx, "%s: page %zu: pagemap 0x%llx, PM_UFFD_WP %s", what, pg,
				       (unsigned long long)e, want ? "clear, want set" : "set, want clear");
	}
	return US_PASS;
}

static int s_start(struct srun *s, struct us_act *a, enum us_act_op op, char *base, size_t pg,
		   uint64_t seed)
{
	memset(a, 0, sizeof(*a));
	a->op = op;
	a->addr = base + pg * s->ps;
	a->psize = s->ps;
	a->pg = pg;
	a->seed = seed;
	return us_act_start(s->ctx, a);
}

/* the next message on fd is a WP fault on page pg at base: un-protect it
 * there (which wakes the writer) */
static int wp_fault_unprotect(struct srun *s, int fd, char *base, size_t pg, const char *what)
{
	int rc, ret;

	if ((rc = us_expect_fault(s->ctx, fd, s->ms, s_page(base, s->ps, pg), s->ps,
				  UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE, SFLAGS, what)))
		return rc;
	ret = wprotect(fd, base + pg * s->ps, s->ps, 0);
	if (ret < 0)
		return us_fail(s->ctx, "%s: UFFDIO_WRITEPROTECT (un-protect): %s", what, strerror(-ret));
	return US_PASS;
}

/* resolve the missing/minor page pg: COPY seed's pattern, or CONTINUE */
static int s_fill(struct srun *s, bool cont, size_t pg, uint64_t mode)
{
	uintptr_t dst = s_page(s->a.p, s->ps, pg);

	if (cont) {
		struct uffdio_continue c = { .range = { dst, s->ps }, .mode = mode };

		return ioctl(s->uffd, UFFDIO_CONTINUE, &c) < 0 ? -errno : 0;
	}
	return us_copy_page(s->uffd, dst, s->ps, pg, s->seed, mode);
}

/* wp/copy-wp, wp/continue-wp */
static int run_fill_wp(struct srun *s, bool cont)
{
	struct us_ctx *ctx = s->ctx;
	struct us_act *a = &s->t[0];
	uint64_t want0 = cont ? UFFD_PAGEFAULT_FLAG_MINOR : 0;
	uint64_t mwp = cont ? UFFDIO_CONTINUE_MODE_WP : UFFDIO_COPY_MODE_WP;
	uint64_t s2 = s->seed ^ 0x5a5aULL;
	const char *name = cont ? "CONTINUE" : "COPY";
	char what[96];
	int rc, ret;

	/* page 0: read (fault, fill protected), then write (WP fault) */
	if ((rc = s_start(s, a, US_ACT_READ, s->a.p, 0, s->seed)) ||
	    (rc = us_expect_fault(ctx, s->uffd, s->ms, s_page(s->a.p, s->ps, 0), s->ps, want0,
				  SFLAGS, "page 0: the read's fault")))
		return rc;
	if ((ret = s_fill(s, cont, 0, mwp)) == -EINVAL && cont && s_fill(s, cont, 0, 0) == 0)
		/* no feature bit or ioctl bit announces CONTINUE_MODE_WP: a kernel
		 * without it refuses the mode; plain CONTINUE working proves the
		 * rest of the request was right */
		return us_skip(ctx, "missing UFFDIO_CONTINUE_MODE_WP (EINVAL; UFFDIO_CONTINUE "
			       "without it works)");
	if (ret < 0)
		return us_fail(ctx, "page 0: UFFDIO_%s with MODE_WP: %s", name, strerror(-ret));
	if ((rc = us_act_wait(ctx, a, s->ms, "page 0: the read after the fill")) ||
	    (rc = us_msg_none(ctx, s->uffd, 0, "page 0: after the read")))
		return rc;
	if (!(pagemap_entry(s_page(s->a.p, s->ps, 0)) & PM_UFFD_WP))
		return us_fail(ctx, "page 0: PM_UFFD_WP clear after UFFDIO_%s_MODE_WP", name);
	snprintf(what, sizeof(what), "page 0: the write after %s_MODE_WP", name);
	if ((rc = s_start(s, a, US_ACT_WRITE, s->a.p, 0, s2)) ||
	    (rc = wp_fault_unprotect(s, s->uffd, s->a.p, 0, what)) ||
	    (rc = us_act_wait(ctx, a, s->ms, what)))
		return rc;
	/* page 1: a write to the missing page: MISSING (MINOR) first, then WP */
	if ((rc = s_start(s, a, US_ACT_WRITE, s->a.p, 1, s2)) ||
	    (rc = us_expect_fault(ctx, s->uffd, s->ms, s_page(s->a.p, s->ps, 1), s->ps,
				  want0 | UFFD_PAGEFAULT_FLAG_WRITE, SFLAGS,
				  "page 1: the write's first fault")))
		return rc;
	if ((ret = s_fill(s, cont, 1, mwp)) < 0)
		return us_fail(ctx, "page 1: UFFDIO_%s with MODE_WP: %s", name, strerror(-ret));
	snprintf(what, sizeof(what), "page 1: the write retried after %s_MODE_WP", name);
	if ((rc = wp_fault_unprotect(s, s->uffd, s->a.p, 1, what)) ||
	    (rc = us_act_wait(ctx, a, s->ms, what)))
		return rc;
	/* page 2: filled without MODE_WP: one fault only */
	if ((rc = s_start(s, a, US_ACT_WRITE, s->a.p, 2, s2)) ||
	    (rc = us_expect_fault(ctx, s->uffd, s->ms, s_page(s->a.p, s->ps, 2), s->ps,
				  want0 | UFFD_PAGEFAULT_FLAG_WRITE, SFLAGS,
				  "page 2: the write's fault")))
		return rc;
	if ((ret = s_fill(s, cont, 2, 0)) < 0)
		return us_fail(ctx, "page 2: UFFDIO_%s: %s", name, strerror(-ret));
	if ((rc = us_act_wait(ctx, a, s->ms, "page 2: the write after a fill without MODE_WP")) ||
	    (rc = us_msg_none(ctx, s->uffd, 20, "page 2: after the write")))
		return rc;
	/* CONTINUE maps the page cache: shared kinds see the writes there */
	if (cont)
		for (size_t pg = 0; pg < 3; pg++) {
			uint64_t want = s_shared(ctx->kind) ? s2 : s->seed;
			size_t bad = us_pattern_check(s->a.alias + pg * s->ps, s->ps, pg, want);

			if (bad)
				return us_fail(ctx, "page %zu: the page cache (alias) wrong at byte %zu "
					       "(want the %s)", pg, bad - 1,
					       s_shared(ctx->kind) ? "write" : "old content");
		}
	return US_PASS;
}

/* wp/fork, wp/fork-event */
static int run_wp_fork(struct srun *s, bool event)
{
	struct us_ctx *ctx = s->ctx;
	struct us_act *f = &s->t[0], *a = &s->t[1];
	uint64_t sc = s->seed ^ 0xc1c1ULL, s3 = s->seed ^ 0x3333ULL;
	struct us_cop cops[8];
	struct uffd_msg m;
	int rc, cfd = -1, n = 0;

	/* the child: the uffd-wp bit of each page (kept only with EVENT_FORK),
	 * then a write to each */
	for (size_t pg = 0; pg < s->npages; pg++)
		cops[n++] = (struct us_cop){ pg, event ? 'P' : 'p', 0 };
	for (size_t pg = 0; pg < s->npages; pg++)
		cops[n++] = (struct us_cop){ pg, 'w', sc };
	memset(f, 0, sizeof(*f));
	f->op = US_ACT_FORK;
	f->addr = s->a.p;
	f->psize = s->ps;
	f->cops = cops;
	f->ncops = n;
	if ((rc = us_act_start(ctx, f)))
		return rc;
	if (event) {
		if ((rc = us_act_blocked(ctx, f, s->ms, "fork (until FORK is read)")) ||
		    (rc = us_msg_next(ctx, s->uffd, s->ms, &m, "fork")))
			return rc;
		if (m.event != UFFD_EVENT_FORK)
			return us_fail(ctx, "fork: %s event, want FORK", us_event_name(m.event));
		cfd = (int)m.arg.fork.ufd;
		/* each write of the child traps on the child's uffd */
		for (size_t pg = 0; pg < s->npages; pg++) {
			char what[64];

			snprintf(what, sizeof(what), "the child's write to page %zu", pg);
			if ((rc = wp_fault_unprotect(s, cfd, s->a.p, pg, what)))
				return rc;
		}
	}
	if ((rc = us_act_wait(ctx, f, f->child_ms + s->ms, "fork and the child's writes")))
		return rc;
	/* the child does not own the parent's huge page reservation: a
	 * copy-on-write with no free huge page is SIGBUS (hugetlb's documented
	 * MAP_PRIVATE behaviour), not a uffd failure */
	if (ctx->kind == US_HUGETLB && WIFSIGNALED(f->status) && WTERMSIG(f->status) == SIGBUS)
		return us_skip(ctx, "no free huge pages: the child's copy-on-write got SIGBUS");
	if ((rc = us_child_status(ctx, f, "fork")))
		return rc;
	if ((rc = us_msg_none(ctx, s->uffd, 20, "the parent's uffd after the fork")))
		return rc;
	if (cfd >= 0) {
		if ((rc = us_msg_none(ctx, cfd, 0, "the child's uffd after its writes")))
			return rc;
		close(cfd);
	}
	/* the parent: still protected; shared kinds see the child's writes */
	for (size_t pg = 0; pg < s->npages; pg++) {
		uint64_t want = s_shared(ctx->kind) ? sc : s->seed;
		size_t bad = us_pattern_check(s->a.p + pg * s->ps, s->ps, pg, want);

		if (bad)
			return us_fail(ctx, "the parent's page %zu wrong at byte %zu (want the %s)", pg,
				       bad - 1, s_shared(ctx->kind) ? "child's write" : "old content");
	}
	if ((rc = check_wp_bits(s, s->a.p, true, "the parent after the fork")) ||
	    (rc = s_start(s, a, US_ACT_WRITE, s->a.p, 1, s3)) ||
	    (rc = wp_fault_unprotect(s, s->uffd, s->a.p, 1, "the parent's write after the fork")) ||
	    (rc = us_act_wait(ctx, a, s->ms, "the parent's write after the fork")))
		return rc;
	return US_PASS;
}

/* wp/mremap, wp/mremap-none */
static int run_wp_mremap(struct srun *s, bool event)
{
	struct us_ctx *ctx = s->ctx;
	struct us_act *t = &s->t[0], *a = &s->t[1];
	uint64_t s2 = s->seed ^ 0x7777ULL;
	char *spot, *to;
	struct uffd_msg m;
	int rc;

	spot = mmap(NULL, s->a.len + s->ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	if (spot == MAP_FAILED)
		return us_fail(ctx, "mmap a spot for mremap: %s", strerror(errno));
	to = (char *)(((uintptr_t)spot + s->ps - 1) & ~(uintptr_t)(s->ps - 1));
	if ((rc = check_wp_bits(s, s->a.p, true, "before mremap")))
		return rc;
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MREMAP;
	t->addr = s->a.p;
	t->addr2 = to;
	t->len = s->a.len;
	if ((rc = us_act_start(ctx, t)))
		return rc;
	if (event) {
		if ((rc = us_act_blocked(ctx, t, s->ms, "mremap (until REMAP is read)")) ||
		    (rc = us_msg_next(ctx, s->uffd, s->ms, &m, "mremap")))
			return rc;
		if (m.event != UFFD_EVENT_REMAP || m.arg.remap.from != (uintptr_t)s->a.p ||
		    m.arg.remap.to != (uintptr_t)to || m.arg.remap.len != s->a.len)
			return us_fail(ctx, "mremap: %s from 0x%llx to 0x%llx len %llu, want REMAP "
				       "0x%lx 0x%lx %zu", us_event_name(m.event),
				       (unsigned long long)m.arg.remap.from,
				       (unsigned long long)m.arg.remap.to,
				       (unsigned long long)m.arg.remap.len, (unsigned long)s->a.p,
				       (unsigned long)to, s->a.len);
	}
	if ((rc = us_act_wait(ctx, t, s->ms, "mremap")))
		return rc;
	if (t->ret != (long)(uintptr_t)to)
		return us_fail(ctx, "mremap: %s", t->err ? strerror(t->err) : "moved elsewhere");
	if ((rc = us_msg_none(ctx, s->uffd, 0, "after mremap")) ||
	    (rc = check_wp_bits(s, to, event, "at the new address")))
		return rc;
	if ((rc = s_start(s, a, US_ACT_WRITE, to, 0, s2)))
		return rc;
	if (event && (rc = wp_fault_unprotect(s, s->uffd, to, 0, "a write at the new address")))
		return rc;
	if ((rc = us_act_wait(ctx, a, s->ms, "a write at the new address")) ||
	    (rc = us_msg_none(ctx, s->uffd, 20, "after the write at the new address")))
		return rc;
	for (size_t pg = 1; pg < s->npages; pg++) {
		size_t bad = us_pattern_check(to + pg * s->ps, s->ps, pg, s->seed);

		if (bad)
			return us_fail(ctx, "page %zu at the new address wrong at byte %zu", pg,
				       bad - 1);
	}
	return US_PASS;
}

static int run_scripted(struct us_ctx *ctx, enum scase sc)
{
	struct srun *s = calloc(1, sizeof(*s));
	unsigned mode = ctx->c->mode;
	uint64_t feats = us_kind_features(ctx->kind, mode) | ctx->c->features;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	bool fill = sc == S_COPY_WP || sc == S_CONTINUE_WP;
	uint64_t need;
	int ret, rc;

	if (!s)
		return us_fail(ctx, "out of memory");
	s->ctx = ctx;
	s->ms = 2000;
	/* fork on private huge pages: the child's copy-on-write needs as many
	 * free huge pages again (the suite reserves 8) */
	s->npages = fill ? 3 : huge ? 2 : 4;
	s->seed = 0x5c0000ULL + (uint64_t)sc * 977 + ctx->kind;
	ret = us_area_map(&s->a, ctx->kind, s->npages, sc == S_CONTINUE_WP);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages (%zu needed)", s->npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	s->ps = s->a.psize;
	for (size_t pg = 0; pg < s->npages; pg++) {
		if (sc == S_CONTINUE_WP) /* in the page cache, not mapped */
			us_pattern(s->a.alias + pg * s->ps, s->ps, pg, s->seed);
		else if (!fill) /* populated, then protected */
			us_pattern(s->a.p + pg * s->ps, s->ps, pg, s->seed);
	}
	s->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (s->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-s->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)s->a.p, s->a.len }, .mode = mode };
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER mode 0x%x: %s", mode, strerror(errno));
	/* a registration of two modes is not in the probe: check its ioctls here */
	need = US_IOCTL(_UFFDIO_WRITEPROTECT) |
	       (sc == S_COPY_WP ? US_IOCTL(_UFFDIO_COPY) : 0) |
	       (sc == S_CONTINUE_WP ? US_IOCTL(_UFFDIO_CONTINUE) : 0);
	for (unsigned nr = 0; nr < 64; nr++)
		if ((need & ~reg.ioctls) & (1ULL << nr))
			return us_skip(ctx, "missing %s (%s|WP registration on %s)", us_ioctl_name(nr),
				       sc == S_COPY_WP ? "MISSING" : sc == S_CONTINUE_WP ? "MINOR" : "WP",
				       us_kind_name(ctx->kind));
	if (!fill && (ret = wprotect(s->uffd, s->a.p, s->a.len, UFFDIO_WRITEPROTECT_MODE_WP)) < 0)
		return us_fail(ctx, "UFFDIO_WRITEPROTECT_MODE_WP: %s", strerror(-ret));
	switch (sc) {
	case S_COPY_WP: rc = run_fill_wp(s, false); break;
	case S_CONTINUE_WP: rc = run_fill_wp(s, true); break;
	case S_FORK: rc = run_wp_fork(s, false); break;
	case S_FORK_EVENT: rc = run_wp_fork(s, true); break;
	case S_MREMAP: rc = run_wp_mremap(s, true); break;
	case S_MREMAP_NONE: rc = run_wp_mremap(s, false); break;
	default: rc = us_fail(ctx, "bad case");
	}
	if (rc)
		return rc; /* threads may be blocked: left to the child's exit */
	close(s->uffd);
	return US_PASS;
}

int us_case_wp_copy_wp(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_COPY_WP);
}

int us_case_wp_continue_wp(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_CONTINUE_WP);
}

int us_case_wp_fork(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_FORK);
}

int us_case_wp_fork_event(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_FORK_EVENT);
}

int us_case_wp_mremap(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_MREMAP);
}

int us_case_wp_mremap_none(struct us_ctx *ctx)
{
	return run_scripted(ctx, S_MREMAP_NONE);
}
