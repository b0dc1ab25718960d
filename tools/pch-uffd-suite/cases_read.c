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
 *   io_uring-nonblock: IORING_OP_READ on an O_NONBLOCK uffd (what the kernel
 *                   does with it is recorded: a pending read, or -EAGAIN in
 *                   the CQE and then IORING_OP_POLL_ADD + read)
 *   io_uring-poll:  IORING_OP_POLL_ADD (multishot when accepted) on an
 *                   O_NONBLOCK uffd, read(2) until EAGAIN after each CQE
 *   io_uring-multishot: IORING_OP_READ_MULTISHOT with a provided buffer ring
 *                   of one-message buffers: one CQE per message
 *
 * on every memory kind (hugetlb kinds: 8 huge pages, 2 faulting threads, what
 * the suite reserves) and resolve each with UFFDIO_COPY.  Every page must be delivered exactly
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

/*
 * 6.7's opcode, after Debian's 6.1 <linux/io_uring.h> and liburing 2.3 (an
 * enum there, so a name of our own rather than an #ifndef).  The ring is
 * probed (IORING_REGISTER_PROBE) before it is used.
 */
#define US_IORING_OP_READ_MULTISHOT 49

enum rmode { R_BLOCKING, R_POLL, R_EPOLL, R_URING, R_URING_BATCH, R_THREADS, R_URING_NONBLOCK,
	     R_URING_POLL, R_URING_MSHOT };

/* what IORING_OP_READ on an O_NONBLOCK uffd did with nothing pending */
enum nb_behaviour { NB_PENDING, NB_EAGAIN };

#define MAXF 8		/* faulting threads */
#define MAXR 4		/* reader threads */
#define BATCH 16	/* messages per read, at most */
#define MSHOT_BUFS 16	/* provided buffers (a power of 2), one uffd_msg each */

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
	/* io_uring-nonblock, -poll, -multishot */
	enum nb_behaviour nb;
	bool pre_armed;		/* a READ was submitted before the faults */
	struct uffd_msg *first;	/* its buffer (user_data 4) */
	bool poll_multi;	/* IORING_POLL_ADD_MULTI accepted */
	int eagain_cqes, eintr_cqes, poll_cqes, rearms;
	struct io_uring_buf_ring *br;	/* provided buffers, one uffd_msg each */
	struct uffd_msg *bufs;
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


#define herror(r, ...) us_seterr(&(r)->herr_set, (r)->herr, sizeof((r)->herr), __VA_ARGS__)
#define ferror_(r, ...) us_seterr(&(r)->ferr_set, (r)->ferr, sizeof((r)->ferr), __VA_ARGS__)

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

/* one SQE; returns 0 or -1 with the error recorded */
static int uring_submit(struct rrun *r, int op, void *addr, unsigned len, uint64_t data,
			unsigned pollmask, bool multi)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	int ret;

	if (!sqe) {
		herror(r, "io_uring: no SQE");
		return -1;
	}
	if (op == IORING_OP_POLL_ADD) {
		if (multi)
			io_uring_prep_poll_multishot(sqe, r->uffd, pollmask);
		else
			io_uring_prep_poll_add(sqe, r->uffd, pollmask);
	} else if (op == US_IORING_OP_READ_MULTISHOT) {
		/* len 0: the provided buffer's length (one uffd_msg) */
		io_uring_prep_rw(op, sqe, r->uffd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 1;
	} else {
		io_uring_prep_read(sqe, r->uffd, addr, len, 0);
	}
	io_uring_sqe_set_data64(sqe, data);
	ret = io_uring_submit(&r->ring);
	if (ret != 1) {
		herror(r, "io_uring_submit: %s", ret < 0 ? strerror(-ret) : "0 SQEs");
		return -1;
	}
	return 0;
}

/*
 * The next CQE, waiting 200 ms at a time until it comes or the case stops.
 * Returns 1 with *res, *flags, *data; 0 when stopped; -1 on an error.
 */
