// SPDX-License-Identifier: MIT
/*
 * cases_race.c - the race/ cases: what a handler has to get right when
 * resolutions, events and faults race.
 *
 *   eexist-wake, eexist-continue: two resolvers answer every fault; the
 *     loser gets EEXIST (result field -EEXIST) and, since the kernel wakes
 *     nobody for a failed ioctl, must UFFDIO_WAKE: a deterministic step shows
 *     a waiter still asleep after a DONTWAKE resolution and an EEXIST one.
 *   eagain-fork, -remap, -remove, -unmap: while a non-cooperative event is
 *     unread (mmap_changing) every resolving ioctl fails with EAGAIN; the
 *     thread raising the event sleeps until the message is read.
 *   dontneed, dontneed-event: faults racing MADV_DONTNEED / MADV_REMOVE /
 *     PUNCH_HOLE; a reader never sees anything but the page's pattern.
 *   unregister-pending, close-pending: waiters (read and unread messages)
 *     must wake when the range is unregistered or the uffd closed.
 *   wake-range: UFFDIO_WAKE wakes exactly the waiters in its range.
 *
 * Every wait has a deadline; a thread still blocked is reported with its
 * scheduler state from /proc/self/task/TID/stat.  A failing case returns with
 * its threads left blocked: the case's process exits with them.
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

#define KT 4		/* faulting threads */
#define QCAP 4096	/* pages queued for a resolver */

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* asleep: S (interruptible) or D (killable/uninterruptible) */
static bool asleep(char s)
{
	return s == 'S' || s == 'D';
}

static bool is_memfd_kind(enum us_kind k)
{
	return k == US_SHMEM || k == US_SHMEM_PRIVATE || k == US_HUGETLB_SHARED;
}

static bool is_shared_kind(enum us_kind k)
{
	return k == US_SHMEM || k == US_HUGETLB_SHARED;
}

/* ---- one thread touching one page ---- */

enum expect { EXP_PATTERN, EXP_ZERO };

struct toucher {
	pthread_t t;
	char *page;
	size_t psize, pg;
	uint64_t seed;
	enum expect expect;
	_Atomic pid_t tid;
	atomic_bool done;
	size_t bad;	/* 0, or the first wrong byte + 1 */
	uint64_t t_done;
};

static void *toucher_fn(void *arg)
{
	struct toucher *t = arg;

	atomic_store(&t->tid, gettid_());
	(void)*(volatile uint64_t *)t->page;
	if (t->expect == EXP_PATTERN) {
		t->bad = us_pattern_check(t->page, t->psize, t->pg, t->seed);
	} else {
		for (size_t i = 0; i < t->psize; i += 8)
			if (*(uint64_t *)(t->page + i)) {
				t->bad = i + 1;
				break;
			}
	}
	t->t_done = us_now_us();
	atomic_store(&t->done, true);
	return NULL;
}

static int toucher_start(struct toucher *t, struct us_area *a, size_t pg, uint64_t seed,
			 enum expect e)
{
	memset(t, 0, sizeof(*t));
	t->page = a->p + pg * a->psize;
	t->psize = a->psize;
	t->pg = pg;
	t->seed = seed;
	t->expect = e;
	return -pthread_create(&t->t, NULL, toucher_fn, t);
}

/*
 * Wait up to ms for t to be asleep (not done, state S or D).  Returns 0, or
 * the state seen last ('X': it finished, '-': it never started).
 */
static char wait_asleep(struct toucher *t, unsigned ms)
{
	uint64_t end = us_now_us() + ms * 1000ULL;
	char s = '-';

	do {
		pid_t tid = atomic_load(&t->tid);

		if (atomic_load(&t->done))
			return 'X';
		if (tid && asleep(s = us_thread_state(tid)))
			return 0;
		usleep(2000);
	} while (us_now_us() < end);
	return s;
}

/* t stays asleep for ms: 0, or the state that broke it ('X': finished) */
static char stays_asleep(struct toucher *t, unsigned ms)
{
	uint64_t end = us_now_us() + ms * 1000ULL;

	do {
		char s = us_thread_state(atomic_load(&t->tid));

		if (atomic_load(&t->done))
			return 'X';
		/* a woken thread shows R before it sets done */
		if (!asleep(s))
			return atomic_load(&t->done) ? 'X' : s;
		usleep(5000);
	} while (us_now_us() < end);
	return atomic_load(&t->done) ? 'X' : 0;
}

static bool wait_done(atomic_bool *done, unsigned ms)
{
	uint64_t end = us_now_us() + ms * 1000ULL;

	while (!atomic_load(done)) {
		if (us_now_us() >= end)
			return false;
		usleep(1000);
	}
	return true;
}

static const char *state_desc(char s)
{
	switch (s) {
	case 'X': return "it finished";
	case 'R': return "running";
	case '-': return "not started";
	case '?': return "gone";
	}
	return "?";
}

/*
 * poll + read until want messages are read or ms pass.  Returns the number
 * read or -errno.
 */
static int read_msgs(int uffd, struct uffd_msg *m, int want, unsigned ms)
{
	uint64_t end = us_now_us() + ms * 1000ULL;
	int got = 0;

	while (got < want) {
		uint64_t now = us_now_us();
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		ssize_t n;
		int ret;

		if (now >= end)
			break;
		ret = poll(&p, 1, (int)((end - now) / 1000) + 1);
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (ret <= 0)
			continue;
		n = read(uffd, m + got, (size_t)(want - got) * sizeof(*m));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		got += (int)(n / (ssize_t)sizeof(*m));
	}
	return got;
}

/* ---- set-up and resolving ioctls ---- */

struct setup {
	struct us_area a;
	int uffd;
};

/*
 * Map npages of ctx->kind (with an alias when asked and the kind has a
 * memfd), open an O_NONBLOCK uffd with the kind's features plus extra and
 * register the area in ctx->c->mode.  Returns US_PASS or us_fail/us_skip.
 */
static int setup(struct us_ctx *ctx, struct setup *s, size_t npages, uint64_t extra, bool alias)
{
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features | extra;
	int ret;

	s->uffd = -1;
	ret = us_area_map(&s->a, ctx->kind, npages, alias && is_memfd_kind(ctx->kind));
	if (ret == -ENOMEM && us_kind_psize(ctx->kind) > 4096)
		return us_skip(ctx, "no free huge pages (%zu needed)", npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	s->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (s->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-s->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)s->a.p, s->a.len },
				       .mode = ctx->c->mode };
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			       strerror(errno));
	return US_PASS;
}

static void teardown(struct setup *s)
{
	if (s->uffd >= 0)
		close(s->uffd);
	us_area_unmap(&s->a);
}

/* whether the kind's MISSING registration offers UFFDIO_ZEROPAGE (not hugetlb) */
static bool has_zeropage(struct us_ctx *ctx)
{
	return ctx->probe->reg_ioctls[ctx->kind][US_MODE_MISSING] & US_IOCTL(_UFFDIO_ZEROPAGE);
}

#define SENTINEL ((int64_t)0x5a5a5a5a5a5aLL) /* a result field the kernel left alone */

/* UFFDIO_COPY of len bytes; 0 or -errno; *field gets .copy */
static int do_copy(int uffd, uintptr_t dst, const void *src, size_t len, uint64_t mode,
		   int64_t *field)
{
	struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len, .mode = mode,
				 .copy = SENTINEL };
	int ret = ioctl(uffd, UFFDIO_COPY, &c);

	*field = c.copy;
	return ret < 0 ? -errno : 0;
}

