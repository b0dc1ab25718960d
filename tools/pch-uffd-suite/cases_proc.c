// SPDX-License-Identifier: MIT
/*
 * cases_proc.c - the proc/ cases: the fault handler in another process, as
 * a postcopy helper (pch-helper) runs it.
 *
 * The case's process plays the VMM: it forks the handler process(es) first
 * (each with its own mm, dying with the case: PR_SET_PDEATHSIG), then maps
 * its guest RAM, creates the uffd, registers the RAM and sends the uffd (and
 * the memfd, for the memfd kinds) over a unix socketpair with SCM_RIGHTS.
 * Apart from proc/handler-dies-vmm-keeps it then closes its own copy of the
 * uffd, as QEMU does.  Faulting threads in the VMM touch the pages and check
 * every byte; the handler reads the faults and
 *
 *   copy:       UFFDIO_COPY from its own memory (src in the handler's mm);
 *   continue:   writes the page through its own mapping of the memfd, then
 *               UFFDIO_CONTINUE (MINOR faults);
 *   zeropage:   UFFDIO_ZEROPAGE;
 *   move:       UFFDIO_MOVE is refused (EINVAL) from a process whose mm is
 *               not the uffd's, whether src names a page of the VMM or of the
 *               handler; nothing moves, the handler falls back to COPY;
 *   two-handlers: COPY, from two handler processes sharing the uffd;
 *   handler-dies-*: reads the fault, writes the page cache (memfd kinds) and
 *               does not resolve; the VMM SIGKILLs it;
 *   sigbus:     UFFD_FEATURE_SIGBUS: nothing reaches the handler.
 *
 * The handlers report through a MAP_SHARED block mapped before the fork.
 * Every wait has a deadline; a faulting thread still blocked fails the case
 * with its scheduler state.
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

enum pmode { P_COPY, P_CONTINUE, P_ZEROPAGE, P_MOVE, P_KEEPS, P_CLOSED, P_SIGBUS, P_TWO };

#define MAXH 2		/* handler processes */
#define MAXF 4		/* faulting threads */
#define MAXPAGES 512
#define OWN_SEED 0x401e	/* what the handler's own MOVE source page holds */

/* MAP_SHARED, mapped before the fork: the VMM's parameters, the handlers' reports */
struct shared {
	/* written by the VMM before it sends the fds */
	int mode;
	uintptr_t base;		/* the registered area, in the VMM's mm */
	size_t len, psize, npages;
	uint64_t seed;
	uintptr_t move_src;	/* MOVE: a filled area in the VMM's mm only */
	/* written by the handlers */
	atomic_int ready[MAXH];
	atomic_int faults[MAXH];
	atomic_int eexist;
	atomic_int held;	/* handler-dies: page held + 1 */
	atomic_int moves;	/* MOVE: attempts of each kind */
	atomic_int move_err_vmm, move_err_own; /* errno not EINVAL (0: it moved), or -1 */
	atomic_int probe_errno;	/* sigbus: errno of a read with (supposedly) nothing pending */
	atomic_int cmd_page;	/* sigbus: the page the 'c' command copies */
	atomic_bool herr_set;
	char herr[200];
	atomic_uint delivered[MAXPAGES];
};

struct prun {
	struct us_ctx *ctx;
	enum pmode mode;
	struct shared *sh;
	struct us_area a;
	char *src;		/* MOVE: the VMM's source pages */
	int uffd;
	size_t npages, ntouch;	/* pages mapped, pages the faulters touch */
	unsigned nfaulters, nh;
	pid_t hpid[MAXH];
	bool hreaped[MAXH], hkilled[MAXH];
	int hsock[MAXH];
	uint64_t seed;
	uint64_t lat[MAXPAGES];	/* per page: fault round trip, µs */
	/* faulting threads */
	pid_t ftid[MAXF];
	atomic_size_t fat[MAXF];
	atomic_uint faulters_done;
	atomic_uint_fast64_t t_end;	/* when the last access returned */
	atomic_bool ferr_set;
	char ferr[200];
	/* sigbus: steps driven by the main thread */
	atomic_int step, step_done;
	char *step_page;
	int step_bus, step_code;
	void *step_addr;
};

struct fthr {
	struct prun *r;
	unsigned idx;
	pthread_t t;
};


#define herror(sh, ...) us_seterr(&(sh)->herr_set, (sh)->herr, sizeof((sh)->herr), __VA_ARGS__)
#define ferror_(r, ...) us_seterr(&(r)->ferr_set, (r)->ferr, sizeof((r)->ferr), __VA_ARGS__)

/* ---- SCM_RIGHTS ---- */

/* send fds (1 or 2) with a one-byte payload; 0 or -errno */
static int send_fds(int sock, const int *fds, int n)
{
	char byte = 'f';
	struct iovec iov = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int)) };
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* receive up to 2 fds within ms; returns how many, or -errno */
static int recv_fds(int sock, int *fds, int ms)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct pollfd p = { .fd = sock, .events = POLLIN };
	struct cmsghdr *cm;
	int n;

	if (poll(&p, 1, ms) != 1)
		return -ETIMEDOUT;
	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
		return -EPROTO;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
		return -EPROTO;
	n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	if (n < 1 || n > 2)
		return -EPROTO;
	memcpy(fds, CMSG_DATA(cm), (size_t)n * sizeof(int));
	return n;
}