static int uring_next(struct rrun *r, int *res, unsigned *flags, uint64_t *data)
{
	while (!atomic_load(&r->stop)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000000 };
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);

		if (ret == -ETIME || ret == -EINTR)
			continue;
		if (ret < 0) {
			herror(r, "io_uring_wait_cqe: %s", strerror(-ret));
			return -1;
		}
		*res = cqe->res;
		*flags = cqe->flags;
		*data = cqe->user_data;
		io_uring_cqe_seen(&r->ring, cqe);
		return 1;
	}
	return 0;
}

/*
 * IORING_OP_READ, re-armed after each CQE (io_uring, io_uring-batch,
 * io_uring-nonblock).  On an O_NONBLOCK uffd whose first read completed with
 * -EAGAIN (r->nb), an -EAGAIN CQE is followed by a one-shot
 * IORING_OP_POLL_ADD before the read is armed again.
 */
static void reader_uring(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	bool armed = r->pre_armed;

	if (r->mode == R_URING_BATCH) {
		/* let every faulting thread queue its first fault: one read gets several */
		uint64_t t0 = us_now_us();

		while (atomic_load(&r->started) < (int)r->nfaulters && us_now_us() - t0 < 1000000)
			usleep(1000);
		usleep(20000);
	}
	while (!all_handled(r) && !atomic_load(&r->stop)) {
		unsigned flags;
		uint64_t data;
		int ret, res;

		if (!armed && uring_submit(r, IORING_OP_READ, msgs, r->bufmsgs * sizeof(msgs[0]), 1,
					   0, false) < 0)
			return;
		armed = true;
		ret = uring_next(r, &res, &flags, &data);
		if (ret <= 0)
			return;
		armed = false;
		if (res == -EINTR) {
			/* uffd without O_NONBLOCK, nothing pending: its poll says POLLERR */
			r->eintr_cqes++;
			continue;
		}
		if (res == -EAGAIN && r->mode == R_URING_NONBLOCK && r->nb == NB_EAGAIN) {
			/* the kernel does not wait for us: poll, then read again */
			r->eagain_cqes++;
			if (uring_submit(r, IORING_OP_POLL_ADD, NULL, 0, 2, POLLIN, false) < 0)
				return;
			ret = uring_next(r, &res, &flags, &data);
			if (ret <= 0)
				return;
			r->poll_cqes++;
			if (res < 0 || !(res & POLLIN)) {
				herror(r, "IORING_OP_POLL_ADD uffd: %s",
				       res < 0 ? strerror(-res) : "no POLLIN");
				return;
			}
			continue;
		}
		if (res < 0) {
			herror(r, "IORING_OP_READ uffd%s: %s%s",
			       r->mode == R_URING_NONBLOCK ? " (O_NONBLOCK)" : "", strerror(-res),
			       r->mode == R_URING_NONBLOCK && res == -EAGAIN ?
			       ", though the first read waited for a fault" : "");
			return;
		}
		/* the read armed before the faults read into r->first */
		if (handle_read(r, me, buf, data == 4 ? r->first : msgs, res) < 0)
			return;
	}
	/* stopped with a read pending (only after a failure): io_uring_queue_exit
	 * in the main thread cancels it */
}

/*
 * IORING_OP_POLL_ADD on the O_NONBLOCK uffd, then read(2) until EAGAIN after
 * each POLLIN CQE.  Multishot poll (IORING_POLL_ADD_MULTI) posts a CQE per
 * wakeup and stays armed while IORING_CQE_F_MORE is set; when the kernel
 * refuses it (-EINVAL) a one-shot poll is armed after each CQE instead.
 */
static void reader_uring_poll(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	bool armed = false;

	r->poll_multi = true;
	while (!all_handled(r) && !atomic_load(&r->stop)) {
		unsigned flags;
		uint64_t data;
		int ret, res;

		if (!armed) {
			if (uring_submit(r, IORING_OP_POLL_ADD, NULL, 0, 2, POLLIN, r->poll_multi) < 0)
				return;
			r->rearms++;
		}
		armed = true;
		ret = uring_next(r, &res, &flags, &data);
		if (ret <= 0)
			return;
		if (!(flags & IORING_CQE_F_MORE))
			armed = false;
		if (res == -EINVAL && r->poll_multi && r->poll_cqes == 0) {
			r->poll_multi = false; /* no IORING_POLL_ADD_MULTI: one-shot polls */
			continue;
		}
		r->poll_cqes++;
		if (res < 0 || (res & (POLLERR | POLLNVAL))) {
			herror(r, "IORING_OP_POLL_ADD uffd: %s", res < 0 ? strerror(-res) : "POLLERR");
			return;
		}
		if ((res & POLLIN) && drain(r, me, buf, msgs) < 0)
			return;
	}
}

