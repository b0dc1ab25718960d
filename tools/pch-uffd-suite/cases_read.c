// SPDX-License-Identifier: MIT
/*
 * cases_read.c - the read/ cases: the ways a handler can read uffd messages.
 * T faulting threads touch N pages of an area (thread t: pages t, t+T, ...),
 * one or more reader threads read the MISSING faults through
 *
 *   blocking:       read(2) on a uffd without O_NONBLOCK
 *   poll:           O_NONBLOCK, poll(2) + read(2) until EAGAIN
 *   epoll:          O_NONBLOCK, epoll_wait(2) + read(2) until EAGAIN
 *   io_uring:       IORING_OP_READ of one uffd_msg, re-armed after each CQE
 *   io_uring-batch: IORING_OP_READ of up to 16 uffd_msg
 *   threads:        several readers, poll + read of one message, same uffd
 *
 * and resolve each with UFFDIO_COPY.  Every page must be delivered exactly
 * once (counted per page and per reader) and read back with its pattern;
 * the round trip of each fault is timed in the faulting thread.  A watchdog
 * fails the case when a faulting thread is still blocked (a lost wakeup),
 * and the readers are joined with a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

enum rmode { R_BLOCKING, R_POLL, R_EPOLL, R_URING, R_URING_BATCH, R_THREADS };

#define MAXF 8		/* faulting threads */
#define MAXR 4		/* reader threads */
#define BATCH 16	/* messages per read, at most */

struct rrun {
	struct us_ctx *ctx;
	struct us_area a;
	enum rmode mode;
	int uffd, stopfd, epfd;
	struct io_uring ring;
	size_t npages;
	unsigned nfaulters, nreaders, bufmsgs;
	uint64_t seed;
	atomic_uint *delivered;	/* per page: messages read */
	uint64_t *lat;		/* per page: fault round trip, µs */
	atomic_int handled, eexist, reads, maxper, first_read, started;
	atomic_bool stop;
	atomic_bool herr_set, ferr_set;
	char herr[160], ferr[160];
	/* faulters */
	pid_t ftid[MAXF];
	atomic_size_t fat[MAXF];
	atomic_bool fdone[MAXF];
	atomic_uint faulters_done;
	/* readers */
	int reader_msgs[MAXR];
	atomic_bool rdone[MAXR];
};

struct thr {
	struct rrun *r;
	unsigned idx;
	pthread_t t;
};

static void rerr(atomic_bool *set, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void rerr(atomic_bool *set, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(set, true))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

#define herror(r, ...) rerr(&(r)->herr_set, (r)->herr, sizeof((r)->herr), __VA_ARGS__)
#define ferror_(r, ...) rerr(&(r)->ferr_set, (r)->ferr, sizeof((r)->ferr), __VA_ARGS__)

static void note_read(struct rrun *r, size_t n)
{
	int cur = atomic_load(&r->maxper);

	if (atomic_fetch_add(&r->reads, 1) == 0)
		atomic_store(&r->first_read, (int)n);
	while ((int)n > cur && !atomic_compare_exchange_weak(&r->maxper, &cur, (int)n))
		;
}

/* one message: resolve it with UFFDIO_COPY from buf (a page) */
static void handle_msg(struct rrun *r, unsigned reader, char *buf, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uint64_t fl = msg->arg.pagefault.flags;
	size_t ps = r->a.psize, pg;
	int ret, tries = 0;

	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		herror(r, "unexpected event 0x%x", msg->event);
		return;
	}
	if (addr < (uintptr_t)r->a.p || addr >= (uintptr_t)r->a.p + r->a.len) {
		herror(r, "fault at 0x%lx, outside the area", (unsigned long)addr);
		return;
	}
	pg = (addr - (uintptr_t)r->a.p) / ps;
	r->reader_msgs[reader]++;
	atomic_fetch_add(&r->delivered[pg], 1);
	if (fl & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR))
		herror(r, "page %zu: fault flags 0x%llx for a MISSING fault", pg,
		       (unsigned long long)fl);
	us_pattern(buf, ps, pg, r->seed);
	struct uffdio_copy c = { .dst = (uintptr_t)r->a.p + pg * ps, .src = (uintptr_t)buf,
				 .len = ps };
	while ((ret = ioctl(r->uffd, UFFDIO_COPY, &c)) < 0 && errno == EAGAIN && ++tries < 1000)
		c.copy = 0;
	if (ret < 0) {
		struct uffdio_range w = { c.dst, ps };

		if (errno == EEXIST)
			atomic_fetch_add(&r->eexist, 1);
		else
			herror(r, "UFFDIO_COPY page %zu: %s", pg, strerror(errno));
		ioctl(r->uffd, UFFDIO_WAKE, &w);
	}
	atomic_fetch_add(&r->handled, 1);
}