/* ---- the handler process ---- */

struct hstate {
	struct shared *sh;
	unsigned idx;
	int uffd;
	char *buf;	/* one page of the handler's own memory */
	char *mf;	/* the handler's own MAP_SHARED mapping of the memfd, or NULL */
};

static int h_copy(struct hstate *h, size_t pg)
{
	struct shared *sh = h->sh;
	struct uffdio_copy c = { .dst = sh->base + pg * sh->psize, .src = (uintptr_t)h->buf,
				 .len = sh->psize };
	int ret, tries = 0;

	/* src is read in the caller's mm: the handler's page */
	us_pattern(h->buf, sh->psize, pg, sh->seed);
	while ((ret = ioctl(h->uffd, UFFDIO_COPY, &c)) < 0 && errno == EAGAIN && ++tries < 1000)
		c.copy = 0;
	return ret < 0 ? -errno : 0;
}

/*
 * UFFDIO_MOVE works only inside the uffd's own mm: the kernel refuses it
 * with EINVAL when current->mm is not the uffd's ("Do not allow cross-mm
 * moves", adef440691ba "userfaultfd: UFFDIO_MOVE uABI"), before looking at
 * src.  Try src as a page of the VMM (valid in the uffd's mm) and as the
 * handler's own page, then resolve with COPY as a helper has to.
 */
static int h_move(struct hstate *h, size_t pg)
{
	struct shared *sh = h->sh;
	size_t ps = sh->psize;
	struct uffdio_move m = { .dst = sh->base + pg * ps, .src = sh->move_src + pg * ps,
				 .len = ps };
	int e;

	atomic_fetch_add(&sh->moves, 1);
	e = ioctl(h->uffd, UFFDIO_MOVE, &m) < 0 ? errno : 0;
	if (e != EINVAL) {
		atomic_store(&sh->move_err_vmm, e);
		if (!e)
			return 0;
	}
	us_pattern(h->buf, ps, pg, sh->seed ^ OWN_SEED);
	m.src = (uintptr_t)h->buf;
	m.move = 0;
	e = ioctl(h->uffd, UFFDIO_MOVE, &m) < 0 ? errno : 0;
	if (e != EINVAL) {
		atomic_store(&sh->move_err_own, e);
		if (!e)
			return 0;
	}
	if (us_pattern_check(h->buf, ps, pg, sh->seed ^ OWN_SEED))
		herror(sh, "handler %u: a refused MOVE changed the handler's page %zu", h->idx, pg);
	return h_copy(h, pg);
}

static void h_fault(struct hstate *h, const struct uffd_msg *msg)
{
	struct shared *sh = h->sh;
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uint64_t fl = msg->arg.pagefault.flags;
	size_t ps = sh->psize, pg;
	bool minor = fl & UFFD_PAGEFAULT_FLAG_MINOR;
	int ret = 0;

	if (msg->event != UFFD_EVENT_PAGEFAULT) {
		herror(sh, "handler %u: unexpected event 0x%x", h->idx, msg->event);
		return;
	}
	if (addr < sh->base || addr >= sh->base + sh->len) {
		herror(sh, "handler %u: fault at 0x%lx, outside the area", h->idx,
		       (unsigned long)addr);
		return;
	}
	pg = (addr - sh->base) / ps;
	atomic_fetch_add(&sh->faults[h->idx], 1);
	if (pg < MAXPAGES)
		atomic_fetch_add(&sh->delivered[pg], 1);
	if (minor != (sh->mode == P_CONTINUE) || (fl & UFFD_PAGEFAULT_FLAG_WP))
		herror(sh, "handler %u: page %zu: fault flags 0x%llx", h->idx, pg,
		       (unsigned long long)fl);
	switch (sh->mode) {
	case P_SIGBUS:
		herror(sh, "handler %u: fault message on page %zu read with UFFD_FEATURE_SIGBUS",
		       h->idx, pg);
		ret = h_copy(h, pg); /* do not leave it blocked */
		break;
	case P_COPY:
	case P_TWO:
		ret = h_copy(h, pg);
		break;
	case P_ZEROPAGE: {
		struct uffdio_zeropage z = { .range = { addr & ~(uintptr_t)(ps - 1), ps } };

		ret = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
		break;
	}
	case P_CONTINUE: {
		struct uffdio_continue c = { .range = { sh->base + pg * ps, ps } };

		/* the content arrives now, written in place through the
		 * handler's own mapping of the memfd */
		us_pattern(h->mf + pg * ps, ps, pg, sh->seed);
		ret = ioctl(h->uffd, UFFDIO_CONTINUE, &c) < 0 ? -errno : 0;
		break;
	}
	case P_MOVE:
		ret = h_move(h, pg);
		break;
	case P_KEEPS:
	case P_CLOSED:
		/* the page "arrives" in the page cache, then the handler dies
		 * before resolving the fault */
		if (h->mf)
			us_pattern(h->mf + pg * ps, ps, pg, sh->seed);
		atomic_store(&sh->held, (int)pg + 1);
		return;
	}
	if (ret == -EEXIST) {
		struct uffdio_range w = { sh->base + pg * ps, ps };

		atomic_fetch_add(&sh->eexist, 1);
		ioctl(h->uffd, UFFDIO_WAKE, &w);
	} else if (ret < 0) {
		struct uffdio_range w = { sh->base + pg * ps, ps };

		herror(sh, "handler %u: page %zu: %s", h->idx, pg, strerror(-ret));
		ioctl(h->uffd, UFFDIO_WAKE, &w);
	}
}