/*
 * IORING_OP_READ_MULTISHOT from a provided buffer ring (group 1) of
 * one-message buffers: each CQE names the buffer (IORING_CQE_F_BUFFER,
 * bid in the upper 16 bits) holding one uffd_msg; the buffer goes back to
 * the ring at once.  Without IORING_CQE_F_MORE the read has ended (e.g.
 * -ENOBUFS) and is armed again.
 */
static void reader_uring_mshot(struct rrun *r, unsigned me, char *buf, struct uffd_msg *msgs)
{
	bool armed = r->pre_armed;
	unsigned mask = MSHOT_BUFS - 1;

	(void)msgs;
	while (!all_handled(r) && !atomic_load(&r->stop)) {
		unsigned flags, bid;
		uint64_t data;
		int ret, res;

		if (!armed) {
			if (uring_submit(r, US_IORING_OP_READ_MULTISHOT, NULL, 0, 3, 0, false) < 0)
				return;
			r->rearms++;
		}
		armed = true;
		ret = uring_next(r, &res, &flags, &data);
		if (ret <= 0)
			return;
		if (!(flags & IORING_CQE_F_MORE))
			armed = false;
		if (res == -ENOBUFS || res == -EINTR)
			continue;
		if (res < 0) {
			herror(r, "IORING_OP_READ_MULTISHOT uffd: %s", strerror(-res));
			return;
		}
		if (!(flags & IORING_CQE_F_BUFFER)) {
			herror(r, "IORING_OP_READ_MULTISHOT: %d bytes without a buffer", res);
			return;
		}
		bid = flags >> IORING_CQE_BUFFER_SHIFT;
		if (bid >= MSHOT_BUFS) {
			herror(r, "IORING_OP_READ_MULTISHOT: buffer id %u of %u", bid, MSHOT_BUFS);
			return;
		}
		if (handle_read(r, me, buf, &r->bufs[bid], res) < 0)
			return;
		/* give the buffer back */
		io_uring_buf_ring_add(r->br, &r->bufs[bid], sizeof(r->bufs[0]), (unsigned short)bid,
				      (int)mask, 0);
		io_uring_buf_ring_advance(r->br, 1);
	}
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
	case R_URING_NONBLOCK:
		reader_uring(r, t->idx, buf, msgs);
		break;
	case R_URING_POLL:
		reader_uring_poll(r, t->idx, buf, msgs);
		break;
	case R_URING_MSHOT:
		reader_uring_mshot(r, t->idx, buf, msgs);
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
					  "io_uring batch", "threads", "io_uring O_NONBLOCK",
					  "io_uring poll", "io_uring multishot read" };

/*
 * Before any fault: arm the first read (IORING_OP_READ, or the multishot read)
 * and see what the kernel does with it in 50 ms.  Returns US_PASS with
 * r->pre_armed set when it stays pending; with r->nb = NB_EAGAIN when a
 * one-shot read on an O_NONBLOCK uffd completed -EAGAIN; US_SKIP when the
 * multishot read is refused (-EINVAL); US_FAIL for anything else.
 */
