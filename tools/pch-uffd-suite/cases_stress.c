// SPDX-License-Identifier: MIT
/*
 * cases_stress.c - the stress/ cases: a bounce run in the spirit of the
 * kernel's uffd-stress, with our own shape.
 *
 * T faulting threads touch the P pages of an area for a set time, in rounds.
 * Each round the area is emptied (MADV_DONTNEED on private kinds, a punched
 * hole in the memfd on shared ones) and the content every page must come back
 * with changes (pattern seeded by page and round), so a page left over from
 * an earlier round, or resolved with an earlier round's data, is caught.
 * Thread t touches the pages p % T == t plus every 8th page (touched by all
 * threads: concurrent faults on one page, duplicate messages, EEXIST + WAKE),
 * in a random order each round, and checks every byte of every page.
 *
 *   bounce:       handler threads in this process, poll + read (O_NONBLOCK)
 *   bounce-proc:  the handler is another process, given the uffd over
 *                 SCM_RIGHTS; it UFFDIO_COPYs from its own memory
 *   bounce-uring: one handler thread reading batches with IORING_OP_READ
 *                 (O_NONBLOCK uffd: io_uring parks the read on its poll)
 *
 * The round switch is ordered against the handlers with a per-handler
 * sequence count (odd while it holds messages): the round is bumped first,
 * then the switch waits for every handler to be outside a batch, then the
 * area is emptied; a handler reads the round after making its count odd, so
 * a late message from the last round is resolved with the new round's data
 * (or lands before the emptying), never the old data into the new round.
 *
 * Also here: helpers for cases with a handler process (cases_lat.c uses them).
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

/* ---- helpers shared with cases_lat.c ---- */

uint64_t us_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

pid_t us_fork_helper(void)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid != 0)
		return pid < 0 ? -errno : pid;
	/* dies with the case; the parent may already be gone */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	return 0;
}

int us_reap(pid_t pid, unsigned timeout_ms)
{
	uint64_t t0 = us_now_us();
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			return status;
		if (w < 0)
			return -errno;
		if (us_now_us() - t0 >= timeout_ms * 1000ULL)
			break;
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -ETIMEDOUT;
}