/* a command from the VMM on the socket; returns false to stop */
static bool h_command(struct hstate *h, int sock)
{
	struct shared *sh = h->sh;
	char c;
	ssize_t n = read(sock, &c, 1);

	if (n <= 0 || c == 'q')
		return false;
	if (c == 'c') {
		/* sigbus: nothing must be pending, then COPY the page */
		struct uffd_msg m;
		ssize_t got = read(h->uffd, &m, sizeof(m));
		int ret;

		atomic_store(&sh->probe_errno, got < 0 ? errno : 0);
		if (got > 0)
			herror(sh, "handler %u: a message was pending with UFFD_FEATURE_SIGBUS",
			       h->idx);
		ret = h_copy(h, (size_t)atomic_load(&sh->cmd_page));
		if (ret < 0)
			herror(sh, "handler %u: UFFDIO_COPY page %d: %s", h->idx,
			       atomic_load(&sh->cmd_page), strerror(-ret));
		c = 'k';
		if (write(sock, &c, 1) != 1)
			return false;
	}
	return true;
}

static void __attribute__((noreturn)) handler_proc(struct shared *sh, unsigned idx, int sock,
						   pid_t vmm)
{
	struct hstate h = { .sh = sh, .idx = idx };
	uint64_t end = us_now_us() + 60000000; /* the case is killed long before */
	int fds[2] = { -1, -1 }, n;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != vmm)
		_exit(1);
	n = recv_fds(sock, fds, 5000);
	if (n < 1) {
		herror(sh, "handler %u: no uffd received: %s", idx, strerror(-n));
		_exit(1);
	}
	h.uffd = fds[0];
	h.buf = mmap(NULL, sh->psize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h.buf == MAP_FAILED) {
		herror(sh, "handler %u: mmap: %s", idx, strerror(errno));
		_exit(1);
	}
	if (n == 2) {
		h.mf = mmap(NULL, sh->len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
		if (h.mf == MAP_FAILED) {
			herror(sh, "handler %u: mmap the memfd: %s", idx, strerror(errno));
			_exit(1);
		}
	}
	if (sh->mode == P_CONTINUE) {
		if (!h.mf) {
			herror(sh, "handler %u: no memfd received", idx);
			_exit(1);
		}
		/* stale content in the page cache: MINOR faults, not MISSING */
		for (size_t pg = 0; pg < sh->npages; pg++)
			us_pattern(h.mf + pg * sh->psize, sh->psize, pg, ~sh->seed);
	}
	atomic_store(&sh->ready[idx], 1);

	while (us_now_us() < end) {
		struct pollfd p[2] = { { .fd = h.uffd, .events = POLLIN },
				       { .fd = sock, .events = POLLIN } };
		struct uffd_msg msgs[16];
		ssize_t got;

		if (poll(p, 2, 100) < 0 && errno != EINTR) {
			herror(sh, "handler %u: poll: %s", idx, strerror(errno));
			_exit(1);
		}
		if (p[1].revents && !h_command(&h, sock))
			_exit(0);
		if (p[0].revents & (POLLERR | POLLNVAL)) {
			herror(sh, "handler %u: poll uffd revents 0x%x", idx, p[0].revents);
			_exit(1);
		}
		if (!(p[0].revents & POLLIN))
			continue;
		got = read(h.uffd, msgs, sizeof(msgs));
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue; /* the other handler took it */
			herror(sh, "handler %u: read uffd: %s", idx, strerror(errno));
			_exit(1);
		}
		for (ssize_t i = 0; i < got / (ssize_t)sizeof(msgs[0]); i++)
			h_fault(&h, &msgs[i]);
	}
	_exit(0);
}

/* ---- the VMM side ---- */

static __thread sigjmp_buf bus_jb;
static __thread volatile int bus_armed;
static __thread volatile int bus_code;
static __thread void *volatile bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
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

/* read *p; returns 1 when that raised SIGBUS (bus_code, bus_addr set) */
static int touch(char *p)
{
	if (sigsetjmp(bus_jb, 1))
		return 1;
	bus_armed = 1;
	(void)*(volatile uint64_t *)p;
	bus_armed = 0;
	return 0;
}