/* n bytes read into msgs: check the size, handle each */
static int handle_read(struct rrun *r, unsigned reader, char *buf, const struct uffd_msg *msgs,
		       ssize_t n)
{
	if (n <= 0 || n % (ssize_t)sizeof(msgs[0]) || n > (ssize_t)(r->bufmsgs * sizeof(msgs[0]))) {
		herror(r, "read returned %zd bytes for a buffer of %u messages", n, r->bufmsgs);
		return -1;
	}
	note_read(r, (size_t)n / sizeof(msgs[0]));
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++)
		handle_msg(r, reader, buf, &msgs[i]);
	return 0;
}

static bool all_handled(struct rrun *r)
{
	return atomic_load(&r->handled) >= (int)r->npages;
}

/* read(2) until EAGAIN; returns -1 on an error */
static int drain(struct rrun *r, unsigned reader, char *buf, struct uffd_msg *msgs)
{
	for (;;) {
		ssize_t n = read(r->uffd, msgs, r->bufmsgs * sizeof(msgs[0]));

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			herror(r, "read uffd: %s", strerror(errno));
			return -1;
		}
		if (handle_read(r, reader, buf, msgs, n) < 0)
			return -1;
	}
}

static void reader_blocking(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	/* the last fault ends it; SIGUSR1 (no SA_RESTART) interrupts it otherwise */
	while (!all_handled(r) && !atomic_load(&r->stop)) {
		ssize_t n = read(r->uffd, msgs, r->bufmsgs * sizeof(msgs[0]));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			herror(r, "blocking read uffd: %s", strerror(errno));
			return;
		}
		if (handle_read(r, me, buf, msgs, n) < 0)
			return;
	}
}

static void reader_poll(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = r->uffd, .events = POLLIN },
				       { .fd = r->stopfd, .events = POLLIN } };

		if (poll(p, 2, 200) < 0) {
			if (errno == EINTR)
				continue;
			herror(r, "poll: %s", strerror(errno));
			return;
		}
		if (p[1].revents || atomic_load(&r->stop))
			return;
		if (p[0].revents & (POLLERR | POLLNVAL)) {
			herror(r, "poll uffd revents 0x%x", p[0].revents);
			return;
		}
		if ((p[0].revents & POLLIN) && drain(r, me, buf, msgs) < 0)
			return;
	}
}

static void reader_epoll(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	for (;;) {
		struct epoll_event ev[2];
		int n = epoll_wait(r->epfd, ev, 2, 200);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			herror(r, "epoll_wait: %s", strerror(errno));
			return;
		}
		if (atomic_load(&r->stop))
			return;
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u32 == 1)
				return;
			if (ev[i].events & EPOLLERR) {
				herror(r, "epoll uffd events 0x%x", ev[i].events);
				return;
			}
			if (drain(r, me, buf, msgs) < 0)
				return;
		}
	}
}