int us_send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, b = 'F';
	struct iovec iov = { &b, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

int us_recv_fd(int sock, unsigned timeout_ms)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, b;
	struct iovec iov = { &b, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct pollfd p = { .fd = sock, .events = POLLIN };
	struct cmsghdr *cm;
	int fd, ret;

	ret = poll(&p, 1, (int)timeout_ms);
	if (ret <= 0)
		return ret < 0 ? -errno : -ETIMEDOUT;
	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
		return -EPROTO;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
		return -EPROTO;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void us_lat_summary(uint32_t *ns, size_t n, struct us_lat *out)
{
	double sum = 0;

	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	qsort(ns, n, sizeof(ns[0]), cmp_u32);
	for (size_t i = 0; i < n; i++)
		sum += ns[i];
	/* nearest rank: the smallest value with at least q of the samples at or below it */
#define RANK(q) (ns[(size_t)((double)(n - 1) * (q) + 0.5)] / 1000.0)
	out->p50 = RANK(0.50);
	out->p99 = RANK(0.99);
	out->p999 = RANK(0.999);
#undef RANK
	out->max = ns[n - 1] / 1000.0;
	out->mean = sum / (double)n / 1000.0;
}

/* ---- the bounce run ---- */

enum smode { S_POLL, S_PROC, S_URING };

#define MAXT 32		/* faulting threads */
#define MAXH 2		/* handler threads */
#define BATCH 16	/* messages per read */
#define SHARED_EVERY 8	/* every 8th page is touched by all threads */

/* seen by the handler process too: lives in a MAP_SHARED mapping */
struct sshared {
	_Atomic uint64_t round;		/* the pattern's round */
	_Atomic uint64_t hseq[MAXH];	/* odd while handler i holds messages */
	atomic_bool stop;
	atomic_long msgs, copies, eexist, eagain, reads;
	atomic_bool herr_set;
	char herr[160];
	uintptr_t base;
	size_t psize, npages;
	uint64_t seed;
	unsigned nhandlers;
	_Atomic uint32_t done_round[];	/* per page: round it was last resolved in */
};

struct srun {
	struct us_ctx *ctx;
	enum smode mode;
	struct us_area a;
	struct sshared *sh;
	size_t shlen;
	int uffd;
	unsigned nthreads;
	/* faulting threads */
	atomic_uint go;			/* round the threads may run */
	atomic_uint fdone;		/* threads done with the round */
	atomic_bool fstop;
	atomic_bool ferr_set;
	char ferr[200];
	struct io_uring ring;
};

struct sthr {
	struct srun *r;
	unsigned idx;
	pthread_t t;
	pid_t tid;
	atomic_size_t at;
	atomic_uint round;	/* round finished */
	uint32_t *lat;		/* ns per touch that faulted */
	size_t nlat, cap;
	bool oom;
};

static uint64_t round_seed(const struct sshared *sh, uint64_t round)
{
	return sh->seed ^ (round * 0x9e3779b97f4a7c15ULL);
}

#define sherr(sh, ...) us_seterr(&(sh)->herr_set, (sh)->herr, sizeof((sh)->herr), __VA_ARGS__)

/* resolve one message with UFFDIO_COPY of the current round's page */
static void bounce_msg(struct sshared *sh, int uffd, char *buf, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	size_t ps = sh->psize, pg;
	uint64_t round;
	int ret, tries = 0;

	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		sherr(sh, "unexpected event 0x%x", msg->event);
		return;
	}
	if (addr < sh->base || addr >= sh->base + sh->npages * ps) {
		sherr(sh, "fault at 0x%lx, outside the area", (unsigned long)addr);
		return;
	}
	if (msg->arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)) {
		sherr(sh, "fault flags 0x%llx for a MISSING fault",
		      (unsigned long long)msg->arg.pagefault.flags);
		return;
	}
	atomic_fetch_add(&sh->msgs, 1);
	pg = (addr - sh->base) / ps;
	/* read after our sequence count went odd: see the top of the file */
	round = atomic_load(&sh->round);
	us_pattern(buf, ps, pg, round_seed(sh, round));
	struct uffdio_copy c = { .dst = sh->base + pg * ps, .src = (uintptr_t)buf, .len = ps };

	while ((ret = ioctl(uffd, UFFDIO_COPY, &c)) < 0 && errno == EAGAIN && ++tries < 1000) {
		atomic_fetch_add(&sh->eagain, 1);
		c.copy = 0;
	}
	if (ret == 0) {
		atomic_fetch_add(&sh->copies, 1);
		atomic_store(&sh->done_round[pg], (uint32_t)round);
		return;
	}
	if (errno != EEXIST) {
		sherr(sh, "UFFDIO_COPY page %zu: %s", pg, strerror(errno));
		return;
	}
	/* someone else resolved it: the kernel woke nobody for us */
	atomic_fetch_add(&sh->eexist, 1);
	struct uffdio_range w = { c.dst, ps };

	if (ioctl(uffd, UFFDIO_WAKE, &w) < 0)
		sherr(sh, "UFFDIO_WAKE page %zu: %s", pg, strerror(errno));
}

static void bounce_batch(struct sshared *sh, int uffd, char *buf, const struct uffd_msg *m,
			 ssize_t n)
{
	if (n <= 0 || n % (ssize_t)sizeof(m[0])) {
		sherr(sh, "read returned %zd bytes", n);
		return;
	}
	atomic_fetch_add(&sh->reads, 1);
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++)
		bounce_msg(sh, uffd, buf, &m[i]);
}

/* poll + read until stopped (or, in a handler process, orphaned) */
static void bounce_poll_loop(struct sshared *sh, int uffd, unsigned me, pid_t parent)
{
	struct uffd_msg m[BATCH];
	char *buf = aligned_alloc(4096, sh->psize);

	if (!buf) {
		sherr(sh, "out of memory");
		return;
	}
	while (!atomic_load(&sh->stop)) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		int ret = poll(&p, 1, 100);

		if (parent && getppid() != parent)
			break;
		if (ret < 0 && errno != EINTR) {
			sherr(sh, "poll: %s", strerror(errno));
			break;
		}
		if (ret <= 0)
			continue;
		if (p.revents & (POLLERR | POLLNVAL)) {
			sherr(sh, "poll uffd revents 0x%x", p.revents);
			break;
		}
		atomic_fetch_add(&sh->hseq[me], 1); /* odd: holding messages */
		for (;;) {
			ssize_t n = read(uffd, m, sizeof(m));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) {
				sherr(sh, "read uffd: %s", strerror(errno));
				break;
			}
			bounce_batch(sh, uffd, buf, m, n);
		}
		atomic_fetch_add(&sh->hseq[me], 1);
	}
	free(buf);
}