static int do_zeropage(int uffd, uintptr_t dst, size_t len, uint64_t mode, int64_t *field)
{
	struct uffdio_zeropage z = { .range = { dst, len }, .mode = mode, .zeropage = SENTINEL };
	int ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z);

	*field = z.zeropage;
	return ret < 0 ? -errno : 0;
}

static int do_continue(int uffd, uintptr_t dst, size_t len, uint64_t mode, int64_t *field)
{
	struct uffdio_continue c = { .range = { dst, len }, .mode = mode, .mapped = SENTINEL };
	int ret = ioctl(uffd, UFFDIO_CONTINUE, &c);

	*field = c.mapped;
	return ret < 0 ? -errno : 0;
}

static int do_wake(int uffd, uintptr_t start, size_t len)
{
	struct uffdio_range w = { start, len };

	return ioctl(uffd, UFFDIO_WAKE, &w) < 0 ? -errno : 0;
}

static const char *field_str(int64_t v, char *buf, size_t len)
{
	if (v == SENTINEL)
		snprintf(buf, len, "untouched");
	else if (v < 0 && v > -4096 && strerrorname_np((int)-v))
		snprintf(buf, len, "-%s", strerrorname_np((int)-v));
	else
		snprintf(buf, len, "%lld", (long long)v);
	return buf;
}

/* ---- eexist-wake, eexist-continue ---- */

struct equeue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t head, tail;
	bool stop;
	uint32_t pg[QCAP];
};

struct erace {
	struct setup *s;
	bool cont;
	uint64_t seed;
	size_t first, npages;	/* the raced pages: first..npages-1 */
	struct equeue q[2];	/* resolver 0: mode 0, resolver 1: MODE_DONTWAKE */
	atomic_int msgs, eexist, wakes, wins[2], *resolved;
	atomic_bool stop_reader, go;
	atomic_bool herr_set, ferr_set;
	char herr[200], ferr[200];
	struct {
		pthread_t t;
		_Atomic pid_t tid;
		atomic_size_t at;
		atomic_bool done;
	} f[KT];
};


#define herr(r, ...) us_seterr(&(r)->herr_set, (r)->herr, sizeof((r)->herr), __VA_ARGS__)
#define ferr(r, ...) us_seterr(&(r)->ferr_set, (r)->ferr, sizeof((r)->ferr), __VA_ARGS__)

static void *erace_faulter(void *arg)
{
	struct erace *r = ((void **)arg)[0];
	unsigned me = (unsigned)(uintptr_t)((void **)arg)[1];
	struct us_area *a = &r->s->a;

	atomic_store(&r->f[me].tid, gettid_());
	while (!atomic_load(&r->go))
		;
	/* every thread the same pages in the same order: they meet on each page */
	for (size_t pg = r->first; pg < r->npages; pg++) {
		char *page = a->p + pg * a->psize;
		size_t bad;

		atomic_store(&r->f[me].at, pg);
		(void)*(volatile uint64_t *)page;
		if ((bad = us_pattern_check(page, a->psize, pg, r->seed))) {
			ferr(r, "thread %u page %zu: content wrong at byte %zu", me, pg, bad - 1);
			break;
		}
	}
	atomic_store(&r->f[me].done, true);
	return NULL;
}

static void *erace_reader(void *arg)
{
	struct erace *r = arg;
	struct us_area *a = &r->s->a;
	struct uffd_msg m[16];

	while (!atomic_load(&r->stop_reader)) {
		struct pollfd p = { .fd = r->s->uffd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 20) <= 0)
			continue;
		n = read(r->s->uffd, m, sizeof(m));
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				herr(r, "read uffd: %s", strerror(errno));
				return NULL;
			}
			continue;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++) {
			uintptr_t addr = (uintptr_t)m[i].arg.pagefault.address;
			size_t pg = (addr - (uintptr_t)a->p) / a->psize;

			if (m[i].event != UFFD_EVENT_PAGEFAULT || addr < (uintptr_t)a->p ||
			    pg >= r->npages) {
				herr(r, "unexpected message: event 0x%x at 0x%lx", m[i].event,
				     (unsigned long)addr);
				continue;
			}
			atomic_fetch_add(&r->msgs, 1);
			/* both resolvers get every fault */
			for (int k = 0; k < 2; k++) {
				struct equeue *q = &r->q[k];

				pthread_mutex_lock(&q->mu);
				if (q->tail - q->head == QCAP)
					herr(r, "resolver queue full");
				else
					q->pg[q->tail++ % QCAP] = (uint32_t)pg;
				pthread_cond_signal(&q->cv);
				pthread_mutex_unlock(&q->mu);
			}
		}
	}
	return NULL;
}

static void *erace_resolver(void *arg)
{
	struct erace *r = ((void **)arg)[0];
	int me = (int)(uintptr_t)((void **)arg)[1];
	struct equeue *q = &r->q[me];
	struct us_area *a = &r->s->a;
	uint64_t mode = me ? UFFDIO_COPY_MODE_DONTWAKE : 0; /* same bit for CONTINUE */
	char *buf = r->cont ? NULL : malloc(a->psize);

	for (;;) {
		size_t pg;
		int64_t field;
		int ret, tries = 0;

		pthread_mutex_lock(&q->mu);
		while (q->head == q->tail && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->head == q->tail) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		pg = q->pg[q->head++ % QCAP];
		pthread_mutex_unlock(&q->mu);

		uintptr_t dst = (uintptr_t)a->p + pg * a->psize;

		if (buf)
			us_pattern(buf, a->psize, pg, r->seed);
		do {
			ret = r->cont ? do_continue(r->s->uffd, dst, a->psize, mode, &field)
				      : do_copy(r->s->uffd, dst, buf, a->psize, mode, &field);
		} while (ret == -EAGAIN && ++tries < 100);
		if (ret == 0) {
			/* the winner; with DONTWAKE it leaves the waking to the loser */
			atomic_fetch_add(&r->wins[me], 1);
			atomic_fetch_add(&r->resolved[pg], 1);
			if (field != (int64_t)a->psize)
				herr(r, "page %zu: resolved, result field %lld", pg,
				     (long long)field);
			continue;
		}
		if (ret == -EEXIST) {
			atomic_fetch_add(&r->eexist, 1);
			if (field != -EEXIST)
				herr(r, "page %zu: EEXIST with result field %lld, want -EEXIST", pg,
				     (long long)field);
		} else {
			herr(r, "UFFDIO_%s page %zu: %s", r->cont ? "CONTINUE" : "COPY", pg,
			     strerror(-ret));
		}
		/* the loser: nobody else wakes the waiters if the winner used DONTWAKE */
		if (do_wake(r->s->uffd, dst, a->psize) == 0)
			atomic_fetch_add(&r->wakes, 1);
		else
			herr(r, "UFFDIO_WAKE page %zu: %s", pg, strerror(errno));
	}
	free(buf);
	return NULL;
}

/*
 * The deterministic part, on page 0: resolve with DONTWAKE (the thread stays
 * asleep), resolve again (EEXIST, still asleep; ZEROPAGE too where offered),
 * then UFFDIO_WAKE releases it.
 */
