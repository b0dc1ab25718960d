// SPDX-License-Identifier: MIT
/*
 * cases_lat.c - the lat/ cases: the round trip of one fault, for each
 * resolving ioctl and each way of reading the message, so that a kernel
 * change shows up as a number.
 *
 * One faulting thread makes N faults one at a time (never two faults in
 * flight: no batching), timing each access with CLOCK_MONOTONIC; one handler
 * reads the message and resolves it:
 *
 *   copy       MISSING, UFFDIO_COPY of a page
 *   zeropage   MISSING, UFFDIO_ZEROPAGE
 *   continue   MINOR, UFFDIO_CONTINUE, content put in the page cache through
 *              a second mapping
 *   move       MISSING, UFFDIO_MOVE from a filled area (anon)
 *   wp         write to a write-protected page, UFFDIO_WRITEPROTECT mode 0
 *              (un-protect and wake)
 *   copy-proc  copy, with the handler in another process given the uffd over
 *              SCM_RIGHTS (pch's own shape); COPY from that process's memory
 *
 * on every memory kind the case table gives them.  Fault i touches page
 * i % nmap: nmap = N on 4 KiB kinds (every fault a fresh page), a few pages on
 * hugetlb kinds (the suite reserves 16 huge pages), which the faulting
 * thread "recycles" after each fault, outside the timed interval: MISSING
 * rows drop the page (MADV_DONTNEED, or PUNCH_HOLE of the memfd on shared
 * kinds, where DONTNEED would leave the page cache and no fault), continue
 * drops only the pte (MADV_DONTNEED of the shared mapping: the page cache
 * keeps the page) and writes the next fault's content through the alias, wp
 * protects the page again.  Every fault's content is that of its fault index,
 * so a recycle that did not take shows as stale content, or as fewer
 * messages than faults.  The handler prepares the next fault's source page
 * (2 MiB of pattern on hugetlb) before the faulting thread may touch it, so
 * the time is the message and the ioctl, not the pattern.
 *
 * read by: read (blocking uffd, read(2) of one message), poll (O_NONBLOCK,
 * poll + read), epoll (O_NONBLOCK, epoll_wait + read), uring (O_NONBLOCK
 * uffd, IORING_OP_READ of one message, re-armed: io_uring parks the read on
 * the uffd's poll; on a blocking uffd it cannot, the uffd polls POLLERR, and
 * the read completes -EINTR at once, so the handler would spin).  Each case is named
 * lat/<ioctl>-<path>; the runner prints their p50/p99/max as a table.
 * POISON is not a round trip (the access gets SIGBUS): not measured.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

/* huge pages a hugetlb lat/ case maps (of the 16 the suite reserves) */
#define LAT_HUGE_PAGES 4

enum lres { L_COPY, L_ZEROPAGE, L_CONTINUE, L_MOVE, L_WP };

static const char *const res_names[] = { "COPY", "ZEROPAGE", "CONTINUE", "MOVE", "WRITEPROTECT" };
static const char *const path_names[] = { "blocking read", "poll + read", "epoll + read",
					   "IORING_OP_READ" };

/* in a MAP_SHARED mapping: the handler may be another process */
struct lctl {
	enum lres res;
	enum us_lat_path path;
	uintptr_t base, src;
	size_t psize, npages;
	size_t nmap;		/* pages mapped: fault i touches page i % nmap */
	bool huge;
	atomic_bool nomem;	/* no free huge page to resolve a fault with */
	uint64_t seed;
	atomic_long cur;	/* the fault the faulting thread is making */
	atomic_long ready;	/* the handler has prepared fault ready's source */
	atomic_long msgs;	/* fault messages read (before the resolve wakes) */
	atomic_long handled, eexist, eagain;
	atomic_long dups;	/* a second message for the fault just resolved */
	atomic_long spurious;	/* uring: CQEs without a message (-EINTR, -EAGAIN) */
	atomic_bool stop, hdone;
	atomic_bool herr_set;
	char herr[160];
};

#define lerr(l, ...) us_seterr(&(l)->herr_set, (l)->herr, sizeof((l)->herr), __VA_ARGS__)

