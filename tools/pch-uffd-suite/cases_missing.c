// SPDX-License-Identifier: MIT
/*
 * cases_missing.c - the missing/ cases: a faulting thread touches every page of an
 * area, a handler thread (poll + read) resolves each fault with COPY,
 * ZEROPAGE, CONTINUE (MINOR faults), POISON or MOVE, optionally with
 * MODE_DONTWAKE followed by UFFDIO_WAKE.  The faulting thread checks every
 * byte; a watchdog fails the case when it is still blocked after a deadline
 * (a lost wakeup), instead of waiting for the suite's kill.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

enum method { M_COPY, M_ZEROPAGE, M_CONTINUE, M_POISON, M_MOVE };

static const char *const method_names[] = { "COPY", "ZEROPAGE", "CONTINUE", "POISON", "MOVE" };

struct run {
	struct us_ctx *ctx;
	struct us_area a;
	enum method m;
	bool dontwake;
	int uffd;
	int stopfd;
	size_t npages;
	uint64_t seed;
	char *buf;	/* COPY: one page; MOVE: the source area (npages) */
	/* handler */
	atomic_int faults, eexist, wakes, eagain;
	atomic_bool herr_set;
	char herr[160];
	/* faulter */
	atomic_size_t at;	/* page being touched */
	atomic_bool done;
	pid_t ftid;
	char ferr[160];
	int sigbus, sigbus_code;
	uint64_t lat_sum, lat_max;
};

#define herror(r, ...) us_seterr(&(r)->herr_set, (r)->herr, sizeof((r)->herr), __VA_ARGS__)

/* one resolving ioctl for page pg; returns 0 or -errno */
static int resolve(struct run *r, size_t pg)
{
	uintptr_t dst = (uintptr_t)r->a.p + pg * r->a.psize;
	size_t len = r->a.psize;
	enum method m = r->m;
	int ret;

	if (m == M_POISON && pg % 2)
		m = M_COPY; /* odd pages get content, even pages poison */
	switch (m) {
	case M_COPY: {
		us_pattern(r->buf, len, pg, r->seed);
		struct uffdio_copy a = { .dst = dst, .src = (uintptr_t)r->buf, .len = len,
					 .mode = r->dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0 };
		ret = ioctl(r->uffd, UFFDIO_COPY, &a);
		break;
	}
	case M_ZEROPAGE: {
		struct uffdio_zeropage a = { .range = { dst, len },
					     .mode = r->dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0 };
		ret = ioctl(r->uffd, UFFDIO_ZEROPAGE, &a);
		break;
	}
	case M_CONTINUE: {
		struct uffdio_continue a = { .range = { dst, len },
					     .mode = r->dontwake ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0 };
		ret = ioctl(r->uffd, UFFDIO_CONTINUE, &a);
		break;
	}
	case M_POISON: {
		struct uffdio_poison a = { .range = { dst, len },
					   .mode = r->dontwake ? UFFDIO_POISON_MODE_DONTWAKE : 0 };
		ret = ioctl(r->uffd, UFFDIO_POISON, &a);
		break;
	}
	case M_MOVE: {
		struct uffdio_move a = { .dst = dst, .src = (uintptr_t)r->buf + pg * len, .len = len,
					 .mode = r->dontwake ? UFFDIO_MOVE_MODE_DONTWAKE : 0 };
		ret = ioctl(r->uffd, UFFDIO_MOVE, &a);
		break;
	}
	default:
		return -EINVAL;
	}
	return ret < 0 ? -errno : 0;
}

static void wake(struct run *r, size_t pg)
{
	struct uffdio_range w = { (uintptr_t)r->a.p + pg * r->a.psize, r->a.psize };

	if (ioctl(r->uffd, UFFDIO_WAKE, &w) < 0)
		herror(r, "UFFDIO_WAKE page %zu: %s", pg, strerror(errno));
	else
		atomic_fetch_add(&r->wakes, 1);
}