static int eexist_single(struct us_ctx *ctx, struct setup *s, bool cont, uint64_t seed)
{
	struct us_area *a = &s->a;
	const char *op = cont ? "CONTINUE" : "COPY";
	uintptr_t dst = (uintptr_t)a->p;
	struct toucher t;
	struct uffd_msg m;
	int64_t field;
	char st, fb[32];
	char *buf = malloc(a->psize);
	int ret, n;

	if (!buf)
		return us_fail(ctx, "out of memory");
	us_pattern(buf, a->psize, 0, seed);
	if ((ret = toucher_start(&t, a, 0, seed, EXP_PATTERN)))
		return us_fail(ctx, "pthread_create: %s", strerror(-ret));
	n = read_msgs(s->uffd, &m, 1, 2000);
	if (n != 1)
		return us_fail(ctx, "no fault message for page 0 within 2000 ms (%s, thread state %c)",
			       n < 0 ? strerror(-n) : "none", us_thread_state(atomic_load(&t.tid)));
	if (m.event != UFFD_EVENT_PAGEFAULT ||
	    (m.arg.pagefault.address & ~(uint64_t)(a->psize - 1)) != dst ||
	    !!(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) != cont)
		return us_fail(ctx, "page 0: message event 0x%x address 0x%llx flags 0x%llx",
			       m.event, (unsigned long long)m.arg.pagefault.address,
			       (unsigned long long)m.arg.pagefault.flags);
	if ((st = wait_asleep(&t, 1000)))
		return us_fail(ctx, "the faulting thread is not asleep on its fault (state %c: %s)",
			       st, state_desc(st));
	ret = cont ? do_continue(s->uffd, dst, a->psize, UFFDIO_CONTINUE_MODE_DONTWAKE, &field)
		   : do_copy(s->uffd, dst, buf, a->psize, UFFDIO_COPY_MODE_DONTWAKE, &field);
	if (ret || field != (int64_t)a->psize)
		return us_fail(ctx, "UFFDIO_%s MODE_DONTWAKE page 0: %s, result field %s", op,
			       strerror(-ret), field_str(field, fb, sizeof(fb)));
	if ((st = stays_asleep(&t, 100)))
		return us_fail(ctx, "UFFDIO_%s MODE_DONTWAKE woke the faulting thread within 100 ms "
			       "(state %c: %s)", op, st, state_desc(st));
	ret = cont ? do_continue(s->uffd, dst, a->psize, 0, &field)
		   : do_copy(s->uffd, dst, buf, a->psize, 0, &field);
	if (ret != -EEXIST || field != -EEXIST)
		return us_fail(ctx, "second UFFDIO_%s of page 0: %s, result field %s; want EEXIST, "
			       "-EEXIST", op, ret ? strerror(-ret) : "success",
			       field_str(field, fb, sizeof(fb)));
	if (!cont && has_zeropage(ctx)) {
		ret = do_zeropage(s->uffd, dst, a->psize, 0, &field);
		if (ret != -EEXIST || field != -EEXIST)
			return us_fail(ctx, "UFFDIO_ZEROPAGE after COPY of page 0: %s, result field "
				       "%s; want EEXIST, -EEXIST", ret ? strerror(-ret) : "success",
				       field_str(field, fb, sizeof(fb)));
	}
	/* the failed resolution woke nobody: the loser has to */
	if ((st = stays_asleep(&t, 50)))
		return us_fail(ctx, "an UFFDIO_%s that failed with EEXIST woke the faulting thread "
			       "(state %c: %s)", op, st, state_desc(st));
	if ((ret = do_wake(s->uffd, dst, a->psize)))
		return us_fail(ctx, "UFFDIO_WAKE page 0: %s", strerror(-ret));
	if (!wait_done(&t.done, 1000))
		return us_fail(ctx, "faulting thread still blocked 1000 ms after UFFDIO_WAKE "
			       "(state %c)", us_thread_state(atomic_load(&t.tid)));
	pthread_join(t.t, NULL);
	free(buf);
	if (t.bad)
		return us_fail(ctx, "page 0: content wrong at byte %zu", t.bad - 1);
	return US_PASS;
}

static int eexist_run(struct us_ctx *ctx, bool cont)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	size_t npages = huge ? (ctx->quick ? 3 : 4) : (ctx->quick ? 16 : 128);
	unsigned wd_ms = ctx->quick ? 3000 : 8000;
	struct setup s;
	struct erace *r;
	pthread_t rt, res[2];
	void *fa[KT][2], *ra[2][2];
	uint64_t t0;
	int rc;

	if ((rc = setup(ctx, &s, npages, 0, cont)) != US_PASS)
		return rc;
	uint64_t seed = 0xee000000ULL + ctx->kind * 3 + cont;

	if (cont) /* the content is in the page cache; the mapping has no pte */
		for (size_t pg = 0; pg < npages; pg++)
			us_pattern(s.a.alias + pg * s.a.psize, s.a.psize, pg, seed);
	if ((rc = eexist_single(ctx, &s, cont, seed)) != US_PASS)
		return rc;

	r = calloc(1, sizeof(*r));
	if (!r || !(r->resolved = calloc(npages, sizeof(*r->resolved))))
		return us_fail(ctx, "out of memory");
	r->s = &s;
	r->cont = cont;
	r->seed = seed;
	r->first = 1;
	r->npages = npages;
	for (int k = 0; k < 2; k++) {
		pthread_mutex_init(&r->q[k].mu, NULL);
		pthread_cond_init(&r->q[k].cv, NULL);
		ra[k][0] = r;
		ra[k][1] = (void *)(uintptr_t)k;
		pthread_create(&res[k], NULL, erace_resolver, ra[k]);
	}
	pthread_create(&rt, NULL, erace_reader, r);
	for (unsigned i = 0; i < KT; i++) {
		fa[i][0] = r;
		fa[i][1] = (void *)(uintptr_t)i;
		pthread_create(&r->f[i].t, NULL, erace_faulter, fa[i]);
	}
	t0 = us_now_us();
	atomic_store(&r->go, true);
	for (unsigned i = 0; i < KT; i++) {
		uint64_t spent = (us_now_us() - t0) / 1000;

		if (wait_done(&r->f[i].done, spent < wd_ms ? wd_ms - (unsigned)spent : 0))
			continue;
		return us_fail(ctx, "thread %u still blocked after %u ms on page %zu (state %c); "
			       "%d faults, %d EEXIST, %d wakes%s%s", i, wd_ms,
			       atomic_load(&r->f[i].at), us_thread_state(atomic_load(&r->f[i].tid)),
			       atomic_load(&r->msgs), atomic_load(&r->eexist),
			       atomic_load(&r->wakes), atomic_load(&r->herr_set) ? "; " : "",
			       atomic_load(&r->herr_set) ? r->herr : "");
	}
	uint64_t elapsed = us_now_us() - t0;

	for (unsigned i = 0; i < KT; i++)
		pthread_join(r->f[i].t, NULL);
	atomic_store(&r->stop_reader, true);
	pthread_join(rt, NULL);	/* polls with a 20 ms timeout */
	for (int k = 0; k < 2; k++) {
		pthread_mutex_lock(&r->q[k].mu);
		r->q[k].stop = true;
		pthread_cond_signal(&r->q[k].cv);
		pthread_mutex_unlock(&r->q[k].mu);
		pthread_join(res[k], NULL);
	}

	int msgs = atomic_load(&r->msgs), eexist = atomic_load(&r->eexist);
	size_t raced = npages - r->first;

	rc = US_PASS;
	if (atomic_load(&r->herr_set))
		rc = us_fail(ctx, "resolver: %s", r->herr);
	else if (atomic_load(&r->ferr_set))
		rc = us_fail(ctx, "%s", r->ferr);
	for (size_t pg = r->first; rc == US_PASS && pg < npages; pg++)
		if (atomic_load(&r->resolved[pg]) != 1)
			rc = us_fail(ctx, "page %zu resolved %d times, want once", pg,
				     atomic_load(&r->resolved[pg]));
	/* each fault went to both resolvers: all but one try per page lost */
	if (rc == US_PASS && eexist != 2 * msgs - (int)raced)
		rc = us_fail(ctx, "%d EEXIST for %d faults on %zu pages, want %d", eexist, msgs,
			     raced, 2 * msgs - (int)raced);
	us_metric(ctx, "pages", (double)raced);
	us_metric(ctx, "threads", KT);
	us_metric(ctx, "faults", msgs);
	us_metric(ctx, "eexist", eexist);
	us_metric(ctx, "wakes", atomic_load(&r->wakes) + 1);
	us_metric(ctx, "wins_wake", atomic_load(&r->wins[0]));
	us_metric(ctx, "wins_dontwake", atomic_load(&r->wins[1]));
	us_metric(ctx, "elapsed_us", (double)elapsed);
	teardown(&s);
	free(r->resolved);
	free(r);
	return rc;
}