/* buf holds fault i's content when the faulting thread may make fault i */
static void lat_prepare(struct lctl *l, char *buf, long i)
{
	if (l->res == L_COPY && i < (long)l->npages)
		us_pattern(buf, l->psize, (size_t)i, l->seed);
	atomic_store(&l->ready, i);
}

static int resolve(struct lctl *l, int uffd, char *buf, size_t pg)
{
	uintptr_t dst = l->base + pg * l->psize;
	size_t len = l->psize;

	switch (l->res) {
	case L_COPY: {
		struct uffdio_copy a = { .dst = dst, .src = (uintptr_t)buf, .len = len };
		return ioctl(uffd, UFFDIO_COPY, &a);
	}
	case L_ZEROPAGE: {
		struct uffdio_zeropage a = { .range = { dst, len } };
		return ioctl(uffd, UFFDIO_ZEROPAGE, &a);
	}
	case L_CONTINUE: {
		struct uffdio_continue a = { .range = { dst, len } };
		return ioctl(uffd, UFFDIO_CONTINUE, &a);
	}
	case L_MOVE: {
		struct uffdio_move a = { .dst = dst, .src = l->src + pg * len, .len = len };
		return ioctl(uffd, UFFDIO_MOVE, &a);
	}
	case L_WP: {
		struct uffdio_writeprotect a = { .range = { dst, len }, .mode = 0 };
		return ioctl(uffd, UFFDIO_WRITEPROTECT, &a);
	}
	}
	errno = EINVAL;
	return -1;
}

static void lat_msg(struct lctl *l, int uffd, char *buf, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uint64_t fl = msg->arg.pagefault.flags, want;
	long i = atomic_load(&l->cur);
	size_t pg;
	int tries = 0;

	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		lerr(l, "unexpected event 0x%x", msg->event);
		return;
	}
	if (addr < l->base || addr >= l->base + l->nmap * l->psize) {
		lerr(l, "fault at 0x%lx, outside the area", (unsigned long)addr);
		return;
	}
	pg = (addr - l->base) / l->psize;
	/*
	 * A second message for the fault just resolved: a faulting thread woken
	 * before its message was read retries and queues another (seen once
	 * in a few thousand runs on hugetlb-shared under load).  Its page is
	 * in place; wake the range in case a thread still waits on it.
	 */
	long h = atomic_load(&l->handled);

	if (h > 0 && pg == (size_t)(h - 1) % l->nmap && (i == h - 1 || (i == h && l->nmap > 1))) {
		struct uffdio_range w = { l->base + pg * l->psize, l->psize };

		ioctl(uffd, UFFDIO_WAKE, &w);
		atomic_fetch_add(&l->dups, 1);
		return;
	}
	atomic_fetch_add(&l->msgs, 1);
	/* one fault in flight: this is fault i, the one the handler prepared */
	if (i != atomic_load(&l->handled) || i != atomic_load(&l->ready) || pg != (size_t)i % l->nmap) {
		lerr(l, "fault on page %zu, but fault %ld (page %zu) is being made, %ld handled, "
		     "%ld prepared", pg, i, (size_t)i % l->nmap, atomic_load(&l->handled),
		     atomic_load(&l->ready));
		return;
	}
	want = l->res == L_WP ? UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE :
	       l->res == L_CONTINUE ? UFFD_PAGEFAULT_FLAG_MINOR : 0;
	if ((fl & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR | want)) != want) {
		lerr(l, "page %zu: fault flags 0x%llx, want 0x%llx", pg, (unsigned long long)fl,
		     (unsigned long long)want);
		return;
	}
	while (resolve(l, uffd, buf, pg) < 0) {
		if (errno == EAGAIN && ++tries < 1000) {
			atomic_fetch_add(&l->eagain, 1);
			continue;
		}
		/*
		 * hugetlb: a dropped private page's reservation is not given
		 * back, so the next COPY needs a free huge page, which a run
		 * beside this one may hold for a while: wait up to 1 s
		 */
		if (errno == ENOMEM && l->huge && ++tries < 1000) {
			usleep(1000);
			continue;
		}
		if (errno == ENOMEM && l->huge) {
			atomic_store(&l->nomem, true);
			lerr(l, "UFFDIO_%s page %zu: no free huge page for 1 s", res_names[l->res],
			     pg);
			return;
		}
		if (errno != EEXIST) {
			lerr(l, "UFFDIO_%s page %zu: %s", res_names[l->res], pg, strerror(errno));
			return;
		}
		/* not expected with one fault in flight, but it must not hang */
		struct uffdio_range w = { l->base + pg * l->psize, l->psize };

		atomic_fetch_add(&l->eexist, 1);
		ioctl(uffd, UFFDIO_WAKE, &w);
		break;
	}
	atomic_fetch_add(&l->handled, 1);
	lat_prepare(l, buf, i + 1);
}