static void handle_fault(struct run *r, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uint64_t fl = msg->arg.pagefault.flags;
	bool minor = fl & UFFD_PAGEFAULT_FLAG_MINOR;
	size_t pg;
	int ret, tries = 0;

	atomic_fetch_add(&r->faults, 1);
	if (addr < (uintptr_t)r->a.p || addr >= (uintptr_t)r->a.p + r->a.len) {
		herror(r, "fault at 0x%lx, outside the area", (unsigned long)addr);
		return;
	}
	pg = (addr - (uintptr_t)r->a.p) / r->a.psize;
	if (minor != (r->m == M_CONTINUE) || (fl & UFFD_PAGEFAULT_FLAG_WP)) {
		herror(r, "page %zu: fault flags 0x%llx for %s", pg, (unsigned long long)fl,
		       method_names[r->m]);
		return;
	}
	while ((ret = resolve(r, pg)) == -EAGAIN && ++tries < 1000)
		atomic_fetch_add(&r->eagain, 1);
	if (ret == -EEXIST) {
		/* another path won: nobody woke the thread for us */
		atomic_fetch_add(&r->eexist, 1);
		wake(r, pg);
		return;
	}
	if (ret < 0) {
		herror(r, "UFFDIO_%s page %zu: %s", method_names[r->m], pg, strerror(-ret));
		wake(r, pg);
		return;
	}
	if (r->dontwake)
		wake(r, pg);
}