int us_case_race_eexist(struct us_ctx *ctx)
{
	return eexist_run(ctx, false);
}

int us_case_race_eexist_continue(struct us_ctx *ctx)
{
	return eexist_run(ctx, true);
}

/* ---- eagain-fork, -remap, -remove, -unmap ---- */

enum ev { EV_FORK, EV_REMAP, EV_REMOVE, EV_UNMAP };

static const char *ev_call[] = { "fork()", "mremap()", "madvise(MADV_DONTNEED)", "munmap()" };
static const uint8_t ev_msg[] = { UFFD_EVENT_FORK, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE,
				  UFFD_EVENT_UNMAP };

struct eag {
	struct us_area *a;
	enum ev ev;
	int advice;
	char *to;	/* EV_REMAP: where the area moves */
	size_t victim;	/* EV_REMOVE, EV_UNMAP: the page removed / unmapped */
	pid_t parent, child;
	int ret, err;
	_Atomic pid_t tid;
	atomic_bool done;
	uint64_t t0, t1;
};

/* raises the event; non-cooperative events sleep until the message is read */
static void *eag_thread(void *arg)
{
	struct eag *e = arg;
	char *victim = e->a->p + e->victim * e->a->psize;

	atomic_store(&e->tid, gettid_());
	e->t0 = us_now_us();
	switch (e->ev) {
	case EV_FORK:
		/*
		 * The raw system call, not glibc's fork(): that one holds the
		 * malloc arena locks across the clone, which sleeps until the
		 * FORK event is read, so a handler thread that mallocs (stdio
		 * does) would deadlock.  The child only makes system calls.
		 */
		e->child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (e->child == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			_exit(getppid() == e->parent ? 0 : 1);
		}
		e->ret = e->child < 0 ? -1 : 0;
		break;
	case EV_REMAP:
		e->ret = mremap(e->a->p, e->a->len, e->a->len, MREMAP_MAYMOVE | MREMAP_FIXED,
				e->to) == MAP_FAILED ? -1 : 0;
		break;
	case EV_REMOVE:
		e->ret = madvise(victim, e->a->psize, e->advice);
		break;
	case EV_UNMAP:
		e->ret = munmap(victim, e->a->psize);
		break;
	}
	e->err = errno;
	e->t1 = us_now_us();
	atomic_store(&e->done, true);
	return NULL;
}

