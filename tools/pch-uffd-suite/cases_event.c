// SPDX-License-Identifier: MIT
/*
 * cases_event.c - the event/ cases: non-cooperative events (FORK, REMAP,
 * REMOVE, UNMAP) delivered in order with the page faults around them, and
 * the fault message's THREAD_ID and EXACT_ADDRESS fields.
 *
 * These cases are scripts, not free-running handlers: the case's own thread
 * is the handler and reads one message at a time with a deadline, while each
 * fault or event-causing syscall (read of a page, madvise, munmap, mremap,
 * fork) runs in a one-shot thread (struct us_act).  A non-cooperative event
 * blocks the thread that caused it until the event is read, so the syscall
 * must never run in the handler's thread; the script checks that it really
 * blocks (thread state S or D) before reading the event.
 *
 * event/fork: EVENT_FORK; fork() while a fault of the parent is pending: the
 *   parent's uffd gives the fault, then UFFD_EVENT_FORK with a new uffd for
 *   the child; the child's faults arrive on that uffd only, are resolved
 *   there, and the child checks what it reads (exit status).
 * event/fork-none: no EVENT_FORK: fork() does not wait for anybody, no
 *   message; the child's range is not registered: populated pages are the
 *   parent's (copied or shared), missing pages read as zeros.
 * event/remap: EVENT_REMAP; mremap(MREMAP_MAYMOVE|MREMAP_FIXED) between two
 *   faults: from/to/len, then faults at the new address, resolved there.
 * event/remove: EVENT_REMOVE; MADV_DONTNEED (private kinds) or MADV_REMOVE
 *   (shared kinds) on two pages: start/end, then those pages (only) fault
 *   again as MISSING.
 * event/unmap: EVENT_UNMAP; munmap of one page: start/end, then faults only
 *   on the remaining pages.
 * event/order: faults and all four events interleaved in a known sequence;
 *   the handler must read exactly that sequence.
 * event/punch-hole: fallocate(PUNCH_HOLE) on a shared memfd: no REMOVE event
 *   (only madvise sends it), the punched pages fault again as MISSING.
 * event/thread-id: THREAD_ID: feat.ptid is the faulting thread's tid.
 * event/exact-address: EXACT_ADDRESS: the address is not masked (without
 *   the feature it is).
 *
 * The helpers below (us_act_*, us_msg_*) are shared with cases_wp.c.
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

#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif

/*
 * The forked child of US_ACT_FORK: PDEATHSIG first (the forking thread
 * stays in waitpid until the child is gone, so the signal only comes when
 * the case's process dies), then the page operations.  Exit status 0, or
 * 10 + the index of the operation that failed.  Only async-signal-safe
 * work: the child of a threaded process.
 */
static void __attribute__((noreturn)) fork_child(const struct us_act *a, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(2);
	for (int i = 0; i < a->ncops; i++) {
		const struct us_cop *o = &a->cops[i];
		char *page = a->addr + o->pg * a->psize;

		switch (o->op) {
		case 'r':
			if (us_pattern_check(page, a->psize, o->pg, o->seed))
				_exit(10 + i);
			break;
		case 'z':
			for (size_t j = 0; j < a->psize; j += 8)
				if (*(volatile uint64_t *)(page + j))
					_exit(10 + i);
			break;
		case 'p':
		case 'P': {
			/* PM_UFFD_WP (bit 57) of the child's pagemap entry */
			uint64_t e = 0;
			int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

			if (fd < 0 || pread(fd, &e, sizeof(e),
					    (off_t)((uintptr_t)page / 4096 * sizeof(e))) != sizeof(e))
				_exit(3);
			close(fd);
			if (!!(e & (1ULL << 57)) != (o->op == 'P'))
				_exit(10 + i);
			break;
		}
		case 'w':
			*(volatile uint64_t *)page = 1; /* the (trapping) write */
			us_pattern(page, a->psize, o->pg, o->seed);
			if (us_pattern_check(page, a->psize, o->pg, o->seed))
				_exit(10 + i);
			break;
		}
	}
	_exit(0);
}

/* wait for the child with a deadline; SIGKILL it after */
static void fork_wait(struct us_act *a, pid_t pid)
{
	uint64_t t0 = us_now_us();
	int st;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid) {
			a->status = st;
			return;
		}
		if (w < 0 && errno != EINTR) {
			snprintf(a->ferr, sizeof(a->ferr), "waitpid: %s", strerror(errno));
			return;
		}
		if (us_now_us() - t0 > a->child_ms * 1000ULL) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			snprintf(a->ferr, sizeof(a->ferr),
				 "forked child still running after %u ms (killed)", a->child_ms);
			return;
		}
		usleep(500);
	}
}