static int uring_first_read(struct us_ctx *ctx, struct rrun *r, struct uffd_msg *first)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 50 * 1000000 };
	struct io_uring_cqe *cqe;
	bool mshot = r->mode == R_URING_MSHOT;
	int ret, res;

	if (uring_submit(r, mshot ? US_IORING_OP_READ_MULTISHOT : IORING_OP_READ, first,
			 sizeof(*first), 4, 0, false) < 0)
		return us_fail(ctx, "%s", r->herr);
	ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
	if (ret == -ETIME) {
		r->pre_armed = true;
		r->first = first;
		r->nb = NB_PENDING;
		return US_PASS;
	}
	if (ret < 0)
		return us_fail(ctx, "io_uring_wait_cqe: %s", strerror(-ret));
	res = cqe->res;
	io_uring_cqe_seen(&r->ring, cqe);
	if (mshot && res == -EINVAL)
		return us_skip(ctx, "the kernel rejects IORING_OP_READ_MULTISHOT on a uffd (-EINVAL)");
	if (!mshot && res == -EAGAIN) {
		r->nb = NB_EAGAIN;
		r->eagain_cqes++;
		return US_PASS;
	}
	return us_fail(ctx, "%s with no fault pending completed at once: %d (%s), want it "
		       "pending%s", mshot ? "IORING_OP_READ_MULTISHOT" : "IORING_OP_READ", res,
		       res < 0 ? strerror(-res) : "bytes", mshot ? "" : " or -EAGAIN");
}

/* the provided buffer ring for the multishot read: group 1, MSHOT_BUFS one-message buffers */
static int setup_buf_ring(struct us_ctx *ctx, struct rrun *r)
{
	struct io_uring_buf_reg reg = { .ring_entries = MSHOT_BUFS, .bgid = 1 };
	struct io_uring_probe *probe;
	size_t sz = MSHOT_BUFS * sizeof(struct io_uring_buf);
	bool have;
	int ret;

	probe = io_uring_get_probe_ring(&r->ring);
	if (!probe)
		return us_fail(ctx, "IORING_REGISTER_PROBE failed");
	have = io_uring_opcode_supported(probe, US_IORING_OP_READ_MULTISHOT);
	io_uring_free_probe(probe);
	if (!have)
		return us_skip(ctx, "missing IORING_OP_READ_MULTISHOT (io_uring probe)");
	r->br = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r->bufs = calloc(MSHOT_BUFS, sizeof(r->bufs[0]));
	if (r->br == MAP_FAILED || !r->bufs)
		return us_fail(ctx, "out of memory");
	reg.ring_addr = (uintptr_t)r->br;
	ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (ret == -EINVAL)
		return us_skip(ctx, "missing IORING_REGISTER_PBUF_RING (-EINVAL)");
	if (ret < 0)
		return us_fail(ctx, "IORING_REGISTER_PBUF_RING: %s", strerror(-ret));
	io_uring_buf_ring_init(r->br);
	for (unsigned i = 0; i < MSHOT_BUFS; i++)
		io_uring_buf_ring_add(r->br, &r->bufs[i], sizeof(r->bufs[0]), (unsigned short)i,
				      MSHOT_BUFS - 1, (int)i);
	io_uring_buf_ring_advance(r->br, MSHOT_BUFS);
	return US_PASS;
}