/* the child of EV_FORK: gone by itself or killed, reaped with a deadline */
static int reap(pid_t pid, int *status)
{
	uint64_t end = us_now_us() + 2000000;

	while (us_now_us() < end) {
		pid_t w = waitpid(pid, status, WNOHANG);

		if (w == pid)
			return 0;
		if (w < 0)
			return -errno;
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return -ETIMEDOUT;
}

/* a resolving ioctl under mmap_changing: EAGAIN, result field -EAGAIN or untouched */
static int check_eagain(struct us_ctx *ctx, const char *what, int ret, int64_t field,
			const char *call)
{
	char fb[32];

	if (ret != -EAGAIN || (field != -EAGAIN && field != SENTINEL))
		return us_fail(ctx, "%s while the %s event is unread: %s, result field %s; want "
			       "EAGAIN, -EAGAIN", what, call, ret ? strerror(-ret) : "success",
			       field_str(field, fb, sizeof(fb)));
	return US_PASS;
}

/* the resolving ioctls eagain_run tries, each on its own page */
enum eop { OP_COPY, OP_ZEROPAGE, OP_POISON, OP_MOVE, NOPS };

static const char *const eop_name[] = { "COPY", "ZEROPAGE", "POISON", "MOVE" };
static const char *const eop_field[] = { ".copy", ".zeropage", ".updated", ".move" };

/* one ioctl op on page pg of base (src: COPY/MOVE source); 0 or -errno, *field its result field */
static int eop_do(enum eop op, int uffd, char *base, size_t ps, size_t pg, char *src,
		  int64_t *field)
{
	uintptr_t dst = (uintptr_t)base + pg * ps;
	int ret = -EINVAL;

	switch (op) {
	case OP_COPY:
		return do_copy(uffd, dst, src, ps, 0, field);
	case OP_ZEROPAGE:
		return do_zeropage(uffd, dst, ps, 0, field);
	case OP_POISON: {
		struct uffdio_poison a = { .range = { dst, ps }, .updated = SENTINEL };

		ret = ioctl(uffd, UFFDIO_POISON, &a) < 0 ? -errno : 0;
		*field = a.updated;
		break;
	}
	case OP_MOVE: {
		struct uffdio_move a = { .dst = dst, .src = (uintptr_t)src, .len = ps,
					 .move = SENTINEL };

		ret = ioctl(uffd, UFFDIO_MOVE, &a) < 0 ? -errno : 0;
		*field = a.move;
		break;
	}
	default:
		break;
	}
	return ret;
}

static int eagain_run(struct us_ctx *ctx, enum ev ev)
{
	static const uint64_t feat[] = { UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_EVENT_REMAP,
					 UFFD_FEATURE_EVENT_REMOVE, UFFD_FEATURE_EVENT_UNMAP };
	bool huge = us_kind_psize(ctx->kind) > 4096;
	/* page 0 COPY, 1 COPY before the event, 2 ZEROPAGE (POISON on hugetlb, which
	 * has no ZEROPAGE), 3 POISON, 4 MOVE (anon), the last one removed/unmapped */
	const size_t npages = huge ? 4 : 6;
	const size_t op_pg[NOPS] = { 0, 2, huge ? 2 : 3, 4 };
	uint64_t mask = ctx->probe->reg_ioctls[ctx->kind][US_MODE_MISSING];
	uint64_t pf = ctx->probe->features, extra = feat[ev];
	bool have[NOPS] = { true, has_zeropage(ctx),
			    (pf & UFFD_FEATURE_POISON) && (mask & US_IOCTL(_UFFDIO_POISON)),
			    ctx->kind == US_ANON && (pf & UFFD_FEATURE_MOVE) &&
				    (mask & US_IOCTL(_UFFDIO_MOVE)) };
	int64_t efield[NOPS], field;
	struct setup s;
	struct eag e = { .ev = ev, .victim = npages - 1 };
	struct uffd_msg m;
	pthread_t et;
	char *base, *rsv = NULL, *buf, *msrc = NULL;
	char st, fb[32], diag[400];
	size_t rsv_len = 0, off;
	int rc, ret, n;

	if (have[OP_POISON])
		extra |= UFFD_FEATURE_POISON;
	if (have[OP_MOVE])
		extra |= UFFD_FEATURE_MOVE;
	if ((rc = setup(ctx, &s, npages, extra, false)) != US_PASS)
		return rc;
	size_t ps = s.a.psize;
	uint64_t seed = 0xea000000ULL + ev * 8 + ctx->kind;

	buf = malloc(ps);
	if (!buf)
		return us_fail(ctx, "out of memory");
	e.a = &s.a;
	e.parent = getpid();
	e.advice = is_shared_kind(ctx->kind) ? MADV_REMOVE : MADV_DONTNEED;
	if (ev == EV_REMOVE && e.advice == MADV_REMOVE)
		ev_call[EV_REMOVE] = "madvise(MADV_REMOVE)"; /* one case per process */
	if (ev == EV_REMAP) {
		/* a free, page-aligned destination for MREMAP_FIXED */
		rsv_len = s.a.len + ps;
		rsv = mmap(NULL, rsv_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
		if (rsv == MAP_FAILED)
			return us_fail(ctx, "mmap: %s", strerror(errno));
		e.to = (char *)(((uintptr_t)rsv + ps - 1) & ~(uintptr_t)(ps - 1));
	}
	if (have[OP_MOVE]) {
		/* MOVE wants an exclusive anon page: not shared with the fork child */
		msrc = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (msrc == MAP_FAILED)
			return us_fail(ctx, "mmap: %s", strerror(errno));
		madvise(msrc, ps, MADV_DONTFORK);
		us_pattern(msrc, ps, op_pg[OP_MOVE], seed);
	}
	/* COPY works before the event */
	us_pattern(buf, ps, 1, seed);
	if ((ret = do_copy(s.uffd, (uintptr_t)s.a.p + ps, buf, ps, 0, &field)))
		return us_fail(ctx, "UFFDIO_COPY page 1 before the event: %s", strerror(-ret));

	pthread_create(&et, NULL, eag_thread, &e);
	struct pollfd p = { .fd = s.uffd, .events = POLLIN };

	ret = poll(&p, 1, 2000);
	if (atomic_load(&e.done) && e.ret)
		return us_fail(ctx, "%s: %s", ev_call[ev], strerror(e.err));
	if (ret != 1)
		return us_fail(ctx, "no %s event within 2000 ms (%s %s, state %c)", ev_call[ev],
			       ev_call[ev], atomic_load(&e.done) ? "returned" : "not returned",
			       us_thread_state(atomic_load(&e.tid)));
	/* the event is queued: the thread raising it sleeps until it is read */
	st = '-';
	for (int i = 0; i < 100 && !asleep(st); i++) {
		if (atomic_load(&e.done))
			return us_fail(ctx, "%s returned before its event was read", ev_call[ev]);
		st = us_thread_state(atomic_load(&e.tid));
		if (!asleep(st))
			usleep(2000);
	}
	base = ev == EV_REMAP ? e.to : s.a.p; /* the area has moved already */
	us_pattern(buf, ps, 0, seed);
	for (int op = 0; op < NOPS; op++) {
		char what[32];

		if (!have[op])
			continue;
		ret = eop_do(op, s.uffd, base, ps, op_pg[op], op == OP_MOVE ? msrc : buf,
			     &efield[op]);
		snprintf(what, sizeof(what), "UFFDIO_%s", eop_name[op]);
		if ((rc = check_eagain(ctx, what, ret, efield[op], ev_call[ev])) != US_PASS)
			return rc;
	}
	if (atomic_load(&e.done))
		return us_fail(ctx, "%s returned before its event was read", ev_call[ev]);

	n = read_msgs(s.uffd, &m, 1, 2000);
	if (n != 1)
		return us_fail(ctx, "reading the %s event: %s", ev_call[ev],
			       n < 0 ? strerror(-n) : "nothing within 2000 ms");
	if (m.event != ev_msg[ev])
		return us_fail(ctx, "event 0x%x, want 0x%x", m.event, ev_msg[ev]);
	switch (ev) {
	case EV_FORK:
		if ((int)m.arg.fork.ufd < 0 || fcntl((int)m.arg.fork.ufd, F_GETFD) < 0)
			return us_fail(ctx, "fork event: ufd %d is no open fd", (int)m.arg.fork.ufd);
		close((int)m.arg.fork.ufd); /* the child's uffd: we don't serve it */
		break;
	case EV_REMAP:
		if (m.arg.remap.from != (uintptr_t)s.a.p || m.arg.remap.to != (uintptr_t)e.to ||
		    m.arg.remap.len != s.a.len)
			return us_fail(ctx, "remap event from 0x%llx to 0x%llx len %llu, want %p %p %zu",
				       (unsigned long long)m.arg.remap.from,
				       (unsigned long long)m.arg.remap.to,
				       (unsigned long long)m.arg.remap.len, s.a.p, e.to, s.a.len);
		break;
	case EV_REMOVE:
	case EV_UNMAP:
		if (m.arg.remove.start != (uintptr_t)s.a.p + e.victim * ps ||
		    m.arg.remove.end != (uintptr_t)s.a.p + (e.victim + 1) * ps)
			return us_fail(ctx, "event range 0x%llx-0x%llx, want page %zu",
				       (unsigned long long)m.arg.remove.start,
				       (unsigned long long)m.arg.remove.end, e.victim);
		break;
	}
	if (!wait_done(&e.done, 2000))
		return us_fail(ctx, "%s still blocked 2000 ms after its event was read (state %c)",
			       ev_call[ev], us_thread_state(atomic_load(&e.tid)));
	pthread_join(et, NULL);
	if (e.ret)
		return us_fail(ctx, "%s: %s", ev_call[ev], strerror(e.err));
	if (ev == EV_FORK) {
		int status = 0;

		if ((ret = reap(e.child, &status)))
			return us_fail(ctx, "fork child %d: %s", e.child, strerror(-ret));
		/* exit 0, or SIGKILL from PR_SET_PDEATHSIG: that fires when the
		 * forking *thread* ends, which may be before the child runs */
		if (!(WIFEXITED(status) && !WEXITSTATUS(status)) &&
		    !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
			return us_fail(ctx, "fork child: status 0x%x", status);
	}
	if (ev == EV_REMAP) {
		s.a.p = e.to; /* teardown unmaps it there; the rest of rsv separately */
		munmap(rsv, (size_t)(e.to - rsv));
		munmap(e.to + s.a.len, rsv_len - (size_t)(e.to - rsv) - s.a.len);
	}

	/* the raiser has returned: mmap_changing is down, the same calls succeed */
	for (int op = 0; op < NOPS; op++) {
		if (!have[op])
			continue;
		ret = eop_do(op, s.uffd, base, ps, op_pg[op], op == OP_MOVE ? msrc : buf, &field);
		if (ret || field != (int64_t)ps)
			return us_fail(ctx, "UFFDIO_%s after the %s event was read: %s, result "
				       "field %s", eop_name[op], ev_call[ev], strerror(-ret),
				       field_str(field, fb, sizeof(fb)));
	}
	size_t bad = us_pattern_check(base, ps, 0, seed);

	if (bad)
		return us_fail(ctx, "page 0 after the COPY: content wrong at byte %zu", bad - 1);
	if (have[OP_MOVE] &&
	    (bad = us_pattern_check(base + op_pg[OP_MOVE] * ps, ps, op_pg[OP_MOVE], seed)))
		return us_fail(ctx, "page %zu after the MOVE: content wrong at byte %zu",
			       op_pg[OP_MOVE], bad - 1);
	off = (size_t)snprintf(diag, sizeof(diag), "%s/%s: %s slept (state %c) until its event "
			       "was read, %llu us;", ctx->c->name, us_kind_name(ctx->kind),
			       ev_call[ev], st, (unsigned long long)(e.t1 - e.t0));
	for (int op = 0; op < NOPS && off < sizeof(diag); op++)
		off += (size_t)snprintf(diag + off, sizeof(diag) - off, have[op] ?
					" %s: EAGAIN, %s %s;" : " %s: not offered%s%s;",
					eop_name[op], have[op] ? eop_field[op] : "",
					have[op] ? field_str(efield[op], fb, sizeof(fb)) : "");
	us_diag("%s after the read: success", diag);
	us_metric(ctx, "event_blocked_us", (double)(e.t1 - e.t0));
	us_metric(ctx, "raiser_asleep", asleep(st));
	teardown(&s);
	if (msrc)
		munmap(msrc, ps);
	free(buf);
	return US_PASS;
}

int us_case_race_eagain_fork(struct us_ctx *ctx)
{
	return eagain_run(ctx, EV_FORK);
}

int us_case_race_eagain_remap(struct us_ctx *ctx)
{
	return eagain_run(ctx, EV_REMAP);
}

int us_case_race_eagain_remove(struct us_ctx *ctx)
{
	return eagain_run(ctx, EV_REMOVE);
}

int us_case_race_eagain_unmap(struct us_ctx *ctx)
{
	return eagain_run(ctx, EV_UNMAP);
}

/* ---- dontneed, dontneed-event ---- */

struct dn {
	struct setup *s;
	struct us_ctx *ctx;
	bool events;
	size_t npages;
	char *src;		/* every page's pattern, for COPY and the readers */
	atomic_bool stop_f, stop_z, stop_h, zdone, hdone;
	atomic_int faults, eexist, eagain, wakes, zaps, madv_zaps, removes;
	atomic_long reads;
	atomic_bool herr_set, ferr_set;
	char herr[200], ferr[200];
	struct {
		pthread_t t;
		_Atomic pid_t tid;
		atomic_size_t at;
		_Atomic uint64_t since;	/* start of the access in progress, 0 between */
		atomic_bool done;
	} f[KT];
};

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *dn_faulter(void *arg)
{
	struct dn *r = ((void **)arg)[0];
	unsigned me = (unsigned)(uintptr_t)((void **)arg)[1];
	struct us_area *a = &r->s->a;
	uint64_t x = 0x9e3779b97f4a7c15ULL * (me + 1);

	atomic_store(&r->f[me].tid, gettid_());
	while (!atomic_load(&r->stop_f)) {
		size_t pg = xs(&x) % r->npages;
		size_t offs[3] = { 0, (xs(&x) % (a->psize / 8)) * 8, a->psize - 8 };
		const char *page = a->p + pg * a->psize, *want = r->src + pg * a->psize;

		atomic_store(&r->f[me].at, pg);
		atomic_store(&r->f[me].since, us_now_us());
		for (int i = 0; i < 3; i++) {
			uint64_t v = *(volatile const uint64_t *)(page + offs[i]);
			uint64_t w = *(const uint64_t *)(want + offs[i]);

			if (v != w) {
				ferr(r, "thread %u page %zu byte %zu: 0x%llx, want 0x%llx%s", me, pg,
				     offs[i], (unsigned long long)v, (unsigned long long)w,
				     v ? "" : " (a zero page: the handler was not asked)");
				goto out;
			}
		}
		atomic_store(&r->f[me].since, 0);
		atomic_fetch_add(&r->reads, 1);
	}
out:
	atomic_store(&r->f[me].since, 0);
	atomic_store(&r->f[me].done, true);
	return NULL;
}

/* drops random pages: MADV_DONTNEED, or on shared memory MADV_REMOVE / PUNCH_HOLE */
static void *dn_zapper(void *arg)
{
	struct dn *r = arg;
	struct us_area *a = &r->s->a;
	bool shared = is_shared_kind(a->kind);
	uint64_t x = 0x2545f4914f6cdd1dULL;

	for (unsigned i = 0; !atomic_load(&r->stop_z); i++) {
		size_t pg = xs(&x) % r->npages;
		int ret;

		if (shared && i % 2)
			ret = fallocate(a->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)(pg * a->psize), (off_t)a->psize);
		else
			ret = madvise(a->p + pg * a->psize, a->psize,
				      shared ? MADV_REMOVE : MADV_DONTNEED);
		if (ret < 0) {
			herr(r, "%s page %zu: %s", shared && i % 2 ? "PUNCH_HOLE" : "madvise", pg,
			     strerror(errno));
			break;
		}
		atomic_fetch_add(&r->zaps, 1);
		if (!(shared && i % 2))
			atomic_fetch_add(&r->madv_zaps, 1);
		usleep(100);
	}
	atomic_store(&r->zdone, true);
	return NULL;
}

/*
 * One handler: faults are queued and resolved by COPY of the pattern; EEXIST
 * is followed by a WAKE; on EAGAIN (a REMOVE event is unread) it goes back
 * to reading, which is what lets mmap_changing drop.
 */
static void *dn_handler(void *arg)
{
	struct dn *r = arg;
	struct us_area *a = &r->s->a;
	uint32_t *pend = malloc(QCAP * sizeof(*pend));
	size_t head = 0, tail = 0;
	struct uffd_msg m[16];

	if (!pend) {
		herr(r, "out of memory");
		goto out;
	}
	while (!atomic_load(&r->stop_h)) {
		struct pollfd p = { .fd = r->s->uffd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, head != tail ? 1 : 20) > 0 &&
		    (n = read(r->s->uffd, m, sizeof(m))) > 0) {
			for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++) {
				uintptr_t addr = (uintptr_t)m[i].arg.pagefault.address;

				if (m[i].event == UFFD_EVENT_REMOVE) {
					atomic_fetch_add(&r->removes, 1);
					continue;
				}
				if (m[i].event != UFFD_EVENT_PAGEFAULT || addr < (uintptr_t)a->p ||
				    addr >= (uintptr_t)a->p + a->len) {
					herr(r, "unexpected message: event 0x%x at 0x%lx", m[i].event,
					     (unsigned long)addr);
					continue;
				}
				atomic_fetch_add(&r->faults, 1);
				if (tail - head == QCAP) {
					herr(r, "fault queue full");
					goto out;
				}
				pend[tail++ % QCAP] = (uint32_t)((addr - (uintptr_t)a->p) / a->psize);
			}
		}
		while (head != tail) {
			size_t pg = pend[head % QCAP];
			uintptr_t dst = (uintptr_t)a->p + pg * a->psize;
			int64_t field;
			int ret = do_copy(r->s->uffd, dst, r->src + pg * a->psize, a->psize, 0,
					  &field);

			if (ret == -EAGAIN) {
				atomic_fetch_add(&r->eagain, 1);
				break; /* read the event first */
			}
			head++;
			if (ret == 0)
				continue;
			if (ret == -EEXIST)
				atomic_fetch_add(&r->eexist, 1);
			else
				herr(r, "UFFDIO_COPY page %zu: %s", pg, strerror(-ret));
			if (do_wake(r->s->uffd, dst, a->psize) == 0)
				atomic_fetch_add(&r->wakes, 1);
		}
	}
out:
	free(pend);
	atomic_store(&r->hdone, true);
	return NULL;
}