static void *act_thread(void *arg)
{
	struct us_act *a = arg;
	size_t bad;
	pid_t pid, me = getpid();

	atomic_store(&a->tid, (int)syscall(SYS_gettid));
	switch (a->op) {
	case US_ACT_READ:
		(void)*(volatile uint64_t *)a->addr;
		if (a->psize && (bad = us_pattern_check(a->addr, a->psize, a->pg, a->seed)))
			snprintf(a->ferr, sizeof(a->ferr), "page %zu: content wrong at byte %zu",
				 a->pg, bad - 1);
		break;
	case US_ACT_READZ:
		for (size_t j = 0; j < a->psize; j += 8)
			if (*(volatile uint64_t *)(a->addr + j)) {
				snprintf(a->ferr, sizeof(a->ferr), "page %zu: byte %zu not zero",
					 a->pg, j);
				break;
			}
		break;
	case US_ACT_WRITE:
		*(volatile uint64_t *)a->addr = 1;
		us_pattern(a->addr, a->psize, a->pg, a->seed);
		if ((bad = us_pattern_check(a->addr, a->psize, a->pg, a->seed)))
			snprintf(a->ferr, sizeof(a->ferr),
				 "page %zu: content wrong at byte %zu after the write", a->pg,
				 bad - 1);
		break;
	case US_ACT_MADVISE:
		a->ret = madvise(a->addr, a->len, a->advice);
		a->err = a->ret < 0 ? errno : 0;
		break;
	case US_ACT_MUNMAP:
		a->ret = munmap(a->addr, a->len);
		a->err = a->ret < 0 ? errno : 0;
		break;
	case US_ACT_MREMAP: {
		void *p = mremap(a->addr, a->len, a->len, MREMAP_MAYMOVE | MREMAP_FIXED, a->addr2);

		a->err = p == MAP_FAILED ? errno : 0;
		a->ret = p == MAP_FAILED ? -1 : (long)(uintptr_t)p;
		break;
	}
	case US_ACT_PUNCH:
		a->ret = fallocate(a->advice, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(a->pg * a->psize), (off_t)a->len);
		a->err = a->ret < 0 ? errno : 0;
		break;
	case US_ACT_FORK:
		pid = fork();
		if (pid == 0)
			fork_child(a, me);
		if (pid < 0) {
			a->err = errno;
			snprintf(a->ferr, sizeof(a->ferr), "fork: %s", strerror(errno));
			break;
		}
		a->pid = pid;
		atomic_store(&a->forked, true);
		fork_wait(a, pid);
		break;
	}
	atomic_store(&a->done, true);
	return NULL;
}

int us_act_start(struct us_ctx *ctx, struct us_act *a)
{
	atomic_store(&a->done, false);
	atomic_store(&a->forked, false);
	atomic_store(&a->tid, 0);
	a->ferr[0] = '\0';
	if (!a->child_ms)
		a->child_ms = 3000;
	if (pthread_create(&a->t, NULL, act_thread, a))
		return us_fail(ctx, "pthread_create failed");
	a->started = true;
	return US_PASS;
}

int us_act_wait(struct us_ctx *ctx, struct us_act *a, unsigned ms, const char *what)
{
	uint64_t t0 = us_now_us();

	while (!atomic_load(&a->done) && us_now_us() - t0 < ms * 1000ULL)
		usleep(200);
	if (!atomic_load(&a->done))
		return us_fail(ctx, "%s: thread still blocked after %u ms (state %c)", what, ms,
			       us_thread_state(atomic_load(&a->tid)));
	pthread_join(a->t, NULL);
	a->started = false;
	if (a->ferr[0])
		return us_fail(ctx, "%s: %s", what, a->ferr);
	return US_PASS;
}

int us_act_blocked(struct us_ctx *ctx, struct us_act *a, unsigned ms, const char *what)
{
	uint64_t t0 = us_now_us();
	char st = '?';

	while (us_now_us() - t0 < ms * 1000ULL) {
		if (atomic_load(&a->done))
			return us_fail(ctx, "%s: completed, want it blocked until the event is read%s%s",
				       what, a->ferr[0] ? ": " : "", a->ferr);
		/* the forking thread sleeps in its wait for the child too */
		if (atomic_load(&a->forked))
			return us_fail(ctx, "%s: fork() returned, want it blocked until the event "
				       "is read", what);
		if (atomic_load(&a->tid)) {
			st = us_thread_state(atomic_load(&a->tid));
			if (st == 'S' || st == 'D')
				return US_PASS;
		}
		usleep(200);
	}
	return us_fail(ctx, "%s: not blocked after %u ms (state %c)", what, ms, st);
}

const char *us_event_name(unsigned ev)
{
	switch (ev) {
	case UFFD_EVENT_PAGEFAULT: return "PAGEFAULT";
	case UFFD_EVENT_FORK: return "FORK";
	case UFFD_EVENT_REMAP: return "REMAP";
	case UFFD_EVENT_REMOVE: return "REMOVE";
	case UFFD_EVENT_UNMAP: return "UNMAP";
	}
	return "unknown event";
}

int us_msg_next(struct us_ctx *ctx, int fd, unsigned ms, struct uffd_msg *m, const char *what)
{
	uint64_t t0 = us_now_us();

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t el = us_now_us() - t0;
		ssize_t n;

		if (el >= ms * 1000ULL)
			return us_fail(ctx, "%s: no message within %u ms", what, ms);
		if (poll(&p, 1, (int)((ms * 1000ULL - el) / 1000) + 1) < 0 && errno != EINTR)
			return us_fail(ctx, "%s: poll: %s", what, strerror(errno));
		if (!(p.revents & POLLIN))
			continue;
		n = read(fd, m, sizeof(*m));
		if (n == (ssize_t)sizeof(*m))
			return US_PASS;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		return us_fail(ctx, "%s: read uffd: %s", what, n < 0 ? strerror(errno) : "short read");
	}
}

int us_msg_none(struct us_ctx *ctx, int fd, unsigned ms, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct uffd_msg m;

	if (poll(&p, 1, (int)ms) < 0 && errno != EINTR)
		return us_fail(ctx, "%s: poll: %s", what, strerror(errno));
	if (!(p.revents & POLLIN))
		return US_PASS;
	if (read(fd, &m, sizeof(m)) != sizeof(m))
		return US_PASS; /* a racing reader; nothing to name */
	if (m.event == UFFD_EVENT_PAGEFAULT)
		return us_fail(ctx, "%s: unexpected fault at 0x%llx flags 0x%llx", what,
			       (unsigned long long)m.arg.pagefault.address,
			       (unsigned long long)m.arg.pagefault.flags);
	return us_fail(ctx, "%s: unexpected %s event", what, us_event_name(m.event));
}