static bool lat_over(struct lctl *l, pid_t parent)
{
	return atomic_load(&l->stop) || atomic_load(&l->herr_set) ||
	       atomic_load(&l->handled) >= (long)l->npages || (parent && getppid() != parent);
}

/* read until EAGAIN (O_NONBLOCK uffd) */
static int lat_drain(struct lctl *l, int uffd, char *buf)
{
	struct uffd_msg m;

	for (;;) {
		ssize_t n = read(uffd, &m, sizeof(m));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n != sizeof(m)) {
			lerr(l, "read uffd: %zd (%s)", n, n < 0 ? strerror(errno) : "short");
			return -1;
		}
		lat_msg(l, uffd, buf, &m);
	}
}

/* the handler: thread or process; parent is non-zero in a handler process */
static void lat_handler_loop(struct lctl *l, int uffd, pid_t parent)
{
	char *buf = aligned_alloc(4096, l->psize);
	struct io_uring ring;
	struct uffd_msg m;
	int epfd = -1, ret;
	bool armed = false;

	if (!buf) {
		lerr(l, "out of memory");
		goto out;
	}
	lat_prepare(l, buf, 0);
	if (l->path == US_LAT_EPOLL) {
		struct epoll_event ev = { .events = EPOLLIN };

		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, uffd, &ev) < 0) {
			lerr(l, "epoll on the uffd: %s", strerror(errno));
			goto out;
		}
	}
	if (l->path == US_LAT_URING) {
		ret = io_uring_queue_init(4, &ring, 0);
		if (ret < 0) {
			lerr(l, "io_uring_queue_init: %s", strerror(-ret));
			goto out;
		}
	}
	while (!lat_over(l, parent)) {
		switch (l->path) {
		case US_LAT_READ: {
			/* blocking: the last fault is the last message, then we stop */
			ssize_t n = read(uffd, &m, sizeof(m));

			if (n < 0 && errno == EINTR)
				break;
			if (n != sizeof(m)) {
				lerr(l, "read uffd: %zd (%s)", n, n < 0 ? strerror(errno) : "short");
				goto out;
			}
			lat_msg(l, uffd, buf, &m);
			break;
		}
		case US_LAT_POLL: {
			struct pollfd p = { .fd = uffd, .events = POLLIN };

			ret = poll(&p, 1, 100);
			if (ret < 0 && errno != EINTR) {
				lerr(l, "poll: %s", strerror(errno));
				goto out;
			}
			if (ret > 0 && lat_drain(l, uffd, buf) < 0)
				goto out;
			break;
		}
		case US_LAT_EPOLL: {
			struct epoll_event ev;

			ret = epoll_wait(epfd, &ev, 1, 100);
			if (ret < 0 && errno != EINTR) {
				lerr(l, "epoll_wait: %s", strerror(errno));
				goto out;
			}
			if (ret > 0 && lat_drain(l, uffd, buf) < 0)
				goto out;
			break;
		}
		case US_LAT_URING: {
			struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000000 };
			struct io_uring_cqe *cqe;
			int res;

			if (!armed) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				io_uring_prep_read(sqe, uffd, &m, sizeof(m), 0);
				ret = io_uring_submit(&ring);
				if (ret != 1) {
					lerr(l, "io_uring_submit: %s",
					     ret < 0 ? strerror(-ret) : "0 SQEs");
					goto out_ring;
				}
				armed = true;
			}
			ret = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
			if (ret == -ETIME || ret == -EINTR)
				break;
			if (ret < 0) {
				lerr(l, "io_uring_wait_cqe: %s", strerror(-ret));
				goto out_ring;
			}
			res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			armed = false;
			if (res == -EINTR || res == -EAGAIN) {
				/* -EAGAIN: this kernel does not park reads of an
				 * O_NONBLOCK uffd; wait for one with poll */
				struct pollfd p = { .fd = uffd, .events = POLLIN };

				atomic_fetch_add(&l->spurious, 1);
				if (res == -EAGAIN)
					poll(&p, 1, 100);
				break;
			}
			if (res != sizeof(m)) {
				lerr(l, "IORING_OP_READ uffd: %d (%s)", res,
				     res < 0 ? strerror(-res) : "short");
				goto out_ring;
			}
			lat_msg(l, uffd, buf, &m);
			break;
		}
		}
	}