/* the first faulting thread in an access for longer than ms, or -1 */
static int dn_stuck(struct dn *r, unsigned ms)
{
	uint64_t now = us_now_us();

	for (int i = 0; i < KT; i++) {
		uint64_t since = atomic_load(&r->f[i].since);

		if (since && now > since && now - since > ms * 1000ULL)
			return i;
	}
	return -1;
}

static int dontneed_run(struct us_ctx *ctx, bool events)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	size_t npages = huge ? 4 : 64;
	unsigned run_ms = ctx->quick ? 200 : 3000, wd_ms = 2000;
	struct setup s;
	struct dn *r;
	pthread_t ht, zt;
	void *fa[KT][2];
	int rc, i;

	if ((rc = setup(ctx, &s, npages, events ? UFFD_FEATURE_EVENT_REMOVE : 0, false)))
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->s = &s;
	r->ctx = ctx;
	r->events = events;
	r->npages = npages;
	r->src = mmap(NULL, s.a.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->src == MAP_FAILED)
		return us_fail(ctx, "mmap: %s", strerror(errno));
	for (size_t pg = 0; pg < npages; pg++)
		us_pattern(r->src + pg * s.a.psize, s.a.psize, pg, 0xd0000000ULL + ctx->kind);

	pthread_create(&ht, NULL, dn_handler, r);
	pthread_create(&zt, NULL, dn_zapper, r);
	for (i = 0; i < KT; i++) {
		fa[i][0] = r;
		fa[i][1] = (void *)(uintptr_t)i;
		pthread_create(&r->f[i].t, NULL, dn_faulter, fa[i]);
	}
	uint64_t t0 = us_now_us();

	/* on a loaded machine run longer (up to 5x) until a fault has raced a drop */
	while ((us_now_us() - t0 < run_ms * 1000ULL ||
		(atomic_load(&r->faults) <= (int)npages && us_now_us() - t0 < run_ms * 5000ULL)) &&
	       !atomic_load(&r->ferr_set) && !atomic_load(&r->herr_set)) {
		if ((i = dn_stuck(r, wd_ms)) >= 0)
			goto stuck;
		usleep(5000);
	}
	atomic_store(&r->stop_f, true);
	for (i = 0; i < KT; i++) {
		uint64_t end = us_now_us() + wd_ms * 1000ULL;

		while (!atomic_load(&r->f[i].done) && us_now_us() < end)
			usleep(1000);
		if (!atomic_load(&r->f[i].done))
			goto stuck;
		pthread_join(r->f[i].t, NULL);
	}
	/* the handler still runs: with EVENT_REMOVE the zapper needs it */
	atomic_store(&r->stop_z, true);
	if (!wait_done(&r->zdone, 2000))
		return us_fail(ctx, "the dropping thread is still blocked 2000 ms after the end "
			       "(%d zaps, %d REMOVE events read)", atomic_load(&r->zaps),
			       atomic_load(&r->removes));
	pthread_join(zt, NULL);
	atomic_store(&r->stop_h, true);
	if (!wait_done(&r->hdone, 2000))
		return us_fail(ctx, "the handler did not stop within 2000 ms");
	pthread_join(ht, NULL);
	uint64_t elapsed = us_now_us() - t0;

	int faults = atomic_load(&r->faults), zaps = atomic_load(&r->zaps);

	rc = US_PASS;
	if (atomic_load(&r->ferr_set))
		rc = us_fail(ctx, "%s", r->ferr);
	else if (atomic_load(&r->herr_set))
		rc = us_fail(ctx, "handler: %s", r->herr);
	else if (!zaps || faults <= (int)npages)
		rc = us_fail(ctx, "%d faults on %zu pages with %d pages dropped: no fault raced "
			     "a drop", faults, npages, zaps);
	else if (events && atomic_load(&r->removes) != atomic_load(&r->madv_zaps))
		rc = us_fail(ctx, "%d REMOVE events read for %d madvise() calls",
			     atomic_load(&r->removes), atomic_load(&r->madv_zaps));
	us_metric(ctx, "faults", faults);
	us_metric(ctx, "eexist", atomic_load(&r->eexist));
	us_metric(ctx, "eagain", atomic_load(&r->eagain));
	us_metric(ctx, "wakes", atomic_load(&r->wakes));
	us_metric(ctx, "drops", zaps);
	us_metric(ctx, "remove_events", atomic_load(&r->removes));
	us_metric(ctx, "reads", (double)atomic_load(&r->reads));
	us_metric(ctx, "elapsed_us", (double)elapsed);
	us_diag("%s/%s: %d faults, %ld reads, %d drops, %d EEXIST, %d EAGAIN, %d REMOVE events",
		ctx->c->name, us_kind_name(ctx->kind), faults, (long)atomic_load(&r->reads), zaps,
		atomic_load(&r->eexist), atomic_load(&r->eagain), atomic_load(&r->removes));
	munmap(r->src, s.a.len);
	teardown(&s);
	free(r);
	return rc;