int us_expect_fault(struct us_ctx *ctx, int fd, unsigned ms, uintptr_t page, size_t psize,
		    uint64_t want, uint64_t mask, const char *what)
{
	struct uffd_msg m;
	uintptr_t addr;
	int rc = us_msg_next(ctx, fd, ms, &m, what);

	if (rc)
		return rc;
	if (m.event != UFFD_EVENT_PAGEFAULT)
		return us_fail(ctx, "%s: %s event, want a fault at 0x%lx", what,
			       us_event_name(m.event), (unsigned long)page);
	addr = (uintptr_t)m.arg.pagefault.address;
	if (addr < page || addr >= page + psize)
		return us_fail(ctx, "%s: fault at 0x%lx, want 0x%lx", what, (unsigned long)addr,
			       (unsigned long)page);
	if ((m.arg.pagefault.flags & mask) != want)
		return us_fail(ctx, "%s: fault flags 0x%llx, want 0x%llx (of mask 0x%llx)", what,
			       (unsigned long long)m.arg.pagefault.flags, (unsigned long long)want,
			       (unsigned long long)mask);
	return US_PASS;
}

int us_copy_page(int fd, uintptr_t dst, size_t psize, size_t pg, uint64_t seed, uint64_t mode)
{
	struct uffdio_copy c = { .dst = dst, .len = psize, .mode = mode };
	char *buf = mmap(NULL, psize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret = 0, tries = 0;

	if (buf == MAP_FAILED)
		return -errno;
	us_pattern(buf, psize, pg, seed);
	c.src = (uintptr_t)buf;
	while (ioctl(fd, UFFDIO_COPY, &c) < 0) {
		ret = -errno;
		if (ret != -EAGAIN || ++tries > 1000)
			break;
		c.copy = 0;
		ret = 0;
		usleep(100);
	}
	munmap(buf, psize);
	return ret;
}

/* ------------------------------------------------------------------ */

enum ev_case { E_FORK, E_FORK_NONE, E_REMAP, E_REMOVE, E_UNMAP, E_ORDER, E_TID, E_EXACT, E_PUNCH };

struct erun {
	struct us_ctx *ctx;
	struct us_area a;
	int uffd;
	size_t ps;
	unsigned ms;	/* deadline for one step */
	uint64_t seed;
	struct us_act t[4];
};

#define FAULT_MASK (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)

static bool kind_shared(enum us_kind k)
{
	return k == US_SHMEM || k == US_HUGETLB_SHARED;
}

/* map, register MISSING with the case's features; a skip or failure code */
static int ev_setup(struct erun *r, struct us_ctx *ctx, size_t npages, uint64_t feats,
		    const uint64_t *populate_seed)
{
	bool huge = us_kind_psize(ctx->kind) > 4096;
	int ret;

	r->ctx = ctx;
	r->ms = 2000;
	r->uffd = -1;
	r->seed = 0xe7e70000ULL + ctx->kind * 131;
	ret = us_area_map(&r->a, ctx->kind, npages, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages (%zu needed)", npages);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	r->ps = r->a.psize;
	if (populate_seed) /* page 1 populated before registering */
		us_pattern(r->a.p + r->ps, r->ps, 1, *populate_seed);
	r->uffd = us_uffd_open(feats, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)feats,
			       strerror(-r->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_MISSING: %s", strerror(errno));
	return US_PASS;
}

static uintptr_t pgaddr(const char *base, size_t ps, size_t pg)
{
	return (uintptr_t)base + pg * ps;
}

/* start a read of page pg at base (content seed checked after) */
static int start_read(struct erun *r, struct us_act *a, char *base, size_t pg, uint64_t seed)
{
	memset(a, 0, sizeof(*a));
	a->op = US_ACT_READ;
	a->addr = base + pg * r->ps;
	a->psize = r->ps;
	a->pg = pg;
	a->seed = seed;
	return us_act_start(r->ctx, a);
}

/* one fault: read page pg, expect its MISSING fault, COPY seed, wait */
static int fault_cycle(struct erun *r, char *base, size_t pg, uint64_t seed, const char *what)
{
	struct us_act *a = &r->t[0];
	int rc, ret;

	if ((rc = start_read(r, a, base, pg, seed)))
		return rc;
	if ((rc = us_expect_fault(r->ctx, r->uffd, r->ms, pgaddr(base, r->ps, pg), r->ps, 0,
				  FAULT_MASK, what)))
		return rc;
	ret = us_copy_page(r->uffd, pgaddr(base, r->ps, pg), r->ps, pg, seed, 0);
	if (ret < 0)
		return us_fail(r->ctx, "%s: UFFDIO_COPY: %s", what, strerror(-ret));
	return us_act_wait(r->ctx, a, r->ms, what);
}

/* a read of a page that must not fault */
static int read_nofault(struct erun *r, char *base, size_t pg, uint64_t seed, const char *what)
{
	struct us_act *a = &r->t[0];
	int rc;

	if ((rc = start_read(r, a, base, pg, seed)))
		return rc;
	if ((rc = us_act_wait(r->ctx, a, r->ms, what)))
		return rc;
	return us_msg_none(r->ctx, r->uffd, 0, what);
}

/* the event that a thread's syscall raises: it blocks until read */
static int expect_event(struct erun *r, struct us_act *a, unsigned ev, struct uffd_msg *m,
			const char *what)
{
	int rc;

	if ((rc = us_act_blocked(r->ctx, a, r->ms, what)))
		return rc;
	if ((rc = us_msg_next(r->ctx, r->uffd, r->ms, m, what)))
		return rc;
	if (m->event != ev) {
		if (m->event == UFFD_EVENT_PAGEFAULT)
			return us_fail(r->ctx, "%s: a fault at 0x%llx, want a %s event", what,
				       (unsigned long long)m->arg.pagefault.address,
				       us_event_name(ev));
		return us_fail(r->ctx, "%s: %s event, want %s", what, us_event_name(m->event),
			       us_event_name(ev));
	}
	return US_PASS;
}

/* start/end of a REMOVE or UNMAP event */
static int check_range(struct erun *r, const struct uffd_msg *m, uintptr_t start, uintptr_t end,
		       const char *what)
{
	if (m->arg.remove.start != start || m->arg.remove.end != end)
		return us_fail(r->ctx, "%s: %s start 0x%llx end 0x%llx, want 0x%lx 0x%lx", what,
			       us_event_name(m->event), (unsigned long long)m->arg.remove.start,
			       (unsigned long long)m->arg.remove.end, (unsigned long)start,
			       (unsigned long)end);
	return US_PASS;
}

int us_child_status(struct us_ctx *ctx, const struct us_act *a, const char *what)
{
	int st = a->status;

	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return US_PASS;
	if (WIFEXITED(st) && WEXITSTATUS(st) >= 10) {
		const struct us_cop *o = &a->cops[WEXITSTATUS(st) - 10];

		if (o->op == 'p' || o->op == 'P')
			return us_fail(ctx, "%s: the child's page %zu: PM_UFFD_WP %s", what, o->pg,
				       o->op == 'P' ? "clear, want set" : "set, want clear");
		return us_fail(ctx, "%s: the child's %s of page %zu: content wrong", what,
			       o->op == 'w' ? "write" : "read", o->pg);
	}
	if (WIFEXITED(st))
		return us_fail(ctx, "%s: the child exited with %d", what, WEXITSTATUS(st));
	return us_fail(ctx, "%s: the child was killed by signal %d", what, WTERMSIG(st));
}

/* a spot for mremap to move len bytes to (aligned to ps); NULL on failure */
static char *reserve_spot(size_t len, size_t ps)
{
	char *p = mmap(NULL, len + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	return (char *)(((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1));
}

/* event/fork and event/fork-none */
static int run_fork(struct erun *r, bool event)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *f = &r->t[0], *p = &r->t[1];
	uint64_t sa = r->seed + 1, sc = r->seed + 2;
	struct us_cop cops[3];
	struct uffd_msg m;
	int rc, ret, cfd = -1, n = 0;

	/* page 0: the parent's fault, pending across the fork */
	if ((rc = start_read(r, p, r->a.p, 0, sa)))
		return rc;
	if ((rc = us_expect_fault(ctx, r->uffd, r->ms, pgaddr(r->a.p, r->ps, 0), r->ps, 0,
				  FAULT_MASK, "parent's fault on page 0")))
		return rc;
	cops[n++] = (struct us_cop){ 1, 'r', sa }; /* populated before the fork */
	if (event) {
		cops[n++] = (struct us_cop){ 2, 'r', sc };
		cops[n++] = (struct us_cop){ 3, 'r', sc };
	} else {
		cops[n++] = (struct us_cop){ 2, 'z', 0 };
		/* a shmem hole read by the child would fill the shared page cache
		 * (or, private, the cache below it): the parent's pending COPY would
		 * then find the page there */
		if (ctx->kind == US_ANON || ctx->kind == US_HUGETLB)
			cops[n++] = (struct us_cop){ 0, 'z', 0 };
	}
	memset(f, 0, sizeof(*f));
	f->op = US_ACT_FORK;
	f->addr = r->a.p;
	f->psize = r->ps;
	f->cops = cops;
	f->ncops = n;
	if ((rc = us_act_start(ctx, f)))
		return rc;
	if (event) {
		if ((rc = expect_event(r, f, UFFD_EVENT_FORK, &m, "fork")))
			return rc;
		cfd = (int)m.arg.fork.ufd;
		if (fcntl(cfd, F_GETFD) < 0)
			return us_fail(ctx, "FORK event: ufd %d is not an open fd: %s", cfd,
				       strerror(errno));
		/* the child's faults, on the child's uffd, in the child's order */
		for (size_t pg = 2; pg <= 3; pg++) {
			char what[64];

			snprintf(what, sizeof(what), "the child's fault on page %zu", pg);
			if ((rc = us_expect_fault(ctx, cfd, r->ms, pgaddr(r->a.p, r->ps, pg), r->ps,
						  0, FAULT_MASK, what)))
				return rc;
			ret = us_copy_page(cfd, pgaddr(r->a.p, r->ps, pg), r->ps, pg, sc, 0);
			if (ret == -ENOMEM && r->ps > 4096)
				return us_skip(ctx, "no free huge pages for the child's COPY");
			if (ret < 0)
				return us_fail(ctx, "%s: UFFDIO_COPY on the child's uffd: %s", what,
					       strerror(-ret));
		}
	}
	/* the child ends: nothing (more) for the parent's uffd */
	if ((rc = us_act_wait(ctx, f, f->child_ms + r->ms, "fork and the child")))
		return rc;
	/* a child's fault on a huge page it has no reservation for is SIGBUS
	 * when none is free (hugetlb's MAP_PRIVATE rule), not a uffd failure */
	if (r->ps > 4096 && WIFSIGNALED(f->status) && WTERMSIG(f->status) == SIGBUS)
		return us_skip(ctx, "no free huge pages: the child got SIGBUS");
	if ((rc = us_child_status(ctx, f, "fork")))
		return rc;
	if ((rc = us_msg_none(ctx, r->uffd, 20, "the parent's uffd after the fork")))
		return rc;
	if (cfd >= 0 && (rc = us_msg_none(ctx, cfd, 0, "the child's uffd after its exit")))
		return rc;
	/* the parent's pending fault is still there to resolve */
	ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, 0), r->ps, 0, sa, 0);
	if (ret < 0)
		return us_fail(ctx, "COPY of the parent's page 0 after the fork: %s", strerror(-ret));
	if ((rc = us_act_wait(ctx, p, r->ms, "the parent's fault on page 0")))
		return rc;
	if (cfd >= 0)
		close(cfd);
	return US_PASS;
}

static int run_remap(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1];
	struct uffd_msg m;
	char *to = reserve_spot(r->a.len, r->ps);
	int rc;

	if (!to)
		return us_fail(ctx, "mmap a spot for mremap: %s", strerror(errno));
	if ((rc = fault_cycle(r, r->a.p, 0, r->seed, "fault on page 0 before mremap")))
		return rc;
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MREMAP;
	t->addr = r->a.p;
	t->addr2 = to;
	t->len = r->a.len;
	if ((rc = us_act_start(ctx, t)) || (rc = expect_event(r, t, UFFD_EVENT_REMAP, &m, "mremap")))
		return rc;
	if (m.arg.remap.from != (uintptr_t)r->a.p || m.arg.remap.to != (uintptr_t)to ||
	    m.arg.remap.len != r->a.len)
		return us_fail(ctx, "REMAP from 0x%llx to 0x%llx len %llu, want 0x%lx 0x%lx %zu",
			       (unsigned long long)m.arg.remap.from,
			       (unsigned long long)m.arg.remap.to,
			       (unsigned long long)m.arg.remap.len, (unsigned long)r->a.p,
			       (unsigned long)to, r->a.len);
	if ((rc = us_act_wait(ctx, t, r->ms, "mremap")))
		return rc;
	if (t->ret != (long)(uintptr_t)to)
		return us_fail(ctx, "mremap: %s", t->err ? strerror(t->err) : "moved elsewhere");
	/* the handler now works with the new base */
	if ((rc = fault_cycle(r, to, 1, r->seed, "fault on page 1 after mremap")) ||
	    (rc = fault_cycle(r, to, 3, r->seed, "fault on page 3 after mremap")) ||
	    (rc = read_nofault(r, to, 0, r->seed, "page 0, moved")))
		return rc;
	r->a.p = to; /* for the caller */
	return US_PASS;
}

/* MADV_DONTNEED empties private pages; shared ones stay in the page cache
 * (and would not fault again), so they are punched with MADV_REMOVE */
static int remove_advice(enum us_kind k)
{
	return kind_shared(k) ? MADV_REMOVE : MADV_DONTNEED;
}

static const char *advice_name(int adv)
{
	return adv == MADV_REMOVE ? "MADV_REMOVE" : "MADV_DONTNEED";
}

static int run_remove(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1];
	uint64_t s2 = r->seed + 5;
	struct uffd_msg m;
	char what[64];
	int rc, ret;

	/* all 4 pages populated (COPY without a fault) */
	for (size_t pg = 0; pg < 4; pg++) {
		ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, pg), r->ps, pg, r->seed, 0);
		if (ret < 0)
			return us_fail(ctx, "populate page %zu: UFFDIO_COPY: %s", pg, strerror(-ret));
	}
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MADVISE;
	t->addr = r->a.p + r->ps;
	t->len = 2 * r->ps;
	t->advice = remove_advice(ctx->kind);
	snprintf(what, sizeof(what), "%s of pages 1-2", advice_name(t->advice));
	if ((rc = us_act_start(ctx, t)) || (rc = expect_event(r, t, UFFD_EVENT_REMOVE, &m, what)) ||
	    (rc = check_range(r, &m, pgaddr(r->a.p, r->ps, 1), pgaddr(r->a.p, r->ps, 3), what)) ||
	    (rc = us_act_wait(ctx, t, r->ms, what)))
		return rc;
	if (t->ret < 0)
		return us_fail(ctx, "%s: %s", what, strerror(t->err));
	if ((rc = read_nofault(r, r->a.p, 0, r->seed, "page 0 (kept)")) ||
	    (rc = fault_cycle(r, r->a.p, 1, s2, "page 1 after REMOVE")) ||
	    (rc = fault_cycle(r, r->a.p, 2, s2, "page 2 after REMOVE")) ||
	    (rc = read_nofault(r, r->a.p, 3, r->seed, "page 3 (kept)")))
		return rc;
	return US_PASS;
}