out_ring:
	if (l->path == US_LAT_URING)
		io_uring_queue_exit(&ring); /* cancels a read still armed */
out:
	if (epfd >= 0)
		close(epfd);
	free(buf);
	atomic_store(&l->hdone, true);
}

struct lrun {
	struct lctl *l;
	int uffd;
	enum us_kind kind;
	int memfd;		/* the area's memfd, or -1 */
	char *alias;		/* continue: the page cache through a second mapping */
	pid_t ftid;
	atomic_size_t at;
	atomic_bool fdone;
	uint32_t *lat;
	char ferr[160];
};

static void *lat_handler_thread(void *arg)
{
	struct lrun *r = arg;

	lat_handler_loop(r->l, r->uffd, 0);
	return NULL;
}

/*
 * Make page pg fault again for fault next: drop it (MISSING rows), drop only
 * its pte and give the page cache next's content (continue), or protect it
 * again (wp).  0 or -errno.
 */
static int lat_recycle(struct lrun *r, size_t pg, size_t next)
{
	struct lctl *l = r->l;
	char *page = (char *)l->base + pg * l->psize;

	switch (l->res) {
	case L_WP: {
		struct uffdio_writeprotect wp = { .range = { (uintptr_t)page, l->psize },
						  .mode = UFFDIO_WRITEPROTECT_MODE_WP };

		return ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
	}
	case L_CONTINUE:
		/* MAP_SHARED: DONTNEED zaps the pte, the page cache keeps the page */
		if (madvise(page, l->psize, MADV_DONTNEED) < 0)
			return -errno;
		us_pattern(r->alias + pg * l->psize, l->psize, next, l->seed);
		return 0;
	default:
		/* on a shared mapping DONTNEED would leave the page in the page
		 * cache: the next access would find it, no MISSING fault */
		if (r->memfd >= 0 && r->kind != US_SHMEM_PRIVATE)
			return fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					 (off_t)(pg * l->psize), (off_t)l->psize) < 0 ? -errno : 0;
		return madvise(page, l->psize, MADV_DONTNEED) < 0 ? -errno : 0;
	}
}

static void *lat_faulter(void *arg)
{
	struct lrun *r = arg;
	struct lctl *l = r->l;
	size_t ps = l->psize, bad;
	int ret;

	r->ftid = (pid_t)syscall(SYS_gettid);
	for (size_t i = 0; i < l->npages && !atomic_load(&l->herr_set); i++) {
		size_t pg = i % l->nmap;
		char *page = (char *)l->base + pg * ps;
		volatile uint64_t *w = (volatile uint64_t *)page + 1;
		uint64_t v = 0, t0, wait0 = us_now_us();
		/* wp leaves the content alone: the page keeps its first pattern */
		size_t want = l->res == L_WP ? pg : i;

		atomic_store(&r->at, i);
		/* not timed: the handler prepares fault i's source page */
		for (unsigned n = 0; atomic_load(&l->ready) < (long)i; n++) {
			if (atomic_load(&l->herr_set))
				goto out;
			if (!(n & 63) && us_now_us() - wait0 > 2000000) {
				snprintf(r->ferr, sizeof(r->ferr),
					 "handler not ready for fault %zu after 2000 ms", i);
				goto out;
			}
			sched_yield();
		}
		atomic_store(&l->cur, (long)i);
		if (l->res == L_WP)
			v = *w; /* present and readable: no fault */
		t0 = us_now_ns();
		if (l->res == L_WP)
			*w = v; /* the write traps */
		else
			(void)*w;
		r->lat[i] = (uint32_t)(us_now_ns() - t0);
		if (atomic_load(&l->msgs) != (long)i + 1) {
			snprintf(r->ferr, sizeof(r->ferr),
				 "fault %zu (page %zu): the access completed with %ld messages read%s",
				 i, pg, atomic_load(&l->msgs),
				 i >= l->nmap ? " (the recycled page did not fault)" : "");
			goto out;
		}
		if (l->res == L_ZEROPAGE) {
			for (size_t b = 0; b < ps; b += 8)
				if (*(uint64_t *)(page + b)) {
					snprintf(r->ferr, sizeof(r->ferr),
						 "fault %zu (page %zu): byte %zu not zero", i, pg, b);
					goto out;
				}
		} else if ((bad = us_pattern_check(page, ps, want, l->seed))) {
			snprintf(r->ferr, sizeof(r->ferr),
				 "fault %zu (page %zu): content wrong at byte %zu%s", i, pg, bad - 1,
				 i >= l->nmap ? " (stale: the page was recycled)" : "");
			goto out;
		}
		if (i + l->nmap < l->npages && l->nmap < l->npages &&
		    (ret = lat_recycle(r, pg, i + l->nmap)) < 0) {
			snprintf(r->ferr, sizeof(r->ferr), "recycling page %zu after fault %zu: %s",
				 pg, i, strerror(-ret));
			goto out;
		}
	}
out:
	atomic_store(&r->fdone, true);
	return NULL;
}