/* what page pg must hold after its fault */
static bool want_zero(const struct prun *r)
{
	if (r->mode == P_ZEROPAGE)
		return true;
	/* a handler that died: the fault is retried unregistered and maps
	 * whatever the page cache has (the handler wrote it), else zeros */
	if (r->mode == P_KEEPS || r->mode == P_CLOSED)
		return r->a.memfd < 0;
	return false;
}

static void check_page(struct prun *r, size_t pg)
{
	size_t ps = r->a.psize, bad;
	const char *page = r->a.p + pg * ps;

	if (want_zero(r)) {
		for (size_t i = 0; i < ps; i += 8)
			if (*(const uint64_t *)(page + i)) {
				ferror_(r, "page %zu: byte %zu not zero", pg, i);
				return;
			}
	} else if ((bad = us_pattern_check(page, ps, pg, r->seed))) {
		ferror_(r, "page %zu: content wrong at byte %zu%s", pg, bad - 1,
			r->mode == P_MOVE && !us_pattern_check(page, ps, pg, r->seed ^ OWN_SEED) ?
			" (it holds the handler's page: moved across mm)" : "");
	}
}

static void *faulter(void *arg)
{
	struct fthr *t = arg;
	struct prun *r = t->r;

	r->ftid[t->idx] = (pid_t)syscall(SYS_gettid);
	for (size_t pg = t->idx; pg < r->ntouch; pg += r->nfaulters) {
		char *page = r->a.p + pg * r->a.psize;
		uint64_t t0, t1;

		atomic_store(&r->fat[t->idx], pg);
		t0 = us_now_us();
		(void)*(volatile uint64_t *)page;
		t1 = us_now_us();
		r->lat[pg] = t1 - t0;
		atomic_store(&r->t_end, t1);
		check_page(r, pg);
	}
	atomic_fetch_add(&r->faulters_done, 1);
	return NULL;
}

/* sigbus: the main thread sets step = n, the thread touches step_page and
 * reports in step_bus/code/addr, then step_done = n; step -1 ends it */
static void *sigbus_faulter(void *arg)
{
	struct fthr *t = arg;
	struct prun *r = t->r;
	int done = 0;
	uint64_t end = us_now_us() + 20000000;

	r->ftid[0] = (pid_t)syscall(SYS_gettid);
	while (us_now_us() < end) {
		int s = atomic_load(&r->step);

		if (s < 0)
			break;
		if (s == done) {
			usleep(100);
			continue;
		}
		r->step_bus = touch(r->step_page);
		r->step_code = bus_code;
		r->step_addr = bus_addr;
		atomic_store(&r->t_end, us_now_us());
		done = s;
		atomic_store(&r->step_done, s);
	}
	atomic_fetch_add(&r->faulters_done, 1);
	return NULL;
}

/* wait for *v >= want, ms at most */
static bool wait_for(atomic_int *v, int want, unsigned ms)
{
	uint64_t t0 = us_now_us();

	while (atomic_load(v) < want)
		if (us_now_us() - t0 > ms * 1000ULL)
			return false;
		else
			usleep(200);
	return true;
}

static bool wait_faulters(struct prun *r, unsigned ms)
{
	uint64_t t0 = us_now_us();

	while (atomic_load(&r->faulters_done) < r->nfaulters)
		if (us_now_us() - t0 > ms * 1000ULL)
			return false;
		else
			usleep(200);
	return true;
}

/* the report for faulting threads still blocked */
static int blocked(struct prun *r, unsigned ms, const char *what)
{
	struct us_ctx *ctx = r->ctx;

	for (unsigned i = 0; i < r->nfaulters; i++) {
		pid_t tid = r->ftid[i];

		if (!tid)
			continue;
		char st = us_thread_state(tid);

		if (st == 'S' || st == 'D')
			return us_fail(ctx, "faulting thread %u still blocked %u ms %s, on page %zu "
				       "(state %c), %d faults read%s%s", i, ms, what,
				       atomic_load(&r->fat[i]), st, atomic_load(&r->sh->faults[0]),
				       atomic_load(&r->sh->herr_set) ? "; handler: " : "",
				       atomic_load(&r->sh->herr_set) ? r->sh->herr : "");
	}
	return us_fail(ctx, "faulting threads not done %u ms %s%s%s", ms, what,
		       atomic_load(&r->sh->herr_set) ? "; handler: " : "",
		       atomic_load(&r->sh->herr_set) ? r->sh->herr : "");
}

/* reap handler i within ms; returns its wait status or -1 */
static int reap(struct prun *r, unsigned i, unsigned ms)
{
	uint64_t t0 = us_now_us();
	int st;

	while (!r->hreaped[i]) {
		pid_t p = waitpid(r->hpid[i], &st, WNOHANG);

		if (p == r->hpid[i]) {
			r->hreaped[i] = true;
			return st;
		}
		if (p < 0 || us_now_us() - t0 > ms * 1000ULL)
			return -1;
		usleep(500);
	}
	return -1;
}