static int run_read(struct us_ctx *ctx, enum rmode mode)
{
	struct rrun *r;
	struct thr ft[MAXF], rd[MAXR];
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000;
	bool nonblock = mode == R_POLL || mode == R_EPOLL || mode == R_THREADS ||
			mode == R_URING_NONBLOCK || mode == R_URING_POLL;
	bool uring = mode == R_URING || mode == R_URING_BATCH || mode >= R_URING_NONBLOCK;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	struct uffd_msg first;
	int ret, rc = US_PASS;
	uint64_t t0, elapsed;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->mode = mode;
	/* hugetlb: the 8 huge pages the suite reserves */
	r->npages = huge ? 8 : ctx->quick ? 64 : 1024;
	r->nfaulters = huge ? 2 : 4;
	r->nreaders = mode == R_THREADS ? (ctx->quick ? 2 : 4) : 1;
	r->bufmsgs = mode == R_POLL || mode == R_EPOLL || mode == R_URING_BATCH ||
		     mode == R_URING_POLL ? BATCH : 1;
	r->seed = 0x4ead0000ULL + (uint64_t)mode * 13 + ctx->kind;
	r->epfd = -1;
	r->delivered = calloc(r->npages, sizeof(*r->delivered));
	r->lat = calloc(r->npages, sizeof(*r->lat));
	if (!r->delivered || !r->lat)
		return us_fail(ctx, "out of memory");
	ret = us_area_map(&r->a, ctx->kind, r->npages, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages");
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
		if (mode == R_URING_MSHOT && (ret = setup_buf_ring(ctx, r)) != US_PASS)
			return ret;
		if ((mode == R_URING_NONBLOCK || mode == R_URING_MSHOT) &&
		    (ret = uring_first_read(ctx, r, &first)) != US_PASS)
			return ret;
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
						atomic_load(&r->fat[i]), us_thread_state(r->ftid[i]));
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
	if (mode == R_URING || mode == R_URING_BATCH)
		us_diag("%s/%s/%s: %d reads completed -EINTR (a uffd without O_NONBLOCK polls "
			"POLLERR, so io_uring cannot wait for a fault: the read is re-armed at once)",
			ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), r->eintr_cqes);
	if (mode == R_URING_NONBLOCK)
		us_diag("%s/%s/%s: IORING_OP_READ on an O_NONBLOCK uffd with nothing pending: %s; "
			"%d -EAGAIN CQEs, %d IORING_OP_POLL_ADD CQEs", ctx->c->cat, ctx->c->name,
			us_kind_name(ctx->kind), r->nb == NB_PENDING ?
			"stays pending (io_uring polls) and completes with the fault" :
			"completes -EAGAIN at once (the handler polls: IORING_OP_POLL_ADD + read)",
			r->eagain_cqes, r->poll_cqes);
	if (mode == R_URING_POLL)
		us_diag("%s/%s/%s: IORING_OP_POLL_ADD %s: %d poll CQEs, %d submitted", ctx->c->cat,
			ctx->c->name, us_kind_name(ctx->kind), r->poll_multi ? "multishot" :
			"one-shot (IORING_POLL_ADD_MULTI refused)", r->poll_cqes, r->rearms);
	if (mode == R_URING_MSHOT)
		us_diag("%s/%s/%s: IORING_OP_READ_MULTISHOT: %d CQEs of one message, %d re-armed",
			ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), atomic_load(&r->reads),
			r->rearms);
	us_metric(ctx, "faults", handled);
	us_metric(ctx, "reads", atomic_load(&r->reads));
	us_metric(ctx, "max_msgs_per_read", atomic_load(&r->maxper));
	us_metric(ctx, "fault_us_p50", (double)p50);
	us_metric(ctx, "fault_us_max", (double)lmax);
	if (mode == R_URING_NONBLOCK) {
		us_metric(ctx, "read_pending", r->nb == NB_PENDING);
		us_metric(ctx, "eagain_cqes", r->eagain_cqes);
	} else if (mode == R_URING_POLL) {
		us_metric(ctx, "poll_multishot", r->poll_multi);
		us_metric(ctx, "poll_cqes", r->poll_cqes);
	} else if (mode == R_URING_MSHOT) {
		us_metric(ctx, "rearms", r->rearms);
	} else if (mode == R_URING || mode == R_URING_BATCH) {
		us_metric(ctx, "eintr_cqes", r->eintr_cqes);
	}
	us_metric(ctx, "threads", r->nfaulters);
	us_metric(ctx, "readers", r->nreaders);
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

int us_case_read_uring_nonblock(struct us_ctx *ctx)
{
	return run_read(ctx, R_URING_NONBLOCK);
}

int us_case_read_uring_poll(struct us_ctx *ctx)
{
	return run_read(ctx, R_URING_POLL);
}

int us_case_read_uring_mshot(struct us_ctx *ctx)
{
	return run_read(ctx, R_URING_MSHOT);
}

/* io_uring-cancel's faulting thread: touches page 0 once */
struct touch {
	char *page;
	pid_t tid;
	uint64_t word;
	atomic_bool done;
};

static void *toucher(void *arg)
{
	struct touch *t = arg;

	t->tid = (pid_t)syscall(SYS_gettid);
	t->word = *(volatile uint64_t *)t->page;
	atomic_store(&t->done, true);
	return NULL;
}