static void __attribute__((noreturn)) lat_proc_child(struct lctl *l, int sock, pid_t parent)
{
	int uffd = us_recv_fd(sock, 5000);

	if (uffd < 0) {
		lerr(l, "handler process: no uffd received: %s", strerror(-uffd));
		_exit(1);
	}
	lat_handler_loop(l, uffd, parent);
	_exit(0);
}

static int run_lat(struct us_ctx *ctx, enum lres res, bool proc)
{
	enum us_lat_path path = (enum us_lat_path)ctx->c->arg;
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	bool nonblock = path != US_LAT_READ;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	unsigned watchdog_ms = ctx->quick ? 5000 : 20000;
	struct us_area a = { .memfd = -1 };
	struct lrun r = { 0 };
	struct lctl *l;
	pthread_t ht = 0, ft;
	int ret, rc = US_PASS, sv[2];
	pid_t hpid = 0;
	char *src = NULL;
	uint64_t t0;

	l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (l == MAP_FAILED)
		return us_fail(ctx, "mmap: %s", strerror(errno));
	l->res = res;
	l->path = path;
	l->npages = us_opt_faults ? us_opt_faults : ctx->quick ? 200 : 2000;
	if (huge) {
		/* each fault copies / checks 2 MiB: a tenth of the faults */
		l->npages = us_opt_faults ? (us_opt_faults + 9) / 10 : ctx->quick ? 32 : 200;
		l->nmap = l->npages < LAT_HUGE_PAGES ? l->npages : LAT_HUGE_PAGES;
	} else {
		l->nmap = l->npages;
	}
	l->huge = huge;
	atomic_store(&l->cur, -1);
	atomic_store(&l->ready, -1);
	l->seed = 0x1a7e0000ULL + (uint64_t)res * 5 + path;
	r.l = l;
	r.lat = calloc(l->npages, sizeof(*r.lat));
	if (!r.lat)
		return us_fail(ctx, "out of memory");
	if (proc) {
		/* before anything is mapped or registered: the handler shares nothing else */
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			return us_fail(ctx, "socketpair: %s", strerror(errno));
		hpid = us_fork_helper();
		if (hpid < 0)
			return us_fail(ctx, "fork: %s", strerror((int)-hpid));
		if (hpid == 0) {
			close(sv[0]);
			lat_proc_child(l, sv[1], getppid());
		}
		close(sv[1]);
	}
	ret = us_area_map(&a, ctx->kind, l->nmap, res == L_CONTINUE);
	if (ret == -ENOMEM && huge) {
		rc = us_skip(ctx, "no free huge pages (%zu needed)", l->nmap);
		goto out;
	}
	if (ret < 0) {
		rc = us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
		goto out;
	}
	l->base = (uintptr_t)a.p;
	l->psize = a.psize;
	r.kind = ctx->kind;
	r.memfd = a.memfd;
	r.alias = a.alias;
	switch (res) {
	case L_CONTINUE: /* the page cache holds the content, the mapping has no pte */
		for (size_t pg = 0; pg < l->nmap; pg++)
			us_pattern(a.alias + pg * a.psize, a.psize, pg, l->seed);
		break;
	case L_MOVE:
		src = mmap(NULL, a.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (src == MAP_FAILED) {
			src = NULL;
			rc = us_fail(ctx, "mmap source: %s", strerror(errno));
			goto out;
		}
		madvise(src, a.len, MADV_NOHUGEPAGE);
		for (size_t pg = 0; pg < l->nmap; pg++)
			us_pattern(src + pg * a.psize, a.psize, pg, l->seed);
		l->src = (uintptr_t)src;
		break;
	case L_WP: /* populated before it is protected */
		for (size_t pg = 0; pg < l->nmap; pg++)
			us_pattern(a.p + pg * a.psize, a.psize, pg, l->seed);
		break;
	default:
		break;
	}
	r.uffd = us_uffd_open(feats, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
	if (r.uffd < 0) {
		rc = us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			     strerror(-r.uffd));
		goto out;
	}
	struct uffdio_register reg = { .range = { l->base, a.len }, .mode = ctx->c->mode };

	if (ioctl(r.uffd, UFFDIO_REGISTER, &reg) < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			     strerror(errno));
		goto out;
	}
	if (res == L_WP) {
		struct uffdio_writeprotect wp = { .range = { l->base, a.len },
						  .mode = UFFDIO_WRITEPROTECT_MODE_WP };

		if (ioctl(r.uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
			rc = us_fail(ctx, "UFFDIO_WRITEPROTECT_MODE_WP: %s", strerror(errno));
			goto out;
		}
	}
	if (res == L_MOVE && ctx->kind != US_ANON) {
		/*
		 * The MISSING registration's ioctls offer MOVE on shmem (here
		 * 0x13c) but the ioctl moves anon pages only (EINVAL): only
		 * trying finds out.  No fault is pending: a move into the
		 * missing page 0, undone if it works.
		 */
		struct uffdio_move mv = { .dst = l->base, .src = l->src, .len = l->psize };

		if (ioctl(r.uffd, UFFDIO_MOVE, &mv) < 0) {
			if (errno == EINVAL)
				rc = us_skip(ctx, "UFFDIO_MOVE refused on %s (EINVAL), though its "
					     "registration offers it", us_kind_name(ctx->kind));
			else
				rc = us_fail(ctx, "UFFDIO_MOVE into page 0: %s", strerror(errno));
			goto out;
		}
		ret = lat_recycle(&r, 0, 0);
		if (ret < 0) {
			rc = us_fail(ctx, "dropping page 0 after a trial move: %s", strerror(-ret));
			goto out;
		}
		us_pattern(src, l->psize, 0, l->seed);
	}
	if (path == US_LAT_URING) {
		/* find out here rather than in the handler that io_uring is refused */
		struct io_uring ring;

		ret = io_uring_queue_init(4, &ring, 0);
		if (ret == -ENOSYS || ret == -EPERM) {
			rc = us_skip(ctx, "io_uring unavailable: %s", strerror(-ret));
			goto out;
		}
		if (ret == 0)
			io_uring_queue_exit(&ring);
	}
	if (proc) {
		ret = us_send_fd(sv[0], r.uffd);
		if (ret < 0) {
			rc = us_fail(ctx, "send the uffd: %s", strerror(-ret));
			goto out;
		}
	} else if (pthread_create(&ht, NULL, lat_handler_thread, &r)) {
		rc = us_fail(ctx, "pthread_create handler");
		goto out;
	}
	t0 = us_now_us();
	if (pthread_create(&ft, NULL, lat_faulter, &r)) {
		rc = us_fail(ctx, "pthread_create faulting thread");
		goto out;
	}
	while (!atomic_load(&r.fdone) && !atomic_load(&l->nomem) &&
	       us_now_us() - t0 < watchdog_ms * 1000ULL)
		usleep(1000);
	if (atomic_load(&l->nomem)) {
		/* the faulting thread is left blocked: the case's exit ends it */
		rc = us_skip(ctx, "no free huge pages (%s)", l->herr);
		goto out;
	}
	if (!atomic_load(&r.fdone)) {
		/* a lost wakeup: leave the threads, the child exits with them */
		rc = us_fail(ctx, "faulting thread still blocked after %u ms on fault %zu of %zu "
			     "(state %c), %ld faults handled%s%s%s", watchdog_ms,
			     atomic_load(&r.at), l->npages, us_thread_state(r.ftid),
			     atomic_load(&l->handled), atomic_load(&l->herr_set) ? "; handler: " : "",
			     atomic_load(&l->herr_set) ? l->herr : "",
			     proc && waitpid(hpid, NULL, WNOHANG) == hpid ? " (handler process gone)" : "");
		goto out;
	}
	uint64_t elapsed = us_now_us() - t0;

	pthread_join(ft, NULL);
	if (r.ferr[0]) { /* the handler may wait for faults that will not come */
		rc = us_fail(ctx, "%s", r.ferr);
		goto out;
	}
	atomic_store(&l->stop, true);
	if (proc) {
		ret = us_reap(hpid, 2000);
		hpid = 0;
		if (ret == -ETIMEDOUT) {
			rc = us_fail(ctx, "the handler process did not stop within 2 s");
			goto out;
		}
	} else {
		uint64_t j0 = us_now_us();

		/* a blocking read(2) ends with the last message; the others poll */
		while (!atomic_load(&l->hdone) && us_now_us() - j0 < 2000000)
			usleep(1000);
		if (!atomic_load(&l->hdone)) {
			rc = us_fail(ctx, "the handler did not stop within 2 s");
			goto out;
		}
		pthread_join(ht, NULL);
	}
	if (atomic_load(&l->herr_set)) {
		rc = us_fail(ctx, "handler: %s", l->herr);
		goto out;
	}
	if (atomic_load(&l->handled) != (long)l->npages) {
		rc = us_fail(ctx, "%ld faults handled for %zu faults made (one message each)",
			     atomic_load(&l->handled), l->npages);
		goto out;
	}
	if (res == L_MOVE)
		for (size_t i = 0; i < a.len; i += 8)
			if (*(uint64_t *)(src + i)) {
				rc = us_fail(ctx, "MOVE source byte %zu not zero after the move", i);
				goto out;
			}

	struct us_lat s;

	us_lat_summary(r.lat, l->npages, &s);
	us_diag("%s/%s/%s: %s, %s%s: %zu faults on %zu pages, round trip us p50 %.1f p99 %.1f "
		"p999 %.1f max %.1f mean %.1f", ctx->c->cat, ctx->c->name,
		us_kind_name(ctx->kind), res_names[res], path_names[path],
		proc ? " in another process" : "", l->npages, l->nmap, s.p50, s.p99, s.p999, s.max,
		s.mean);
	us_metric(ctx, "faults", (double)l->npages);
	us_metric(ctx, "pages", (double)l->nmap);
	us_metric(ctx, "p50_us", s.p50);
	us_metric(ctx, "p99_us", s.p99);
	us_metric(ctx, "p999_us", s.p999);
	us_metric(ctx, "max_us", s.max);
	us_metric(ctx, "mean_us", s.mean);
	us_metric(ctx, "eexist", (double)atomic_load(&l->eexist));
	us_metric(ctx, "eagain", (double)atomic_load(&l->eagain));
	if (path == US_LAT_URING)
		us_metric(ctx, "spurious_cqes", (double)atomic_load(&l->spurious));
	us_metric(ctx, "dup_msgs", (double)atomic_load(&l->dups));
	us_metric(ctx, "elapsed_us", (double)elapsed);
out:
	if (hpid > 0)
		us_reap(hpid, 100);
	/* after a failure threads may be blocked: the case's exit ends them */
	return rc;
}

int us_case_lat_copy(struct us_ctx *ctx)
{
	return run_lat(ctx, L_COPY, false);
}

int us_case_lat_zeropage(struct us_ctx *ctx)
{
	return run_lat(ctx, L_ZEROPAGE, false);
}

int us_case_lat_continue(struct us_ctx *ctx)
{
	return run_lat(ctx, L_CONTINUE, false);
}

int us_case_lat_move(struct us_ctx *ctx)
{
	return run_lat(ctx, L_MOVE, false);
}

int us_case_lat_wp(struct us_ctx *ctx)
{
	return run_lat(ctx, L_WP, false);
}

int us_case_lat_copy_proc(struct us_ctx *ctx)
{
	return run_lat(ctx, L_COPY, true);
}