static void kill_handler(struct prun *r, unsigned i)
{
	r->hkilled[i] = true;
	kill(r->hpid[i], SIGKILL);
}

/* ask the handlers to stop, kill those that do not; returns a failure
 * reason in buf (or "") for a handler that died on its own */
static void stop_handlers(struct prun *r, char *buf, size_t len)
{
	buf[0] = '\0';
	for (unsigned i = 0; i < r->nh; i++) {
		int st;

		if (r->hreaped[i] || r->hpid[i] <= 0)
			continue;
		if (!r->hkilled[i] && write(r->hsock[i], "q", 1) != 1)
			kill_handler(r, i);
		st = reap(r, i, 1000);
		if (st == -1) {
			kill_handler(r, i);
			st = reap(r, i, 2000);
		}
		if (st != -1 && !r->hkilled[i] && !buf[0] &&
		    (WIFSIGNALED(st) || WEXITSTATUS(st)))
			snprintf(buf, len, "handler %u %s %d", i,
				 WIFSIGNALED(st) ? "killed by signal" : "exited", WIFSIGNALED(st) ?
				 WTERMSIG(st) : WEXITSTATUS(st));
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static const char *const mode_names[] = { "COPY", "CONTINUE", "ZEROPAGE", "MOVE refused",
					  "handler killed, VMM keeps its uffd",
					  "handler killed, VMM closed its uffd", "SIGBUS",
					  "COPY from two handlers" };

/* fork the handlers, map, create and register the uffd, send it */
static int setup(struct prun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct shared *sh = r->sh;
	bool huge = us_kind_psize(ctx->kind) > 4096;
	uint64_t feats = us_kind_features(ctx->kind, ctx->c->mode) | ctx->c->features;
	size_t ps = us_kind_psize(ctx->kind);
	pid_t vmm = getpid();
	int ret;

	sh->mode = r->mode;
	sh->move_err_vmm = sh->move_err_own = -1;
	fflush(stdout);
	for (unsigned i = 0; i < r->nh; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return us_fail(ctx, "socketpair: %s", strerror(errno));
		r->hpid[i] = fork();
		if (r->hpid[i] < 0)
			return us_fail(ctx, "fork: %s", strerror(errno));
		if (r->hpid[i] == 0) {
			close(sv[0]);
			for (unsigned j = 0; j < i; j++)
				close(r->hsock[j]);
			handler_proc(sh, i, sv[1], vmm);
		}
		close(sv[1]);
		r->hsock[i] = sv[0];
	}

	/* the VMM's guest RAM: mapped after the fork, the handlers never had it */
	ret = us_area_map(&r->a, ctx->kind, r->npages, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages (%zu needed)", r->npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	if (r->mode == P_MOVE) {
		/* filled after the fork: the VMM's pages are exclusive (movable
		 * from the VMM itself, were it the caller) */
		r->src = mmap(NULL, r->a.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		if (r->src == MAP_FAILED)
			return us_fail(ctx, "mmap: %s", strerror(errno));
		madvise(r->src, r->a.len, MADV_NOHUGEPAGE);
		for (size_t pg = 0; pg < r->npages; pg++)
			us_pattern(r->src + pg * ps, ps, pg, r->seed);
		sh->move_src = (uintptr_t)r->src;
	}
	sh->base = (uintptr_t)r->a.p;
	sh->len = r->a.len;
	sh->psize = ps;
	sh->npages = r->npages;
	sh->seed = r->seed;

	r->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-r->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = ctx->c->mode };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_%s: %s", us_mode_name(ctx->c->mode),
			       strerror(errno));
	int fds[2] = { r->uffd, r->a.memfd };

	for (unsigned i = 0; i < r->nh; i++) {
		ret = send_fds(r->hsock[i], fds, r->a.memfd >= 0 ? 2 : 1);
		if (ret < 0)
			return us_fail(ctx, "send the uffd to handler %u: %s", i, strerror(-ret));
	}
	if (r->mode != P_KEEPS) {
		/* the handlers hold the only references now */
		close(r->uffd);
		r->uffd = -1;
	}
	for (unsigned i = 0; i < r->nh; i++)
		if (!wait_for(&sh->ready[i], 1, 5000))
			return us_fail(ctx, "handler %u not ready after 5 s%s%s", i,
				       atomic_load(&sh->herr_set) ? ": " : "",
				       atomic_load(&sh->herr_set) ? sh->herr : "");
	return US_PASS;
}

static int start_faulters(struct prun *r, struct fthr *ft, void *(*fn)(void *))
{
	for (unsigned i = 0; i < r->nfaulters; i++) {
		ft[i] = (struct fthr){ r, i, 0 };
		if (pthread_create(&ft[i].t, NULL, fn, &ft[i]))
			return us_fail(r->ctx, "pthread_create");
	}
	return US_PASS;
}

/* copy, continue, zeropage, move, two-handlers: every page through the handler(s) */
static int body_resolve(struct prun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct shared *sh = r->sh;
	struct fthr ft[MAXF];
	unsigned watchdog_ms = ctx->quick ? 5000 : 10000;
	uint64_t t0, elapsed;
	int rc, faults = 0;

	t0 = us_now_us();
	if ((rc = start_faulters(r, ft, faulter)) != US_PASS)
		return rc;
	if (!wait_faulters(r, watchdog_ms))
		return blocked(r, watchdog_ms, "after the start");
	elapsed = us_now_us() - t0;
	for (unsigned i = 0; i < r->nfaulters; i++)
		pthread_join(ft[i].t, NULL);

	for (unsigned i = 0; i < r->nh; i++)
		faults += atomic_load(&sh->faults[i]);
	if (atomic_load(&sh->herr_set))
		return us_fail(ctx, "%s", sh->herr);
	if (atomic_load(&r->ferr_set))
		return us_fail(ctx, "%s", r->ferr);
	if (faults != (int)r->npages)
		return us_fail(ctx, "%d faults read for %zu pages", faults, r->npages);
	for (size_t pg = 0; pg < r->npages; pg++)
		if (atomic_load(&sh->delivered[pg]) != 1)
			return us_fail(ctx, "page %zu delivered %u times, want exactly once", pg,
				       atomic_load(&sh->delivered[pg]));
	if (r->mode == P_TWO)
		for (unsigned i = 0; i < r->nh; i++)
			us_metric(ctx, i ? "faults_h1" : "faults_h0", atomic_load(&sh->faults[i]));
	if (r->mode == P_MOVE) {
		int ev = atomic_load(&sh->move_err_vmm), eo = atomic_load(&sh->move_err_own);

		if (atomic_load(&sh->moves) != faults)
			return us_fail(ctx, "%d MOVE attempts for %d faults", atomic_load(&sh->moves),
				       faults);
		if (ev >= 0)
			return us_fail(ctx, "UFFDIO_MOVE from the handler, src in the VMM's mm: %s, "
				       "want EINVAL (no cross-mm moves)", ev ? strerror(ev) : "moved");
		if (eo >= 0)
			return us_fail(ctx, "UFFDIO_MOVE from the handler, src in its own mm: %s, "
				       "want EINVAL (no cross-mm moves)", eo ? strerror(eo) : "moved");
		/* nothing left the VMM's source area */
		for (size_t pg = 0; pg < r->npages; pg++) {
			size_t bad = us_pattern_check(r->src + pg * r->a.psize, r->a.psize, pg,
						      r->seed);

			if (bad)
				return us_fail(ctx, "VMM's MOVE source page %zu changed at byte %zu by "
					       "a refused MOVE", pg, bad - 1);
		}
	}
	qsort(r->lat, r->npages, sizeof(r->lat[0]), cmp_u64);
	uint64_t p50 = r->lat[r->npages / 2], lmax = r->lat[r->npages - 1];

	us_diag("%s/%s/%s: %s: %d faults from %u threads, %u handler process(es), "
		"fault round trip p50 %llu us max %llu us%s", ctx->c->cat, ctx->c->name,
		us_kind_name(ctx->kind), mode_names[r->mode], faults, r->nfaulters, r->nh,
		(unsigned long long)p50, (unsigned long long)lmax,
		r->mode == P_MOVE ? "; every MOVE refused with EINVAL, resolved by COPY" : "");
	us_metric(ctx, "faults", faults);
	us_metric(ctx, "threads", r->nfaulters);
	us_metric(ctx, "fault_us_p50", (double)p50);
	us_metric(ctx, "fault_us_max", (double)lmax);
	us_metric(ctx, "eexist", atomic_load(&sh->eexist));
	us_metric(ctx, "elapsed_us", (double)elapsed);
	return US_PASS;
}

/* handler-dies-vmm-keeps / -vmm-closed */
static int body_dies(struct prun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct shared *sh = r->sh;
	struct fthr ft[1];
	unsigned hold_ms = ctx->quick ? 300 : 1000, wake_ms = 1000;
	uint64_t t_kill, t_close = 0, wake;
	char st = '?';
	int rc;

	if ((rc = start_faulters(r, ft, faulter)) != US_PASS)
		return rc;
	if (!wait_for(&sh->held, 1, 2000))
		return us_fail(ctx, "the handler did not report the fault within 2 s%s%s",
			       atomic_load(&sh->herr_set) ? ": " : "",
			       atomic_load(&sh->herr_set) ? sh->herr : "");
	usleep(2000);
	if (atomic_load(&r->faulters_done))
		return us_fail(ctx, "the faulting thread returned with its fault unresolved");
	st = us_thread_state(r->ftid[0]);
	if (st != 'S' && st != 'D')
		return us_fail(ctx, "faulting thread in state %c with its fault held, want blocked "
			       "(S or D)", st);
	t_kill = us_now_us();
	kill_handler(r, 0);
	if (reap(r, 0, 2000) == -1)
		return us_fail(ctx, "handler not reaped 2 s after SIGKILL");
	if (r->mode == P_KEEPS) {
		/* the VMM's copy keeps the uffd open: nobody wakes the thread */
		uint64_t t0 = us_now_us();

		while (us_now_us() - t0 < hold_ms * 1000ULL) {
			if (atomic_load(&r->faulters_done))
				return us_fail(ctx, "the faulting thread woke %llu us after the handler "
					       "died although the VMM still holds the uffd",
					       (unsigned long long)(atomic_load(&r->t_end) - t_kill));
			st = us_thread_state(r->ftid[0]);
			if (st != 'S' && st != 'D')
				return us_fail(ctx, "faulting thread in state %c with its handler dead, "
					       "want blocked (S or D)", st);
			usleep(10000);
		}
		t_close = us_now_us();
		close(r->uffd);
		r->uffd = -1;
	}
	if (!wait_faulters(r, wake_ms))
		return blocked(r, wake_ms, r->mode == P_KEEPS ? "after the VMM closed the last uffd" :
			       "after the handler holding the last uffd was killed");
	pthread_join(ft[0].t, NULL);
	wake = atomic_load(&r->t_end) - (r->mode == P_KEEPS ? t_close : t_kill);
	if (atomic_load(&sh->herr_set))
		return us_fail(ctx, "%s", sh->herr);
	if (atomic_load(&r->ferr_set))
		return us_fail(ctx, "after the wake: %s (want %s)", r->ferr,
			       want_zero(r) ? "zeros" : "the page cache content the handler wrote");
	if (r->mode == P_KEEPS)
		us_diag("%s/%s/%s: thread still blocked (state %c) %u ms after the handler's SIGKILL; "
			"woke %llu us after the VMM closed its uffd, read %s", ctx->c->cat,
			ctx->c->name, us_kind_name(ctx->kind), st, hold_ms, (unsigned long long)wake,
			want_zero(r) ? "zeros" : "the page cache");
	else
		us_diag("%s/%s/%s: thread woke %llu us after the SIGKILL of the handler holding the "
			"last uffd, read %s", ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind),
			(unsigned long long)wake, want_zero(r) ? "zeros" : "the page cache");
	us_metric(ctx, "faults", atomic_load(&sh->faults[0]));
	us_metric(ctx, r->mode == P_KEEPS ? "wake_after_close_us" : "wake_after_kill_us",
		  (double)wake);
	if (r->mode == P_KEEPS)
		us_metric(ctx, "blocked_ms", hold_ms);
	return US_PASS;
}