static void *handler(void *arg)
{
	struct run *r = arg;
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

static __thread sigjmp_buf bus_jb;
static __thread volatile int bus_armed;
static __thread volatile int bus_code;
static __thread void *volatile bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	if (!bus_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	bus_code = si->si_code;
	bus_addr = si->si_addr;
	bus_armed = 0;
	siglongjmp(bus_jb, 1);
}

/* read page; returns 1 when that raised SIGBUS (bus_code, bus_addr set) */
static int touch_poisoned(char *page)
{
	if (sigsetjmp(bus_jb, 1))
		return 1;
	bus_armed = 1;
	(void)*(volatile uint64_t *)page;
	bus_armed = 0;
	return 0;
}

static void *faulter(void *arg)
{
	struct run *r = arg;
	size_t ps = r->a.psize;

	r->ftid = (pid_t)syscall(SYS_gettid);
	for (size_t pg = 0; pg < r->npages; pg++) {
		char *page = r->a.p + pg * ps;
		bool poisoned = r->m == M_POISON && pg % 2 == 0;
		uint64_t t0, dt;
		size_t bad;

		atomic_store(&r->at, pg);
		if (poisoned) {
			if (!touch_poisoned(page)) {
				snprintf(r->ferr, sizeof(r->ferr),
					 "page %zu: poisoned, read without SIGBUS", pg);
				break;
			}
			if (bus_addr < (void *)page || bus_addr >= (void *)(page + ps)) {
				snprintf(r->ferr, sizeof(r->ferr),
					 "page %zu: SIGBUS at %p, outside the page", pg, bus_addr);
				break;
			}
			r->sigbus++;
			r->sigbus_code = bus_code;
			continue;
		}
		t0 = us_now_us();
		(void)*(volatile uint64_t *)page;
		dt = us_now_us() - t0;
		r->lat_sum += dt;
		if (dt > r->lat_max)
			r->lat_max = dt;
		if (r->m == M_ZEROPAGE) {
			for (size_t i = 0; i < ps; i += 8)
				if (*(uint64_t *)(page + i)) {
					snprintf(r->ferr, sizeof(r->ferr),
						 "page %zu: byte %zu not zero after ZEROPAGE", pg, i);
					goto out;
				}
		} else if ((bad = us_pattern_check(page, ps, pg, r->seed))) {
			snprintf(r->ferr, sizeof(r->ferr), "page %zu: content wrong at byte %zu", pg,
				 bad - 1);
			break;
		}
	}
out:
	atomic_store(&r->done, true);
	return NULL;
}

static int run_method(struct us_ctx *ctx, enum method m)
{
	struct run *r;
	pthread_t ht, ft;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	int ret, rc = US_PASS;
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000;
	uint64_t t0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->m = m;
	r->dontwake = ctx->c->arg & US_ARG_DONTWAKE;
	r->npages = huge ? (ctx->quick ? 2 : 4) : (ctx->quick ? 16 : 256);
	r->seed = 0x5eed0000ULL + (uint64_t)m * 7 + ctx->kind;
	ret = us_area_map(&r->a, ctx->kind, r->npages, m == M_CONTINUE);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages (%zu needed)", r->npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	size_t blen = m == M_MOVE ? r->a.len : r->a.psize;

	r->buf = mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->buf == MAP_FAILED)
		return us_fail(ctx, "mmap buffer: %s", strerror(errno));
	if (m == M_MOVE) {
		madvise(r->buf, blen, MADV_NOHUGEPAGE);
		for (size_t pg = 0; pg < r->npages; pg++)
			us_pattern(r->buf + pg * r->a.psize, r->a.psize, pg, r->seed);
	}
	if (m == M_CONTINUE) /* the page cache holds the content, the mapping has no pte */
		for (size_t pg = 0; pg < r->npages; pg++)
			us_pattern(r->a.alias + pg * r->a.psize, r->a.psize, pg, r->seed);

	r->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-r->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = ctx->c->mode };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			       strerror(errno));
	r->stopfd = eventfd(0, EFD_CLOEXEC);

	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	sigaction(SIGBUS, &sa, NULL);

	pthread_create(&ht, NULL, handler, r);
	t0 = us_now_us();
	pthread_create(&ft, NULL, faulter, r);
	while (!atomic_load(&r->done) && us_now_us() - t0 < watchdog_ms * 1000ULL)
		usleep(1000);
	if (!atomic_load(&r->done)) {
		/* a lost wakeup: leave the threads, the child exits with them */
		return us_fail(ctx, "faulting thread still blocked after %u ms on page %zu of %zu "
			       "(state %c), %d faults read, %d wakes%s%s", watchdog_ms,
			       atomic_load(&r->at), r->npages, us_thread_state(r->ftid),
			       atomic_load(&r->faults), atomic_load(&r->wakes),
			       atomic_load(&r->herr_set) ? "; handler: " : "",
			       atomic_load(&r->herr_set) ? r->herr : "");
	}
	uint64_t elapsed = us_now_us() - t0;

	pthread_join(ft, NULL);
	eventfd_write(r->stopfd, 1);
	pthread_join(ht, NULL);

	int faults = atomic_load(&r->faults);
	size_t resolved = m == M_POISON ? r->npages - (r->npages + 1) / 2 : r->npages;

	if (atomic_load(&r->herr_set))
		rc = us_fail(ctx, "handler: %s", r->herr);
	else if (r->ferr[0])
		rc = us_fail(ctx, "%s", r->ferr);
	else if (faults < (int)r->npages)
		rc = us_fail(ctx, "%d faults read for %zu pages", faults, r->npages);
	else if (r->dontwake && atomic_load(&r->wakes) < faults)
		rc = us_fail(ctx, "%d UFFDIO_WAKE for %d DONTWAKE faults", atomic_load(&r->wakes),
			     faults);
	else if (m == M_POISON && (size_t)r->sigbus != (r->npages + 1) / 2)
		rc = us_fail(ctx, "%d SIGBUS for %zu poisoned pages", r->sigbus,
			     (r->npages + 1) / 2);
	/* a poison marker faults as VM_FAULT_HWPOISON: x86 reports it as
	 * BUS_MCEERR_AR with CONFIG_MEMORY_FAILURE, BUS_ADRERR without */
	else if (m == M_POISON && r->sigbus_code != BUS_MCEERR_AR && r->sigbus_code != BUS_ADRERR)
		rc = us_fail(ctx, "SIGBUS si_code %d on a poisoned page, want BUS_MCEERR_AR (%d) "
			     "or BUS_ADRERR (%d)", r->sigbus_code, BUS_MCEERR_AR, BUS_ADRERR);
	if (rc == US_PASS && m == M_MOVE) {
		/* MOVE leaves the source empty: it reads as zeros again */
		for (size_t i = 0; i < r->a.len; i += 8)
			if (*(uint64_t *)(r->buf + i)) {
				rc = us_fail(ctx, "MOVE source byte %zu not zero after the move", i);
				break;
			}
	}
	us_metric(ctx, "pages", (double)r->npages);
	us_metric(ctx, "faults", faults);
	us_metric(ctx, "eexist", atomic_load(&r->eexist));
	us_metric(ctx, "eagain", atomic_load(&r->eagain));
	us_metric(ctx, "wakes", atomic_load(&r->wakes));
	us_metric(ctx, "fault_us_mean", resolved ? (double)r->lat_sum / (double)resolved : 0);
	us_metric(ctx, "fault_us_max", (double)r->lat_max);
	us_metric(ctx, "elapsed_us", (double)elapsed);
	if (m == M_POISON)
		us_metric(ctx, "sigbus_si_code", r->sigbus_code);
	close(r->uffd);
	close(r->stopfd);
	return rc;
}

int us_case_copy(struct us_ctx *ctx)
{
	return run_method(ctx, M_COPY);
}

int us_case_zeropage(struct us_ctx *ctx)
{
	return run_method(ctx, M_ZEROPAGE);
}

int us_case_continue(struct us_ctx *ctx)
{
	return run_method(ctx, M_CONTINUE);
}

int us_case_poison(struct us_ctx *ctx)
{
	return run_method(ctx, M_POISON);
}

int us_case_move(struct us_ctx *ctx)
{
	return run_method(ctx, M_MOVE);
}