struct hthr {
	struct srun *r;
	unsigned idx;
	pthread_t t;
	atomic_bool done;
};

static void *bounce_handler(void *arg)
{
	struct hthr *h = arg;
	struct srun *r = h->r;
	struct sshared *sh = r->sh;

	if (r->mode == S_POLL) {
		bounce_poll_loop(sh, r->uffd, h->idx, 0);
		goto out;
	}
	/* S_URING: one IORING_OP_READ of up to BATCH messages armed at a time */
	struct uffd_msg m[BATCH];
	char *buf = aligned_alloc(4096, sh->psize);
	bool armed = false;

	if (!buf) {
		sherr(sh, "out of memory");
		goto out;
	}
	while (!atomic_load(&sh->stop)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000000 };
		struct io_uring_cqe *cqe;
		int ret, res;

		if (!armed) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

			if (!sqe) {
				sherr(sh, "io_uring: no SQE");
				break;
			}
			io_uring_prep_read(sqe, r->uffd, m, sizeof(m), 0);
			io_uring_sqe_set_data64(sqe, 1);
			ret = io_uring_submit(&r->ring);
			if (ret != 1) {
				sherr(sh, "io_uring_submit: %s", ret < 0 ? strerror(-ret) : "0 SQEs");
				break;
			}
			armed = true;
		}
		ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
		if (ret == -ETIME || ret == -EINTR)
			continue;
		if (ret < 0) {
			sherr(sh, "io_uring_wait_cqe: %s", strerror(-ret));
			break;
		}
		atomic_fetch_add(&sh->hseq[h->idx], 1);
		res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		armed = false;
		if (res < 0 && res != -EINTR && res != -EAGAIN)
			sherr(sh, "IORING_OP_READ uffd: %s", strerror(-res));
		else if (res >= 0)
			bounce_batch(sh, r->uffd, buf, m, res);
		atomic_fetch_add(&sh->hseq[h->idx], 1);
		if (res == -EAGAIN) {
			/* a kernel that does not park reads of an O_NONBLOCK uffd */
			struct pollfd p = { .fd = r->uffd, .events = POLLIN };

			poll(&p, 1, 100);
		} else if (res < 0 && res != -EINTR) {
			break;
		}
	}
	/* a read still armed is cancelled by io_uring_queue_exit */
	free(buf);
out:
	atomic_store(&h->done, true);
	return NULL;
}

#define ferr(r, ...) us_seterr(&(r)->ferr_set, (r)->ferr, sizeof((r)->ferr), __VA_ARGS__)

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *bounce_faulter(void *arg)
{
	struct sthr *t = arg;
	struct srun *r = t->r;
	struct sshared *sh = r->sh;
	size_t ps = sh->psize, n = 0, *order;
	unsigned done = 0;

	t->tid = (pid_t)syscall(SYS_gettid);
	order = calloc(sh->npages, sizeof(*order));
	if (!order) {
		ferr(r, "thread %u: out of memory", t->idx);
		goto out;
	}
	for (size_t pg = 0; pg < sh->npages; pg++)
		if (pg % r->nthreads == t->idx || pg % SHARED_EVERY == 0)
			order[n++] = pg;
	for (;;) {
		unsigned round;

		while ((round = atomic_load(&r->go)) == done && !atomic_load(&r->fstop))
			usleep(20);
		if (atomic_load(&r->fstop))
			break;
		uint64_t rs = ((uint64_t)t->idx << 32 | round) * 0x2545f4914f6cdd1dULL + 1;
		uint64_t seed = round_seed(sh, round);

		for (size_t i = n - 1; i > 0; i--) { /* a new order every round */
			size_t j = xorshift(&rs) % (i + 1), tmp = order[i];

			order[i] = order[j];
			order[j] = tmp;
		}
		for (size_t i = 0; i < n && !atomic_load(&r->ferr_set); i++) {
			size_t pg = order[i], bad;
			char *page = (char *)sh->base + pg * ps;
			bool resolved = atomic_load(&sh->done_round[pg]) == round;
			uint64_t t0;
			uint32_t dt;

			atomic_store(&t->at, pg);
			t0 = us_now_ns();
			(void)*(volatile uint64_t *)page;
			dt = (uint32_t)(us_now_ns() - t0);
			/* a page the handler had already resolved this round did not fault */
			if (!resolved) {
				if (t->nlat == t->cap) {
					size_t cap = t->cap ? t->cap * 2 : 4096;
					uint32_t *l = realloc(t->lat, cap * sizeof(*l));

					if (!l) {
						t->oom = true;
						continue;
					}
					t->lat = l;
					t->cap = cap;
				}
				t->lat[t->nlat++] = dt;
			}
			if ((bad = us_pattern_check(page, ps, pg, seed))) {
				bool stale = round > 1 &&
					!us_pattern_check(page, ps, pg, round_seed(sh, round - 1));

				ferr(r, "round %u page %zu: content wrong at byte %zu%s", round, pg,
				     bad - 1, stale ? " (the last round's data: stale)" : "");
			}
		}
		done = round;
		atomic_store(&t->round, round);
		atomic_fetch_add(&r->fdone, 1);
	}
	free(order);
out:
	atomic_store(&t->round, ~0u);
	return NULL;
}