/* one sigbus step: touch page pg; returns 0, or a failure */
static int step(struct prun *r, int n, size_t pg, size_t off)
{
	r->step_page = r->a.p + pg * r->a.psize + off;
	atomic_store(&r->step, n);
	if (!wait_for(&r->step_done, n, 2000))
		return blocked(r, 2000, "in a UFFD_FEATURE_SIGBUS access");
	return US_PASS;
}

static int body_sigbus(struct prun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct shared *sh = r->sh;
	struct fthr ft[1];
	const size_t off = 72; /* si_addr is the accessed address, not the page */
	char c;
	int rc, code;
	void *addr;

	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if ((rc = start_faulters(r, ft, sigbus_faulter)) != US_PASS)
		return rc;

	/* 1: page 0 is missing: SIGBUS at once, no message */
	if ((rc = step(r, 1, 0, off)) != US_PASS)
		return rc;
	code = r->step_code;
	addr = r->step_addr;
	if (!r->step_bus)
		return us_fail(ctx, "missing page read without SIGBUS (handler: %s)",
			       atomic_load(&sh->herr_set) ? sh->herr : "no message");
	if (code != BUS_ADRERR || addr != r->a.p + off)
		return us_fail(ctx, "SIGBUS si_code %d si_addr %p, want BUS_ADRERR (%d) at %p", code,
			       addr, BUS_ADRERR, (void *)(r->a.p + off));
	/* 2: the handler finds nothing pending, copies page 0: it reads back */
	atomic_store(&sh->cmd_page, 0);
	if (write(r->hsock[0], "c", 1) != 1)
		return us_fail(ctx, "command to the handler: %s", strerror(errno));
	struct pollfd p = { .fd = r->hsock[0], .events = POLLIN };

	if (poll(&p, 1, 2000) != 1 || read(r->hsock[0], &c, 1) != 1 || c != 'k')
		return us_fail(ctx, "the handler did not copy page 0 within 2 s%s%s",
			       atomic_load(&sh->herr_set) ? ": " : "",
			       atomic_load(&sh->herr_set) ? sh->herr : "");
	if (atomic_load(&sh->probe_errno) != EAGAIN)
		return us_fail(ctx, "handler's read after the SIGBUS: %s, want EAGAIN",
			       atomic_load(&sh->probe_errno) ?
			       strerror(atomic_load(&sh->probe_errno)) : "a message");
	if ((rc = step(r, 2, 0, 0)) != US_PASS)
		return rc;
	if (r->step_bus)
		return us_fail(ctx, "SIGBUS on page 0 after UFFDIO_COPY");
	check_page(r, 0);
	/* 3: page 1, still missing: SIGBUS again */
	if ((rc = step(r, 3, 1, 0)) != US_PASS)
		return rc;
	if (!r->step_bus)
		return us_fail(ctx, "page 1 read without SIGBUS");
	/* 4: the handler (holding the only uffd) dies: the release unregisters
	 * the range, page 1 faults normally (zeros: nothing in any page cache) */
	kill_handler(r, 0);
	if (reap(r, 0, 2000) == -1)
		return us_fail(ctx, "handler not reaped 2 s after SIGKILL");
	if ((rc = step(r, 4, 1, 0)) != US_PASS)
		return rc;
	if (r->step_bus)
		return us_fail(ctx, "SIGBUS on page 1 after the last uffd was released (si_code %d)",
			       r->step_code);
	for (size_t i = 0; i < r->a.psize; i += 8)
		if (*(uint64_t *)(r->a.p + r->a.psize + i))
			ferror_(r, "page 1: byte %zu not zero after the release", i);
	atomic_store(&r->step, -1);
	pthread_join(ft[0].t, NULL);
	if (atomic_load(&sh->herr_set))
		return us_fail(ctx, "%s", sh->herr);
	if (atomic_load(&r->ferr_set))
		return us_fail(ctx, "%s", r->ferr);
	if (atomic_load(&sh->faults[0]))
		return us_fail(ctx, "%d fault messages read with UFFD_FEATURE_SIGBUS",
			       atomic_load(&sh->faults[0]));
	us_diag("%s/%s/%s: SIGBUS si_code %d at the accessed address, no message; after the "
		"handler died the page reads zeros", ctx->c->cat, ctx->c->name,
		us_kind_name(ctx->kind), code);
	us_metric(ctx, "faults", 0);
	us_metric(ctx, "sigbus_si_code", code);
	return US_PASS;
}

