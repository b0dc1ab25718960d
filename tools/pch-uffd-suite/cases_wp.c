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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

static void herror(struct wrun *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void herror(struct wrun *r, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&r->herr_set, true))
		return;
	va_start(ap, fmt);
	vsnprintf(r->herr, sizeof(r->herr), fmt, ap);
	va_end(ap);
}

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
		struct pollfd p[2] = { { .fd = r->uffd, .events = POLLIN },
				       { .fd = r->stopfd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, 200) < 0 && errno != EINTR) {
			herror(r, "poll: %s", strerror(errno));
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & POLLIN))
			continue;
		n = read(r->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			herror(r, "read uffd: %s", strerror(errno));
			return NULL;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
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

static char thread_state(pid_t tid)
{
	char path[64], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] && p[2] ? p[2] : '?';
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
			       atomic_load(&r->at), r->npages, thread_state(r->ftid),
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