/*
 * event/punch-hole: the documented REMOVE sources are madvise(MADV_REMOVE)
 * and madvise(MADV_DONTNEED); a hole punched in the file itself
 * (fallocate) empties the pages without an event: the monitor is not told,
 * the pages just fault again.
 */
static int run_punch(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1];
	uint64_t s2 = r->seed + 7;
	int rc, ret;

	for (size_t pg = 0; pg < 4; pg++) {
		ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, pg), r->ps, pg, r->seed, 0);
		if (ret < 0)
			return us_fail(ctx, "populate page %zu: UFFDIO_COPY: %s", pg, strerror(-ret));
	}
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_PUNCH;
	t->advice = r->a.memfd;
	t->pg = 1;
	t->psize = r->ps;
	t->len = 2 * r->ps;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = us_act_wait(ctx, t, r->ms, "fallocate(PUNCH_HOLE) of pages 1-2 (nobody reading)")))
		return rc;
	if (t->ret < 0)
		return us_fail(ctx, "fallocate(PUNCH_HOLE): %s", strerror(t->err));
	if ((rc = us_msg_none(ctx, r->uffd, 20, "after fallocate(PUNCH_HOLE)")) ||
	    (rc = read_nofault(r, r->a.p, 0, r->seed, "page 0 (kept)")) ||
	    (rc = fault_cycle(r, r->a.p, 1, s2, "page 1 after the punch")) ||
	    (rc = fault_cycle(r, r->a.p, 2, s2, "page 2 after the punch")) ||
	    (rc = read_nofault(r, r->a.p, 3, r->seed, "page 3 (kept)")))
		return rc;
	return US_PASS;
}