/* wait until no handler holds messages; 0 or -1 after a deadline */
static int handlers_idle(struct sshared *sh)
{
	uint64_t seq[MAXH], t0 = us_now_us();

	for (unsigned i = 0; i < sh->nhandlers; i++) {
		while ((seq[i] = atomic_load(&sh->hseq[i])) & 1) {
			if (us_now_us() - t0 > 2000000)
				return -1;
			sched_yield();
		}
	}
	return 0;
}

/* empty the area for the next round */
static int empty_area(struct srun *r)
{
	struct us_area *a = &r->a;

	if (a->kind == US_SHMEM || a->kind == US_HUGETLB_SHARED) {
		if (fallocate(a->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      (off_t)a->len) < 0)
			return -errno;
		return 0;
	}
	return madvise(a->p, a->len, MADV_DONTNEED) < 0 ? -errno : 0;
}

/* the handler process: gets the uffd, resolves from its own memory */
static void __attribute__((noreturn)) bounce_proc_child(struct sshared *sh, int sock, pid_t parent)
{
	int uffd = us_recv_fd(sock, 5000);

	if (uffd < 0) {
		sherr(sh, "handler process: no uffd received: %s", strerror(-uffd));
		_exit(1);
	}
	bounce_poll_loop(sh, uffd, 0, parent);
	_exit(0);
}

static const char *const smode_names[] = { "poll + read, in process",
					   "poll + read, other process", "io_uring batch" };