static int run_proc(struct us_ctx *ctx, enum pmode mode)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	struct prun *r;
	char why[96];
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return us_fail(ctx, "out of memory");
	r->ctx = ctx;
	r->mode = mode;
	r->uffd = -1;
	r->a.memfd = -1;
	r->nh = mode == P_TWO ? 2 : 1;
	switch (mode) {
	case P_KEEPS:
	case P_CLOSED:
		r->npages = 1;
		break;
	case P_SIGBUS:
		r->npages = 2;
		break;
	default:
		r->npages = huge ? (ctx->quick ? 2 : 4) : (ctx->quick ? 64 : MAXPAGES);
		break;
	}
	r->ntouch = mode == P_SIGBUS ? 0 : r->npages;
	r->nfaulters = r->npages < MAXF ? (unsigned)r->npages : MAXF;
	if (mode == P_SIGBUS)
		r->nfaulters = 1;
	r->seed = 0x9c0c0000ULL + (uint64_t)mode * 31 + ctx->kind;
	r->sh = mmap(NULL, sizeof(*r->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		     -1, 0);
	if (r->sh == MAP_FAILED)
		return us_fail(ctx, "mmap: %s", strerror(errno));

	rc = setup(r);
	if (rc == US_PASS) {
		switch (mode) {
		case P_KEEPS:
		case P_CLOSED:
			rc = body_dies(r);
			break;
		case P_SIGBUS:
			rc = body_sigbus(r);
			break;
		default:
			rc = body_resolve(r);
			break;
		}
	}
	/* faulting threads may be left blocked on a failure: the case's
	 * process exits with them; the handlers go first, with a deadline */
	stop_handlers(r, why, sizeof(why));
	if (rc == US_PASS && why[0])
		rc = us_fail(ctx, "%s", why);
	if (rc == US_PASS) {
		if (r->uffd >= 0)
			close(r->uffd);
		us_area_unmap(&r->a);
		if (r->src)
			munmap(r->src, r->a.len);
		munmap(r->sh, sizeof(*r->sh));
		free(r);
	}
	return rc;
}

int us_case_proc_copy(struct us_ctx *ctx)
{
	return run_proc(ctx, P_COPY);
}

int us_case_proc_continue(struct us_ctx *ctx)
{
	return run_proc(ctx, P_CONTINUE);
}

int us_case_proc_zeropage(struct us_ctx *ctx)
{
	return run_proc(ctx, P_ZEROPAGE);
}

int us_case_proc_move(struct us_ctx *ctx)
{
	return run_proc(ctx, P_MOVE);
}

int us_case_proc_dies_keeps(struct us_ctx *ctx)
{
	return run_proc(ctx, P_KEEPS);
}

int us_case_proc_dies_closed(struct us_ctx *ctx)
{
	return run_proc(ctx, P_CLOSED);
}

int us_case_proc_sigbus(struct us_ctx *ctx)
{
	return run_proc(ctx, P_SIGBUS);
}

int us_case_proc_two(struct us_ctx *ctx)
{
	return run_proc(ctx, P_TWO);
}