static int run_unmap(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1];
	struct uffd_msg m;
	int rc;

	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MUNMAP;
	t->addr = r->a.p + r->ps;
	t->len = r->ps;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = expect_event(r, t, UFFD_EVENT_UNMAP, &m, "munmap of page 1")) ||
	    (rc = check_range(r, &m, pgaddr(r->a.p, r->ps, 1), pgaddr(r->a.p, r->ps, 2),
			      "munmap of page 1")) ||
	    (rc = us_act_wait(ctx, t, r->ms, "munmap of page 1")))
		return rc;
	if (t->ret < 0)
		return us_fail(ctx, "munmap: %s", strerror(t->err));
	if ((rc = fault_cycle(r, r->a.p, 0, r->seed, "page 0 after UNMAP")) ||
	    (rc = fault_cycle(r, r->a.p, 2, r->seed, "page 2 after UNMAP")) ||
	    (rc = fault_cycle(r, r->a.p, 3, r->seed, "page 3 after UNMAP")) ||
	    (rc = us_msg_none(ctx, r->uffd, 20, "after the last fault")))
		return rc;
	return US_PASS;
}

/*
 * event/order: the handler's log of what it read must be exactly
 *   F0 REMOVE[0,1) F0 F1 UNMAP[7,8) REMAP(7 pages) UNMAP[0,7) F2' FORK C3 F4'
 * (F = a fault on the parent's uffd, ' = at the new base, C = a fault on the
 * child's uffd; the UNMAP of the old range after REMAP is the move's own
 * unmap, sent because EVENT_UNMAP is on too).  F1 is read and left unresolved while munmap runs: the
 * UNMAP event is read while a fault is still waiting, and the fault is
 * resolved after.  Each step is checked as it comes; the log names the
 * sequence read so far when something is out of place.
 */