stuck:
	return us_fail(ctx, "thread %d still blocked after %u ms on page %zu (state %c); %d faults, "
		       "%d drops%s%s", i, wd_ms, atomic_load(&r->f[i].at),
		       us_thread_state(atomic_load(&r->f[i].tid)), atomic_load(&r->faults),
		       atomic_load(&r->zaps), atomic_load(&r->herr_set) ? "; handler: " : "",
		       atomic_load(&r->herr_set) ? r->herr : "");
}

int us_case_race_dontneed(struct us_ctx *ctx)
{
	return dontneed_run(ctx, false);
}

int us_case_race_dontneed_event(struct us_ctx *ctx)
{
	return dontneed_run(ctx, true);
}

/* ---- unregister-pending, close-pending ---- */

/*
 * KT threads asleep on MISSING faults: the first half with their messages
 * read, the second half with them still queued.  UFFDIO_UNREGISTER (or the
 * close of the only uffd) must wake them all; they then fault normally and
 * see zeros, or the page cache filled through the alias meanwhile.
 */
static int pending_run(struct us_ctx *ctx, bool close_it)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	size_t npages = huge ? 2 : KT;
	unsigned wd_ms = ctx->quick ? 1000 : 2000;
	const char *what = close_it ? "close(uffd)" : "UFFDIO_UNREGISTER";
	struct setup s;
	struct toucher t[KT];
	struct uffd_msg m[KT];
	char st;
	int rc, n, ret;

	if ((rc = setup(ctx, &s, npages, 0, true)))
		return rc;
	uint64_t seed = 0x9e000000ULL + ctx->kind * 2 + close_it;
	enum expect e = s.a.alias ? EXP_PATTERN : EXP_ZERO;

	for (int i = 0; i < KT; i++) {
		if (i == KT / 2) {
			n = read_msgs(s.uffd, m, KT / 2, 2000);
			if (n != KT / 2)
				return us_fail(ctx, "%d fault messages read within 2000 ms, want %d",
					       n, KT / 2);
		}
		if ((ret = toucher_start(&t[i], &s.a, i % npages, seed, e)))
			return us_fail(ctx, "pthread_create: %s", strerror(-ret));
		if ((st = wait_asleep(&t[i], 1000)))
			return us_fail(ctx, "thread %d not asleep on its fault (state %c: %s)", i, st,
				       state_desc(st));
	}
	for (int i = 0; i < KT; i++)
		if ((st = stays_asleep(&t[i], i ? 0 : 50)))
			return us_fail(ctx, "thread %d woke without a resolution (state %c: %s)", i,
				       st, state_desc(st));
	if (s.a.alias) /* the page cache gets content behind the waiters' backs */
		for (size_t pg = 0; pg < npages; pg++)
			us_pattern(s.a.alias + pg * s.a.psize, s.a.psize, pg, seed);

	uint64_t t0 = us_now_us();

	if (close_it) {
		close(s.uffd);
		s.uffd = -1;
	} else {
		struct uffdio_range r = { (uintptr_t)s.a.p, s.a.len };

		if (ioctl(s.uffd, UFFDIO_UNREGISTER, &r) < 0)
			return us_fail(ctx, "UFFDIO_UNREGISTER: %s", strerror(errno));
	}
	uint64_t wake_max = 0;

	for (int i = 0; i < KT; i++) {
		unsigned left = wd_ms - (unsigned)((us_now_us() - t0) / 1000);

		if (us_now_us() - t0 >= wd_ms * 1000ULL || !wait_done(&t[i].done, left))
			return us_fail(ctx, "thread %d (page %zu, message %s) still blocked %u ms after "
				       "%s (state %c)", i, t[i].pg, i < KT / 2 ? "read" : "unread",
				       wd_ms, what, us_thread_state(atomic_load(&t[i].tid)));
		pthread_join(t[i].t, NULL);
		if (t[i].bad)
			return us_fail(ctx, "thread %d page %zu after %s: byte %zu is not %s", i,
				       t[i].pg, what, t[i].bad - 1,
				       e == EXP_ZERO ? "zero" : "the page cache's");
		if (t[i].t_done - t0 > wake_max)
			wake_max = t[i].t_done - t0;
	}
	if (!close_it) {
		/* the woken waiters took their unread messages with them */
		n = (int)read(s.uffd, m, sizeof(m));
		if (n >= 0 || errno != EAGAIN)
			return us_fail(ctx, "read after %s: %d bytes (%s), want EAGAIN", what, n,
				       n < 0 ? strerror(errno) : "a stale message");
	}
	us_metric(ctx, "threads", KT);
	us_metric(ctx, "wake_us_max", (double)wake_max);
	teardown(&s);
	return US_PASS;
}