static int run_bounce(struct us_ctx *ctx, enum smode mode)
{
	struct srun *r;
	struct sthr *ft;
	struct hthr ht[MAXH];
	bool huge = us_kind_psize(ctx->kind) > 4096;
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	unsigned mib = us_opt_mib ? us_opt_mib : ctx->quick ? 4 : 64;
	unsigned secs = us_opt_seconds ? us_opt_seconds : ctx->quick ? 1 : 5;
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000, round = 0, nh;
	size_t npages;
	int ret, rc = US_PASS, sv[2] = { -1, -1 };
	pid_t hpid = 0;
	uint64_t t0 = 0, elapsed = 0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->mode = mode;
	r->nthreads = us_opt_threads ? us_opt_threads : ctx->quick ? 2 : 4;
	if (r->nthreads > MAXT)
		r->nthreads = MAXT;
	nh = mode == S_POLL ? MAXH : 1;
	npages = (size_t)mib * (1 << 20) / us_kind_psize(ctx->kind);
	if (npages < 2)
		npages = 2;

	/* shared with the handler process (when there is one), so made before the fork */
	r->shlen = sizeof(*r->sh) + (npages + 1) * sizeof(r->sh->done_round[0]);
	r->sh = mmap(NULL, r->shlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r->sh == MAP_FAILED)
		return us_fail(ctx, "mmap shared: %s", strerror(errno));
	if (mode == S_PROC) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			return us_fail(ctx, "socketpair: %s", strerror(errno));
		hpid = us_fork_helper();
		if (hpid < 0)
			return us_fail(ctx, "fork: %s", strerror((int)-hpid));
		if (hpid == 0) {
			close(sv[0]);
			bounce_proc_child(r->sh, sv[1], getppid());
		}
		close(sv[1]);
	}

	/* hugetlb: as many huge pages as are free, up to the size asked for */
	for (;;) {
		ret = us_area_map(&r->a, ctx->kind, npages, false);
		if (ret != -ENOMEM || !huge || npages <= 2)
			break;
		npages /= 2;
	}
	if (ret == -ENOMEM && huge) {
		rc = us_skip(ctx, "no free huge pages (2 needed)");
		goto out;
	}
	if (ret < 0) {
		rc = us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
		goto out;
	}
	struct sshared *sh = r->sh;

	sh->base = (uintptr_t)r->a.p;
	sh->psize = r->a.psize;
	sh->npages = npages;
	sh->seed = 0xb0c0ULL << 32 | ((uint64_t)mode << 8) | ctx->kind;
	sh->nhandlers = nh;
	ft = calloc(r->nthreads, sizeof(*ft));
	if (!ft) {
		rc = us_fail(ctx, "out of memory");
		goto out;
	}
	/* O_NONBLOCK for io_uring too: a read of a blocking uffd cannot be parked
	 * (the uffd polls POLLERR) and completes -EINTR at once */
	r->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0) {
		rc = us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			     strerror(-r->uffd));
		goto out;
	}
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER_MODE_MISSING: %s", strerror(errno));
		goto out;
	}
	if (mode == S_URING) {
		ret = io_uring_queue_init(8, &r->ring, 0);
		if (ret == -ENOSYS || ret == -EPERM) {
			rc = us_skip(ctx, "io_uring unavailable: %s", strerror(-ret));
			goto out;
		}
		if (ret < 0) {
			rc = us_fail(ctx, "io_uring_queue_init: %s", strerror(-ret));
			goto out;
		}
	}
	if (mode == S_PROC) {
		ret = us_send_fd(sv[0], r->uffd);
		if (ret < 0) {
			rc = us_fail(ctx, "send the uffd: %s", strerror(-ret));
			goto out;
		}
	} else {
		for (unsigned i = 0; i < nh; i++) {
			ht[i] = (struct hthr){ .r = r, .idx = i };
			if (pthread_create(&ht[i].t, NULL, bounce_handler, &ht[i])) {
				rc = us_fail(ctx, "pthread_create handler");
				goto out;
			}
		}
	}
	for (unsigned i = 0; i < r->nthreads; i++) {
		ft[i].r = r;
		ft[i].idx = i;
		if (pthread_create(&ft[i].t, NULL, bounce_faulter, &ft[i])) {
			rc = us_fail(ctx, "pthread_create faulting thread");
			goto out;
		}
	}

	t0 = us_now_us();
	do {
		uint64_t rt0;

		/* the next round: bump, let the handlers finish their batch, empty */
		round++;
		atomic_store(&sh->round, round);
		if (handlers_idle(sh) < 0) {
			rc = us_fail(ctx, "round %u: a handler still holds messages after 2 s", round);
			goto out_stop;
		}
		ret = empty_area(r);
		if (ret < 0) {
			rc = us_fail(ctx, "round %u: emptying the area: %s", round, strerror(-ret));
			goto out_stop;
		}
		atomic_store(&r->fdone, 0);
		atomic_store(&r->go, round);
		rt0 = us_now_us();
		/* the watchdog counts from the last message read, not from the
		 * round's start: a slow machine (TCG) makes slow progress, a lost
		 * wakeup makes none */
		for (long seen = atomic_load(&sh->msgs), now;
		     atomic_load(&r->fdone) < r->nthreads && !atomic_load(&sh->herr_set) &&
		     us_now_us() - rt0 < watchdog_ms * 1000ULL;) {
			usleep(200);
			if ((now = atomic_load(&sh->msgs)) != seen) {
				seen = now;
				rt0 = us_now_us();
			}
		}
		if (atomic_load(&sh->herr_set)) {
			/* faulting threads may be blocked for good: do not join them */
			rc = us_fail(ctx, "round %u: handler: %s", round, sh->herr);
			goto out;
		}
		if (atomic_load(&r->fdone) < r->nthreads) {
			/* a lost wakeup: leave the threads, the child exits with them */
			char st[200] = "";
			size_t off = 0;

			for (unsigned i = 0; i < r->nthreads && off < sizeof(st); i++)
				if (atomic_load(&ft[i].round) != round)
					off += snprintf(st + off, sizeof(st) - off,
							" %u:page %zu state %c", i,
							atomic_load(&ft[i].at),
							us_thread_state(ft[i].tid));
			if (mode == S_PROC && waitpid(hpid, NULL, WNOHANG) == hpid)
				off += snprintf(st + off, sizeof(st) - off, " (handler process gone)");
			rc = us_fail(ctx, "round %u: faulting threads still blocked, no fault read for %u ms (%s), "
				     "%ld faults read", round, watchdog_ms, st + 1,
				     atomic_load(&sh->msgs));
			goto out;
		}
	} while (!atomic_load(&r->ferr_set) && us_now_us() - t0 < secs * 1000000ULL);
	elapsed = us_now_us() - t0;