static int run_order(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1], *f1 = &r->t[2];
	uint64_t s2 = r->seed + 9, sc = r->seed + 10;
	char *to = reserve_spot(7 * r->ps, r->ps);
	struct us_cop cop = { 3, 'r', sc };
	struct uffd_msg m;
	int rc, ret, cfd;

	if (!to)
		return us_fail(ctx, "mmap a spot for mremap: %s", strerror(errno));
	/* F0, REMOVE, F0 again */
	if ((rc = fault_cycle(r, r->a.p, 0, r->seed, "step 1 (fault A on page 0)")))
		return rc;
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MADVISE;
	t->addr = r->a.p;
	t->len = r->ps;
	t->advice = remove_advice(ctx->kind);
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = expect_event(r, t, UFFD_EVENT_REMOVE, &m, "step 2 (REMOVE of page 0)")) ||
	    (rc = check_range(r, &m, pgaddr(r->a.p, r->ps, 0), pgaddr(r->a.p, r->ps, 1),
			      "step 2 (REMOVE of page 0)")) ||
	    (rc = us_act_wait(ctx, t, r->ms, "step 2 (REMOVE of page 0)")) ||
	    (rc = fault_cycle(r, r->a.p, 0, s2, "step 3 (fault B on page 0 again)")))
		return rc;
	/* F1 read, left pending; UNMAP; then F1 resolved */
	if ((rc = start_read(r, f1, r->a.p, 1, r->seed)) ||
	    (rc = us_expect_fault(ctx, r->uffd, r->ms, pgaddr(r->a.p, r->ps, 1), r->ps, 0,
				  FAULT_MASK, "step 4 (fault C on page 1)")))
		return rc;
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MUNMAP;
	t->addr = r->a.p + 7 * r->ps;
	t->len = r->ps;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = expect_event(r, t, UFFD_EVENT_UNMAP, &m, "step 5 (UNMAP of page 7, C pending)")) ||
	    (rc = check_range(r, &m, pgaddr(r->a.p, r->ps, 7), pgaddr(r->a.p, r->ps, 8),
			      "step 5 (UNMAP of page 7)")) ||
	    (rc = us_act_wait(ctx, t, r->ms, "step 5 (UNMAP of page 7)")))
		return rc;
	ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, 1), r->ps, 1, r->seed, 0);
	if (ret < 0)
		return us_fail(ctx, "step 6 (COPY for C after UNMAP): %s", strerror(-ret));
	if ((rc = us_act_wait(ctx, f1, r->ms, "step 6 (fault C resolved)")))
		return rc;
	/* REMAP of the 7 pages left; F2 at the new base */
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MREMAP;
	t->addr = r->a.p;
	t->addr2 = to;
	t->len = 7 * r->ps;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = expect_event(r, t, UFFD_EVENT_REMAP, &m, "step 7 (REMAP)")))
		return rc;
	if (m.arg.remap.from != (uintptr_t)r->a.p || m.arg.remap.to != (uintptr_t)to ||
	    m.arg.remap.len != 7 * r->ps)
		return us_fail(ctx, "step 7: REMAP from 0x%llx to 0x%llx len %llu, want 0x%lx 0x%lx %zu",
			       (unsigned long long)m.arg.remap.from,
			       (unsigned long long)m.arg.remap.to,
			       (unsigned long long)m.arg.remap.len, (unsigned long)r->a.p,
			       (unsigned long)to, 7 * r->ps);
	/* with EVENT_UNMAP as well, the move unmaps the old range: its UNMAP
	 * event comes after REMAP, before mremap returns */
	if ((rc = us_msg_next(ctx, r->uffd, r->ms, &m, "step 7b (UNMAP of the old range)")))
		return rc;
	if (m.event != UFFD_EVENT_UNMAP)
		return us_fail(ctx, "step 7b: %s after REMAP, want UNMAP of the old range",
			       us_event_name(m.event));
	if ((rc = check_range(r, &m, (uintptr_t)r->a.p, pgaddr(r->a.p, r->ps, 7),
			      "step 7b (UNMAP of the old range)")))
		return rc;
	if ((rc = us_act_wait(ctx, t, r->ms, "step 7 (REMAP)")))
		return rc;
	if (t->ret != (long)(uintptr_t)to)
		return us_fail(ctx, "step 7: mremap: %s", t->err ? strerror(t->err) : "moved elsewhere");
	r->a.p = to;
	r->a.len = 7 * r->ps;
	if ((rc = fault_cycle(r, to, 2, r->seed, "step 8 (fault D on page 2 at the new base)")))
		return rc;
	/* FORK; the child's fault on its own uffd */
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_FORK;
	t->addr = to;
	t->psize = r->ps;
	t->cops = &cop;
	t->ncops = 1;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = expect_event(r, t, UFFD_EVENT_FORK, &m, "step 9 (FORK)")))
		return rc;
	cfd = (int)m.arg.fork.ufd;
	if ((rc = us_expect_fault(ctx, cfd, r->ms, pgaddr(to, r->ps, 3), r->ps, 0, FAULT_MASK,
				  "step 10 (the child's fault on page 3)")))
		return rc;
	ret = us_copy_page(cfd, pgaddr(to, r->ps, 3), r->ps, 3, sc, 0);
	if (ret == -ENOMEM && r->ps > 4096)
		return us_skip(ctx, "no free huge pages for the child's COPY");
	if (ret < 0)
		return us_fail(ctx, "step 10: COPY on the child's uffd: %s", strerror(-ret));
	if ((rc = us_act_wait(ctx, t, t->child_ms + r->ms, "step 10 (the child)")) ||
	    (rc = us_child_status(ctx, t, "step 10")) ||
	    (rc = fault_cycle(r, to, 4, r->seed, "step 11 (fault E on page 4)")) ||
	    (rc = us_msg_none(ctx, r->uffd, 20, "after step 11")))
		return rc;
	close(cfd);
	/* the content: 0 after REMOVE, 1 resolved after UNMAP, 2 and 4 at the new base */
	if ((rc = read_nofault(r, to, 0, s2, "page 0 at the end")) ||
	    (rc = read_nofault(r, to, 1, r->seed, "page 1 at the end")))
		return rc;
	return US_PASS;
}