int us_case_race_unregister_pending(struct us_ctx *ctx)
{
	return pending_run(ctx, false);
}

int us_case_race_close_pending(struct us_ctx *ctx)
{
	return pending_run(ctx, true);
}

/* ---- wake-range ---- */

/*
 * n threads asleep on n pages, each resolved with DONTWAKE.  A WAKE of a
 * page nobody waits on, and of length 0 (EINVAL), wakes nobody; a WAKE of
 * the first half wakes exactly that half; the rest then.
 */
int us_case_race_wake_range(struct us_ctx *ctx)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	int nt = huge ? 2 : KT;
	size_t npages = (size_t)nt + 1;
	struct setup s;
	struct toucher t[KT];
	struct uffd_msg m[KT];
	char st, *buf;
	int64_t field;
	int rc, n, ret;

	if ((rc = setup(ctx, &s, npages, 0, false)))
		return rc;
	size_t ps = s.a.psize;
	uintptr_t base = (uintptr_t)s.a.p;
	uint64_t seed = 0x3a000000ULL + ctx->kind;

	buf = malloc(ps);
	if (!buf)
		return us_fail(ctx, "out of memory");
	for (int i = 0; i < nt; i++)
		if ((ret = toucher_start(&t[i], &s.a, (size_t)i, seed, EXP_PATTERN)))
			return us_fail(ctx, "pthread_create: %s", strerror(-ret));
	n = read_msgs(s.uffd, m, nt, 2000);
	if (n != nt)
		return us_fail(ctx, "%d fault messages read within 2000 ms, want %d", n, nt);
	for (int i = 0; i < nt; i++) {
		if ((st = wait_asleep(&t[i], 1000)))
			return us_fail(ctx, "thread %d not asleep on its fault (state %c: %s)", i, st,
				       state_desc(st));
		us_pattern(buf, ps, (size_t)i, seed);
		ret = do_copy(s.uffd, base + (size_t)i * ps, buf, ps, UFFDIO_COPY_MODE_DONTWAKE,
			      &field);
		if (ret)
			return us_fail(ctx, "UFFDIO_COPY MODE_DONTWAKE page %d: %s", i, strerror(-ret));
	}
	if ((ret = do_wake(s.uffd, base + (size_t)nt * ps, ps)))
		return us_fail(ctx, "UFFDIO_WAKE of a page without waiters: %s", strerror(-ret));
	if ((ret = do_wake(s.uffd, base, 0)) != -EINVAL)
		return us_fail(ctx, "UFFDIO_WAKE of length 0: %s, want EINVAL",
			       ret ? strerror(-ret) : "success");
	for (int i = 0; i < nt; i++)
		if ((st = stays_asleep(&t[i], i ? 0 : 50)))
			return us_fail(ctx, "thread %d woke without a WAKE of its page (state %c: %s)",
				       i, st, state_desc(st));
	if ((ret = do_wake(s.uffd, base, (size_t)(nt / 2) * ps)))
		return us_fail(ctx, "UFFDIO_WAKE pages 0-%d: %s", nt / 2 - 1, strerror(-ret));
	for (int i = 0; i < nt / 2; i++)
		if (!wait_done(&t[i].done, 1000))
			return us_fail(ctx, "thread %d still blocked 1000 ms after the WAKE of its page "
				       "(state %c)", i, us_thread_state(atomic_load(&t[i].tid)));
	for (int i = nt / 2; i < nt; i++)
		if ((st = stays_asleep(&t[i], i > nt / 2 ? 0 : 100)))
			return us_fail(ctx, "thread %d woke by a WAKE of pages 0-%d (state %c: %s)", i,
				       nt / 2 - 1, st, state_desc(st));
	if ((ret = do_wake(s.uffd, base + (size_t)(nt / 2) * ps, (size_t)(nt - nt / 2) * ps)))
		return us_fail(ctx, "UFFDIO_WAKE pages %d-%d: %s", nt / 2, nt - 1, strerror(-ret));
	for (int i = 0; i < nt; i++) {
		if (!wait_done(&t[i].done, 1000))
			return us_fail(ctx, "thread %d still blocked 1000 ms after the WAKE of its page "
				       "(state %c)", i, us_thread_state(atomic_load(&t[i].tid)));
		pthread_join(t[i].t, NULL);
		if (t[i].bad)
			return us_fail(ctx, "page %d: content wrong at byte %zu", i, t[i].bad - 1);
	}
	free(buf);
	teardown(&s);
	return US_PASS;
}