static void reader_uring(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	bool armed = false;

	if (r->mode == R_URING_BATCH) {
		/* let every faulting thread queue its first fault: one read gets several */
		uint64_t t0 = us_now_us();

		while (atomic_load(&r->started) < (int)r->nfaulters && us_now_us() - t0 < 1000000)
			usleep(1000);
		usleep(20000);
	}
	while (!all_handled(r) && !atomic_load(&r->stop)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000000 };
		struct io_uring_cqe *cqe;
		int ret, res;

		if (!armed) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

			if (!sqe) {
				herror(r, "io_uring: no SQE");
				return;
			}
			io_uring_prep_read(sqe, r->uffd, msgs, r->bufmsgs * sizeof(msgs[0]), 0);
			io_uring_sqe_set_data64(sqe, 1);
			ret = io_uring_submit(&r->ring);
			if (ret != 1) {
				herror(r, "io_uring_submit: %s", ret < 0 ? strerror(-ret) : "0 SQEs");
				return;
			}
			armed = true;
		}
		ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
		if (ret == -ETIME || ret == -EINTR)
			continue;
		if (ret < 0) {
			herror(r, "io_uring_wait_cqe: %s", strerror(-ret));
			return;
		}
		res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		armed = false;
		if (res == -EINTR)
			continue;
		if (res < 0) {
			herror(r, "IORING_OP_READ uffd: %s", strerror(-res));
			return;
		}
		if (handle_read(r, me, buf, msgs, res) < 0)
			return;
	}
	/* stopped with a read pending (only after a failure): io_uring_queue_exit
	 * in the main thread cancels it */
}

static void *reader(void *arg)
{
	struct thr *t = arg;
	struct rrun *r = t->r;
	struct uffd_msg msgs[BATCH];
	char *buf = malloc(r->a.psize);

	if (!buf) {
		herror(r, "out of memory");
		goto out;
	}
	switch (r->mode) {
	case R_BLOCKING:
		reader_blocking(r, t->idx, buf, msgs);
		break;
	case R_POLL:
	case R_THREADS:
		reader_poll(r, t->idx, buf, msgs);
		break;
	case R_EPOLL:
		reader_epoll(r, t->idx, buf, msgs);
		break;
	case R_URING:
	case R_URING_BATCH:
		reader_uring(r, t->idx, buf, msgs);
		break;
	}
	free(buf);
out:
	atomic_store(&r->rdone[t->idx], true);
	return NULL;
}

static void *faulter(void *arg)
{
	struct thr *t = arg;
	struct rrun *r = t->r;
	size_t ps = r->a.psize, bad;

	r->ftid[t->idx] = (pid_t)syscall(SYS_gettid);
	atomic_fetch_add(&r->started, 1);
	for (size_t pg = t->idx; pg < r->npages; pg += r->nfaulters) {
		char *page = r->a.p + pg * ps;
		uint64_t t0;

		atomic_store(&r->fat[t->idx], pg);
		t0 = us_now_us();
		(void)*(volatile uint64_t *)page;
		r->lat[pg] = us_now_us() - t0;
		if ((bad = us_pattern_check(page, ps, pg, r->seed))) {
			ferror_(r, "page %zu: content wrong at byte %zu", pg, bad - 1);
			break;
		}
	}
	atomic_store(&r->fdone[t->idx], true);
	atomic_fetch_add(&r->faulters_done, 1);
	return NULL;
}

/* a thread's scheduler state, for the lost-wakeup report */
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