/*
 * event/order, second half: a fault raised (and queued: the uffd polls
 * readable) before an event is raised is read before that event.
 */
static int run_order_queued(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	struct us_act *t = &r->t[1], *f = &r->t[2];
	struct pollfd p = { .fd = r->uffd, .events = POLLIN };
	struct uffd_msg m;
	int rc, ret;

	if ((rc = start_read(r, f, r->a.p, 5, r->seed)))
		return rc;
	if (poll(&p, 1, (int)r->ms) != 1)
		return us_fail(ctx, "queued fault: uffd not readable after %u ms", r->ms);
	memset(t, 0, sizeof(*t));
	t->op = US_ACT_MUNMAP;
	t->addr = r->a.p + 6 * r->ps;
	t->len = r->ps;
	if ((rc = us_act_start(ctx, t)) ||
	    (rc = us_act_blocked(ctx, t, r->ms, "munmap of page 6 (fault queued)")) ||
	    (rc = us_expect_fault(ctx, r->uffd, r->ms, pgaddr(r->a.p, r->ps, 5), r->ps, 0, FAULT_MASK,
				  "the queued fault, read before the UNMAP raised after it")))
		return rc;
	if ((rc = us_msg_next(ctx, r->uffd, r->ms, &m, "UNMAP after the queued fault")))
		return rc;
	if (m.event != UFFD_EVENT_UNMAP)
		return us_fail(ctx, "UNMAP after the queued fault: %s", us_event_name(m.event));
	if ((rc = us_act_wait(ctx, t, r->ms, "munmap of page 6")))
		return rc;
	ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, 5), r->ps, 5, r->seed, 0);
	if (ret < 0)
		return us_fail(ctx, "COPY of page 5: %s", strerror(-ret));
	return us_act_wait(ctx, f, r->ms, "the queued fault on page 5");
}

/* event/thread-id: two threads alive at once (distinct tids), one fault each */
static int run_tid(struct erun *r)
{
	struct us_ctx *ctx = r->ctx;
	int rc, ret;

	for (size_t pg = 0; pg < 2; pg++)
		if ((rc = start_read(r, &r->t[pg], r->a.p, pg, r->seed)))
			return rc;
	for (int i = 0; i < 2; i++) {
		struct uffd_msg m;
		size_t pg;

		if ((rc = us_msg_next(ctx, r->uffd, r->ms, &m, "fault")))
			return rc;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			return us_fail(ctx, "%s event, want a fault", us_event_name(m.event));
		pg = (m.arg.pagefault.address - (uintptr_t)r->a.p) / r->ps;
		if (m.arg.pagefault.address < (uintptr_t)r->a.p || pg > 1)
			return us_fail(ctx, "fault at 0x%llx, want page 0 or 1",
				       (unsigned long long)m.arg.pagefault.address);
		if ((int)m.arg.pagefault.feat.ptid != atomic_load(&r->t[pg].tid))
			return us_fail(ctx, "page %zu: feat.ptid %u, the faulting thread is %d "
				       "(the other %d)", pg, m.arg.pagefault.feat.ptid,
				       atomic_load(&r->t[pg].tid), atomic_load(&r->t[!pg].tid));
	}
	for (size_t pg = 0; pg < 2; pg++) {
		ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, pg), r->ps, pg, r->seed, 0);
		if (ret < 0)
			return us_fail(ctx, "page %zu: UFFDIO_COPY: %s", pg, strerror(-ret));
	}
	for (size_t pg = 0; pg < 2; pg++)
		if ((rc = us_act_wait(ctx, &r->t[pg], r->ms, "faulting thread")))
			return rc;
	return US_PASS;
}