/* the next CQE within ms milliseconds: 1 with res and data set, 0 if none came */
static int cqe_within(struct io_uring *ring, unsigned ms, int *res, uint64_t *data)
{
	uint64_t t0 = us_now_us();

	for (;;) {
		uint64_t left = ms * 1000ULL - (us_now_us() - t0);
		struct __kernel_timespec ts = { .tv_sec = (long long)(left / 1000000),
						.tv_nsec = (long long)(left % 1000000) * 1000 };
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);

		if (ret == -ETIME)
			return 0;
		if (ret == -EINTR && us_now_us() - t0 < ms * 1000ULL)
			continue;
		if (ret < 0)
			return ret;
		*res = cqe->res;
		*data = cqe->user_data;
		io_uring_cqe_seen(ring, cqe);
		return 1;
	}
}

static int submit_read(struct io_uring *ring, int fd, struct uffd_msg *m, uint64_t data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, fd, m, sizeof(*m), 0);
	io_uring_sqe_set_data64(sqe, data);
	return io_uring_submit(ring) == 1 ? 0 : -EIO;
}

/*
 * A pending IORING_OP_READ on an O_NONBLOCK uffd with no fault coming (on a
 * uffd without O_NONBLOCK it would not stay pending: see io_uring):
 *  1. IORING_OP_ASYNC_CANCEL completes it (-ECANCELED; -EINTR if it was
 *     running in an io-wq worker) within 1 s, the cancel CQE 0 / -EALREADY;
 *  2. close(uffd) with a read pending: the request holds its own reference
 *     to the file, so the uffd lives on: the read stays pending and a fault
 *     afterwards is delivered to it; the completed request drops the last
 *     reference, which releases the uffd and wakes the faulting thread (its
 *     page is then filled as if never registered: zeros).
 * Every wait has a deadline; a thread still blocked is reported with its state.
 */