out_stop:
	atomic_store(&r->fstop, true);
	for (unsigned i = 0; i < r->nthreads; i++)
		if (ft[i].t)
			pthread_join(ft[i].t, NULL); /* all done with their round */
	atomic_store(&sh->stop, true);
	if (mode == S_PROC) {
		ret = us_reap(hpid, 2000);
		hpid = 0;
		if (ret == -ETIMEDOUT && rc == US_PASS)
			rc = us_fail(ctx, "the handler process did not stop within 2 s");
	} else {
		uint64_t j0 = us_now_us();

		for (unsigned i = 0; i < nh; i++) {
			while (!atomic_load(&ht[i].done) && us_now_us() - j0 < 2000000)
				usleep(1000);
			if (!atomic_load(&ht[i].done))
				return us_fail(ctx, "handler %u did not stop within 2 s", i);
			pthread_join(ht[i].t, NULL);
		}
	}
	if (mode == S_URING)
		io_uring_queue_exit(&r->ring); /* cancels the read still armed */
	if (rc != US_PASS)
		goto out;
	if (atomic_load(&sh->herr_set)) {
		rc = us_fail(ctx, "handler: %s", sh->herr);
		goto out;
	}
	if (atomic_load(&r->ferr_set)) {
		rc = us_fail(ctx, "%s", r->ferr);
		goto out;
	}

	/* every touch that faulted, all threads */
	size_t nlat = 0;
	bool oom = false;

	for (unsigned i = 0; i < r->nthreads; i++) {
		nlat += ft[i].nlat;
		oom |= ft[i].oom;
	}
	uint32_t *all = malloc((nlat + 1) * sizeof(*all));
	struct us_lat l;

	if (!all || oom) {
		rc = us_fail(ctx, "out of memory for the latency samples");
		goto out;
	}
	nlat = 0;
	for (unsigned i = 0; i < r->nthreads; i++) {
		memcpy(all + nlat, ft[i].lat, ft[i].nlat * sizeof(*all));
		nlat += ft[i].nlat;
	}
	us_lat_summary(all, nlat, &l);
	free(all);

	long msgs = atomic_load(&sh->msgs), copies = atomic_load(&sh->copies);
	double fps = elapsed ? (double)msgs * 1e6 / (double)elapsed : 0;

	/* each round empties every page, every page is touched, only a COPY fills it */
	if (copies != (long)(round * npages))
		rc = us_fail(ctx, "%ld UFFDIO_COPY done for %u rounds of %zu pages", copies, round,
			     npages);
	us_diag("%s/%s/%s: %s: %u threads, %zu pages (%zu KiB), %u rounds in %.2f s: %ld faults "
		"(%.0f/s), %ld copies, %ld reads, eexist %ld, eagain %ld; fault latency us p50 "
		"%.1f p99 %.1f p999 %.1f max %.1f (%zu samples)",
		ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), smode_names[mode],
		r->nthreads, npages, npages * r->a.psize / 1024, round, (double)elapsed / 1e6,
		msgs, fps, copies, atomic_load(&sh->reads), atomic_load(&sh->eexist),
		atomic_load(&sh->eagain), l.p50, l.p99, l.p999, l.max, nlat);
	us_metric(ctx, "threads", r->nthreads);
	us_metric(ctx, "pages", (double)npages);
	us_metric(ctx, "rounds", round);
	us_metric(ctx, "faults", (double)msgs);
	us_metric(ctx, "faults_per_s", fps);
	us_metric(ctx, "eexist", (double)atomic_load(&sh->eexist));
	us_metric(ctx, "eagain", (double)atomic_load(&sh->eagain));
	us_metric(ctx, "p50_us", l.p50);
	us_metric(ctx, "p99_us", l.p99);
	us_metric(ctx, "p999_us", l.p999);
	us_metric(ctx, "max_us", l.max);
	us_metric(ctx, "elapsed_us", (double)elapsed);
out:
	if (hpid > 0)
		us_reap(hpid, 100);
	/* on a failure threads may still be blocked: the child's exit ends them */
	return rc;
}

int us_case_stress_bounce(struct us_ctx *ctx)
{
	return run_bounce(ctx, S_POLL);
}

int us_case_stress_bounce_proc(struct us_ctx *ctx)
{
	return run_bounce(ctx, S_PROC);
}

int us_case_stress_bounce_uring(struct us_ctx *ctx)
{
	return run_bounce(ctx, S_URING);
}