/* one fault at page pg + off; returns the reported address in *got */
static int fault_at(struct erun *r, size_t pg, size_t off, uint64_t *got, const char *what)
{
	struct us_act *a = &r->t[0];
	struct uffd_msg m;
	int rc, ret;

	memset(a, 0, sizeof(*a));
	a->op = US_ACT_READ;
	a->addr = r->a.p + pg * r->ps + off;
	if ((rc = us_act_start(r->ctx, a)) || (rc = us_msg_next(r->ctx, r->uffd, r->ms, &m, what)))
		return rc;
	if (m.event != UFFD_EVENT_PAGEFAULT)
		return us_fail(r->ctx, "%s: %s event", what, us_event_name(m.event));
	*got = m.arg.pagefault.address;
	ret = us_copy_page(r->uffd, pgaddr(r->a.p, r->ps, pg), r->ps, pg, r->seed, 0);
	if (ret < 0)
		return us_fail(r->ctx, "%s: UFFDIO_COPY: %s", what, strerror(-ret));
	return us_act_wait(r->ctx, a, r->ms, what);
}

/* event/exact-address: masked without the feature, exact with it */
static int run_exact(struct erun *r, uint64_t feats)
{
	struct us_ctx *ctx = r->ctx;
	size_t off = r->ps > 4096 ? 0x12348 : 0x328;
	uintptr_t at0 = pgaddr(r->a.p, r->ps, 0) + off, at1 = pgaddr(r->a.p, r->ps, 1) + off;
	uint64_t got;
	int rc;

	/* r->uffd was opened without EXACT_ADDRESS */
	if ((rc = fault_at(r, 0, off, &got, "fault without EXACT_ADDRESS")))
		return rc;
	if (got == at0 || got % 4096 || got > at0 || got < pgaddr(r->a.p, r->ps, 0))
		return us_fail(ctx, "without EXACT_ADDRESS: address 0x%llx for a fault at 0x%lx, "
			       "want it page-masked", (unsigned long long)got, (unsigned long)at0);
	us_metric(ctx, "masked_offset", (double)(got - pgaddr(r->a.p, r->ps, 0)));
	close(r->uffd);
	r->uffd = us_uffd_open(feats | UFFD_FEATURE_EXACT_ADDRESS, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		return us_fail(ctx, "uffd with EXACT_ADDRESS: %s", strerror(-r->uffd));
	struct uffdio_register reg = { .range = { (uintptr_t)r->a.p, r->a.len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		return us_fail(ctx, "UFFDIO_REGISTER_MODE_MISSING: %s", strerror(errno));
	if ((rc = fault_at(r, 1, off, &got, "fault with EXACT_ADDRESS")))
		return rc;
	if (got != at1)
		return us_fail(ctx, "with EXACT_ADDRESS: address 0x%llx, want 0x%lx",
			       (unsigned long long)got, (unsigned long)at1);
	return US_PASS;
}

static int run_event(struct us_ctx *ctx, enum ev_case e)
{
	struct erun *r = calloc(1, sizeof(*r));
	uint64_t feats = us_kind_features(ctx->kind, UFFDIO_REGISTER_MODE_MISSING) | ctx->c->features;
	uint64_t pop;
	size_t npages = e == E_ORDER ? 8 : 4;
	uint64_t t0 = us_now_us();
	int rc;

	if (!r)
		return us_fail(ctx, "out of memory");
	pop = 0xe7e70000ULL + ctx->kind * 131 + 1; /* run_fork's seed for page 1 */
	if (e == E_EXACT)
		feats &= ~(uint64_t)UFFD_FEATURE_EXACT_ADDRESS;
	rc = ev_setup(r, ctx, npages, feats, e == E_FORK || e == E_FORK_NONE ? &pop : NULL);
	if (rc)
		return rc;
	switch (e) {
	case E_FORK: rc = run_fork(r, true); break;
	case E_FORK_NONE: rc = run_fork(r, false); break;
	case E_REMAP: rc = run_remap(r); break;
	case E_REMOVE: rc = run_remove(r); break;
	case E_UNMAP: rc = run_unmap(r); break;
	case E_ORDER:
		rc = run_order(r);
		if (!rc)
			rc = run_order_queued(r);
		break;
	case E_TID: rc = run_tid(r); break;
	case E_EXACT: rc = run_exact(r, feats); break;
	case E_PUNCH: rc = run_punch(r); break;
	}
	if (rc)
		return rc; /* threads may be blocked: left to the child's exit */
	us_metric(ctx, "elapsed_us", (double)(us_now_us() - t0));
	/* with EVENT_UNMAP a munmap would wait for a reader: close first; the
	 * area goes with the case's process */
	close(r->uffd);
	return US_PASS;
}

int us_case_ev_fork(struct us_ctx *ctx)
{
	return run_event(ctx, E_FORK);
}

int us_case_ev_fork_none(struct us_ctx *ctx)
{
	return run_event(ctx, E_FORK_NONE);
}

int us_case_ev_remap(struct us_ctx *ctx)
{
	return run_event(ctx, E_REMAP);
}

int us_case_ev_remove(struct us_ctx *ctx)
{
	return run_event(ctx, E_REMOVE);
}

int us_case_ev_unmap(struct us_ctx *ctx)
{
	return run_event(ctx, E_UNMAP);
}

int us_case_ev_order(struct us_ctx *ctx)
{
	return run_event(ctx, E_ORDER);
}

int us_case_ev_thread_id(struct us_ctx *ctx)
{
	return run_event(ctx, E_TID);
}

int us_case_ev_exact(struct us_ctx *ctx)
{
	return run_event(ctx, E_EXACT);
}

int us_case_ev_punch(struct us_ctx *ctx)
{
	return run_event(ctx, E_PUNCH);
}