static void on_usr1(int sig)
{
	(void)sig;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* join the readers by a deadline, interrupting them with SIGUSR1 */
static int join_readers(struct rrun *r, struct thr *rd)
{
	uint64_t t0 = us_now_us();
	unsigned left = r->nreaders;
	bool joined[MAXR] = { false };

	atomic_store(&r->stop, true);
	eventfd_write(r->stopfd, 1);
	while (left && us_now_us() - t0 < 3000000) {
		for (unsigned i = 0; i < r->nreaders; i++) {
			if (joined[i] || !atomic_load(&r->rdone[i]))
				continue;
			pthread_join(rd[i].t, NULL);
			joined[i] = true;
			left--;
		}
		if (!left)
			break;
		usleep(1000);
		if (us_now_us() - t0 > 200000) /* a reader still in a blocking read */
			for (unsigned i = 0; i < r->nreaders; i++)
				if (!joined[i])
					pthread_kill(rd[i].t, SIGUSR1);
	}
	return left ? -1 : 0;
}

static const char *const mode_names[] = { "blocking read", "poll", "epoll", "io_uring",
					  "io_uring batch", "threads" };

static int run_read(struct us_ctx *ctx, enum rmode mode)
{
	struct rrun *r;
	struct thr ft[MAXF], rd[MAXR];
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000;
	bool nonblock = mode == R_POLL || mode == R_EPOLL || mode == R_THREADS;
	bool uring = mode == R_URING || mode == R_URING_BATCH;
	int ret, rc = US_PASS;
	uint64_t t0, elapsed;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->mode = mode;
	r->npages = ctx->quick ? 64 : 1024;
	r->nfaulters = 4;
	r->nreaders = mode == R_THREADS ? (ctx->quick ? 2 : 4) : 1;
	r->bufmsgs = mode == R_POLL || mode == R_EPOLL || mode == R_URING_BATCH ? BATCH : 1;
	r->seed = 0x4ead0000ULL + (uint64_t)mode * 13 + ctx->kind;
	r->epfd = -1;
	r->delivered = calloc(r->npages, sizeof(*r->delivered));
	r->lat = calloc(r->npages, sizeof(*r->lat));
	if (!r->delivered || !r->lat)
		return us_fail(ctx, "out of memory");
	if (us_kind_psize(ctx->kind) > 4096)
		return us_fail(ctx, "read/ cases are written for small pages");
	ret = us_area_map(&r->a, ctx->kind, r->npages, false);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));

	r->uffd = us_uffd_open(feats, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-r->uffd));
	int fl = fcntl(r->uffd, F_GETFL);

	if (fl < 0 || !!(fl & O_NONBLOCK) != nonblock)
		return us_fail(ctx, "uffd flags 0x%x, want O_NONBLOCK %s", fl,
			       nonblock ? "set" : "clear");
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = ctx->c->mode };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			       strerror(errno));
	if (nonblock) {
		/* O_NONBLOCK: nothing pending reads EAGAIN at once */
		struct uffd_msg m;
		ssize_t n = read(r->uffd, &m, sizeof(m));

		if (n >= 0 || errno != EAGAIN)
			return us_fail(ctx, "O_NONBLOCK read with no fault pending: %zd (%s), want EAGAIN",
				       n, n < 0 ? strerror(errno) : "data");
	}
	r->stopfd = eventfd(0, EFD_CLOEXEC);
	if (r->stopfd < 0)
		return us_fail(ctx, "eventfd: %s", strerror(errno));
	if (mode == R_EPOLL) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };

		r->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (r->epfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->uffd, &ev) < 0)
			return us_fail(ctx, "epoll on the uffd: %s", strerror(errno));
		ev.data.u32 = 1;
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->stopfd, &ev) < 0)
			return us_fail(ctx, "epoll on the eventfd: %s", strerror(errno));
	}
	if (uring) {
		ret = io_uring_queue_init(8, &r->ring, 0);
		if (ret == -ENOSYS || ret == -EPERM)
			return us_skip(ctx, "io_uring unavailable: %s", strerror(-ret));
		if (ret < 0)
			return us_fail(ctx, "io_uring_queue_init: %s", strerror(-ret));
	}
	struct sigaction sa = { .sa_handler = on_usr1 }; /* no SA_RESTART: read gets EINTR */

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	for (unsigned i = 0; i < r->nreaders; i++) {
		rd[i] = (struct thr){ r, i, 0 };
		if (pthread_create(&rd[i].t, NULL, reader, &rd[i]))
			return us_fail(ctx, "pthread_create reader");
	}
	t0 = us_now_us();
	for (unsigned i = 0; i < r->nfaulters; i++) {
		ft[i] = (struct thr){ r, i, 0 };
		if (pthread_create(&ft[i].t, NULL, faulter, &ft[i]))
			return us_fail(ctx, "pthread_create faulter");
	}
	while (atomic_load(&r->faulters_done) < r->nfaulters &&
	       us_now_us() - t0 < watchdog_ms * 1000ULL)
		usleep(1000);
	if (atomic_load(&r->faulters_done) < r->nfaulters) {
		/* a lost wakeup: leave the threads, the child exits with them */
		char st[160] = "";
		size_t off = 0;

		for (unsigned i = 0; i < r->nfaulters && off < sizeof(st); i++)
			if (!atomic_load(&r->fdone[i]))
				off += snprintf(st + off, sizeof(st) - off, " %u:page %zu state %c", i,
						atomic_load(&r->fat[i]), thread_state(r->ftid[i]));
		return us_fail(ctx, "faulting threads still blocked after %u ms (%s), %d of %zu "
			       "faults handled%s%s", watchdog_ms, st + 1, atomic_load(&r->handled),
			       r->npages, atomic_load(&r->herr_set) ? "; handler: " : "",
			       atomic_load(&r->herr_set) ? r->herr : "");
	}
	elapsed = us_now_us() - t0;
	for (unsigned i = 0; i < r->nfaulters; i++)
		pthread_join(ft[i].t, NULL);
	if (join_readers(r, rd) < 0)
		return us_fail(ctx, "a reader did not stop within 3 s (SIGUSR1 sent)");

	int handled = atomic_load(&r->handled), sum = 0, rmin = -1, rmax = 0;

	for (unsigned i = 0; i < r->nreaders; i++) {
		sum += r->reader_msgs[i];
		rmin = rmin < 0 || r->reader_msgs[i] < rmin ? r->reader_msgs[i] : rmin;
		rmax = r->reader_msgs[i] > rmax ? r->reader_msgs[i] : rmax;
	}
	if (atomic_load(&r->herr_set))
		rc = us_fail(ctx, "handler: %s", r->herr);
	else if (atomic_load(&r->ferr_set))
		rc = us_fail(ctx, "%s", r->ferr);
	else if (handled != (int)r->npages || sum != handled)
		rc = us_fail(ctx, "%d messages handled, %d counted by the readers, for %zu faults",
			     handled, sum, r->npages);
	for (size_t pg = 0; rc == US_PASS && pg < r->npages; pg++)
		if (atomic_load(&r->delivered[pg]) != 1)
			rc = us_fail(ctx, "page %zu delivered %u times, want exactly once", pg,
				     atomic_load(&r->delivered[pg]));

	qsort(r->lat, r->npages, sizeof(r->lat[0]), cmp_u64);
	uint64_t p50 = r->lat[r->npages / 2], lmax = r->lat[r->npages - 1];

	us_diag("%s/%s/%s: %s: %d faults from %u threads, %u reader(s) (min/max %d/%d msgs), "
		"%d reads, max %d msgs per read (first %d), fault round trip p50 %llu us max %llu us",
		ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), mode_names[mode], handled,
		r->nfaulters, r->nreaders, rmin, rmax, atomic_load(&r->reads),
		atomic_load(&r->maxper), atomic_load(&r->first_read), (unsigned long long)p50,
		(unsigned long long)lmax);
	us_metric(ctx, "faults", handled);
	us_metric(ctx, "threads", r->nfaulters);
	us_metric(ctx, "readers", r->nreaders);
	us_metric(ctx, "reads", atomic_load(&r->reads));
	us_metric(ctx, "max_msgs_per_read", atomic_load(&r->maxper));
	us_metric(ctx, "fault_us_p50", (double)p50);
	us_metric(ctx, "fault_us_max", (double)lmax);
	us_metric(ctx, "elapsed_us", (double)elapsed);
	if (uring)
		io_uring_queue_exit(&r->ring);
	if (r->epfd >= 0)
		close(r->epfd);
	close(r->stopfd);
	close(r->uffd);
	us_area_unmap(&r->a);
	return rc;
}

int us_case_read_blocking(struct us_ctx *ctx)
{
	return run_read(ctx, R_BLOCKING);
}

int us_case_read_poll(struct us_ctx *ctx)
{
	return run_read(ctx, R_POLL);
}

int us_case_read_epoll(struct us_ctx *ctx)
{
	return run_read(ctx, R_EPOLL);
}

int us_case_read_uring(struct us_ctx *ctx)
{
	return run_read(ctx, R_URING);
}

int us_case_read_uring_batch(struct us_ctx *ctx)
{
	return run_read(ctx, R_URING_BATCH);
}

int us_case_read_threads(struct us_ctx *ctx)
{
	return run_read(ctx, R_THREADS);
}