int us_case_read_uring_cancel(struct us_ctx *ctx)
{
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	struct us_area a;
	struct io_uring ring;
	struct uffd_msg m1, m2;
	struct touch t = { 0 };
	pthread_t th;
	int uffd, ret, res = 0, rread = 0, rcancel = 0;
	uint64_t data, t0, cancel_us;
	bool got_read = false, got_cancel = false;

	ret = us_area_map(&a, ctx->kind, 2, false);
	if (ret == -ENOMEM && us_kind_psize(ctx->kind) > 4096)
		return us_skip(ctx, "no free huge pages");
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		return us_fail(ctx, "uffd: %s", strerror(-uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)a.p, a.len }, .mode = ctx->c->mode };

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER: %s", strerror(errno));
	ret = io_uring_queue_init(8, &ring, 0);
	if (ret == -ENOSYS || ret == -EPERM)
		return us_skip(ctx, "io_uring unavailable: %s", strerror(-ret));
	if (ret < 0)
		return us_fail(ctx, "io_uring_queue_init: %s", strerror(-ret));

	/* 1. cancel a pending read */
	if ((ret = submit_read(&ring, uffd, &m1, 1)) < 0)
		return us_fail(ctx, "submit IORING_OP_READ: %s", strerror(-ret));
	ret = cqe_within(&ring, 50, &res, &data);
	if (ret != 0)
		return us_fail(ctx, "IORING_OP_READ with no fault pending completed: %s",
			       ret < 0 ? strerror(-ret) : res < 0 ? strerror(-res) : "with data");
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	io_uring_prep_cancel64(sqe, 1, 0);
	io_uring_sqe_set_data64(sqe, 2);
	t0 = us_now_us();
	if (io_uring_submit(&ring) != 1)
		return us_fail(ctx, "submit IORING_OP_ASYNC_CANCEL failed");
	while ((!got_read || !got_cancel) && us_now_us() - t0 < 1000000) {
		ret = cqe_within(&ring, 1000 - (unsigned)((us_now_us() - t0) / 1000), &res, &data);
		if (ret < 0)
			return us_fail(ctx, "io_uring_wait_cqe: %s", strerror(-ret));
		if (ret == 0)
			break;
		if (data == 1) {
			got_read = true;
			rread = res;
		} else if (data == 2) {
			got_cancel = true;
			rcancel = res;
		}
	}
	cancel_us = us_now_us() - t0;
	if (!got_read)
		return us_fail(ctx, "the cancelled IORING_OP_READ did not complete within 1000 ms "
			       "(cancel CQE %s)", got_cancel ? strerror(-rcancel) : "missing too");
	if (rread != -ECANCELED && rread != -EINTR)
		return us_fail(ctx, "cancelled IORING_OP_READ completed %d (%s), want -ECANCELED "
			       "or -EINTR", rread, rread < 0 ? strerror(-rread) : "bytes");
	if (!got_cancel || (rcancel != 0 && rcancel != -EALREADY))
		return us_fail(ctx, "IORING_OP_ASYNC_CANCEL: %s, want 0 or -EALREADY",
			       got_cancel ? strerror(-rcancel) : "no CQE in 1000 ms");

	/* 2. close the uffd with a read pending */
	if ((ret = submit_read(&ring, uffd, &m2, 3)) < 0)
		return us_fail(ctx, "submit IORING_OP_READ: %s", strerror(-ret));
	ret = cqe_within(&ring, 50, &res, &data);
	if (ret != 0)
		return us_fail(ctx, "second IORING_OP_READ completed with no fault pending");
	close(uffd);
	ret = cqe_within(&ring, 100, &res, &data);
	if (ret < 0)
		return us_fail(ctx, "io_uring_wait_cqe: %s", strerror(-ret));
	if (ret)
		return us_fail(ctx, "close(uffd) completed the pending read: %d (%s); the request "
			       "should hold the file", res, res < 0 ? strerror(-res) : "bytes");
	/* the uffd lives on in the request: a fault reaches the pending read */
	t.page = a.p;
	if (pthread_create(&th, NULL, toucher, &t))
		return us_fail(ctx, "pthread_create");
	ret = cqe_within(&ring, 1000, &res, &data);
	if (ret <= 0)
		return us_fail(ctx, "a fault after close(uffd) did not complete the pending read in "
			       "1000 ms (%s)", ret < 0 ? strerror(-ret) : "no CQE");
	if (res != (int)sizeof(m2) || m2.event != UFFD_EVENT_PAGEFAULT ||
	    (m2.arg.pagefault.address & ~(uint64_t)(a.psize - 1)) != (uintptr_t)a.p)
		return us_fail(ctx, "after close(uffd) the read gave %d (%s), event 0x%x at 0x%llx, "
			       "want the fault at %p", res, res < 0 ? strerror(-res) : "bytes",
			       m2.event, (unsigned long long)m2.arg.pagefault.address, (void *)a.p);
	/*
	 * The completed request dropped its reference, the last one to the
	 * closed uffd: that releases it, which wakes the faulting thread.
	 */
	t0 = us_now_us();
	while (!atomic_load(&t.done) && us_now_us() - t0 < 2000000)
		usleep(1000);
	if (!atomic_load(&t.done)) {
		char st = us_thread_state(t.tid);

		io_uring_queue_exit(&ring);
		usleep(200000);
		return us_fail(ctx, "faulting thread still blocked (state %c) 2000 ms after the read "
			       "holding the last reference to the closed uffd completed; %s after "
			       "closing the ring", st, atomic_load(&t.done) ? "woken" : "still blocked");
	}
	uint64_t release_us = us_now_us() - t0;

	io_uring_queue_exit(&ring);
	pthread_join(th, NULL);
	if (t.word != 0)
		return us_fail(ctx, "page 0 reads 0x%llx after the uffd was released, want zeros",
			       (unsigned long long)t.word);
	us_diag("%s/%s/%s: cancelled read: %s in %llu us (cancel CQE %d); close(uffd) leaves the "
		"read pending, a later fault completes it, which releases the uffd and wakes the "
		"fault %llu us after the CQE", ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind),
		rread == -ECANCELED ? "-ECANCELED" : "-EINTR", (unsigned long long)cancel_us,
		rcancel, (unsigned long long)release_us);
	us_metric(ctx, "cancel_us", (double)cancel_us);
	us_metric(ctx, "release_us", (double)release_us);
	us_area_unmap(&a);
	return US_PASS;
}
