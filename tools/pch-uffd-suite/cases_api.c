// SPDX-License-Identifier: MIT
/*
 * cases_api.c - the api/ cases: the UFFDIO_API handshake, /dev/userfaultfd against
 * userfaultfd(2), and UFFD_USER_MODE_ONLY.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "suite.h"

#define ALWAYS_IOCTLS (US_IOCTL(_UFFDIO_API) | US_IOCTL(_UFFDIO_REGISTER) | \
		       US_IOCTL(_UFFDIO_UNREGISTER))

/* an uninitialised uffd refuses everything but UFFDIO_API; a bad api, an
 * unknown feature are refused; the reply is a subset of the probe; a second
 * UFFDIO_API is refused */
int us_case_handshake(struct us_ctx *ctx)
{
	const struct us_probe *p = ctx->probe;
	struct uffdio_api api;
	struct uffdio_register reg = { .range = { .start = 0x100000, .len = 4096 },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	int fd, ret, rc = US_PASS;

	fd = us_uffd_open_syscall(O_CLOEXEC);
	if (fd == -EPERM || fd == -ENOSYS)
		fd = us_uffd_open_dev(O_CLOEXEC);
	if (fd < 0)
		return us_fail(ctx, "open: %s", strerror(-fd));
	if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0 || errno != EINVAL) {
		rc = us_fail(ctx, "UFFDIO_REGISTER before UFFDIO_API: %s, want EINVAL",
			     strerror(errno));
		goto out;
	}
	api = (struct uffdio_api){ .api = 0xab };
	if (ioctl(fd, UFFDIO_API, &api) == 0 || errno != EINVAL) {
		rc = us_fail(ctx, "UFFDIO_API with api 0xab: %s, want EINVAL", strerror(errno));
		goto out;
	}
	ret = us_uffd_api(fd, 1ULL << 63, NULL);
	if (ret != -EINVAL) {
		rc = us_fail(ctx, "UFFDIO_API with feature bit 63: %s, want EINVAL", strerror(-ret));
		goto out;
	}
	ret = us_uffd_api(fd, 0, &api);
	if (ret < 0) {
		rc = us_fail(ctx, "UFFDIO_API after refused ones: %s", strerror(-ret));
		goto out;
	}
	if (api.api != UFFD_API) {
		rc = us_fail(ctx, "UFFDIO_API replied api 0x%llx", (unsigned long long)api.api);
		goto out;
	}
	if (api.features & ~p->features) {
		rc = us_fail(ctx, "features 0x%llx not a subset of the probe's 0x%llx",
			     (unsigned long long)api.features, (unsigned long long)p->features);
		goto out;
	}
	if ((api.ioctls & ALWAYS_IOCTLS) != ALWAYS_IOCTLS) {
		rc = us_fail(ctx, "ioctls 0x%llx lack API/REGISTER/UNREGISTER",
			     (unsigned long long)api.ioctls);
		goto out;
	}
	ret = us_uffd_api(fd, 0, NULL);
	if (ret != -EINVAL) {
		rc = us_fail(ctx, "second UFFDIO_API: %s, want EINVAL", ret ? strerror(-ret) : "ok");
		goto out;
	}
	close(fd);
	/* every feature offered can be asked for at once (root: EVENT_FORK too) */
	fd = us_uffd_open(p->features, O_CLOEXEC);
	if (fd < 0)
		return us_fail(ctx, "UFFDIO_API with every feature 0x%llx: %s",
			       (unsigned long long)p->features, strerror(-fd));
	us_metric(ctx, "features", (double)api.features);
out:
	close(fd);
	return rc;
}

/* /dev/userfaultfd's USERFAULTFD_IOC_NEW gives the same uffd as the syscall */
int us_case_dev(struct us_ctx *ctx)
{
	struct uffdio_api a1, a2;
	int f1, f2, ret;

	f1 = us_uffd_open_syscall(O_CLOEXEC);
	f2 = us_uffd_open_dev(O_CLOEXEC);
	if (f2 == -ENOENT) {
		if (f1 >= 0)
			close(f1);
		return us_skip(ctx, "no /dev/userfaultfd");
	}
	if (f1 < 0 && f2 < 0)
		return us_fail(ctx, "userfaultfd(2): %s; /dev/userfaultfd: %s", strerror(-f1),
			       strerror(-f2));
	if (f1 < 0 || f2 < 0) {
		int bad = f1 < 0 ? f1 : f2;

		close(f1 < 0 ? f2 : f1);
		return us_skip(ctx, "only one path is open to this user (%s refused: %s)",
			       f1 < 0 ? "userfaultfd(2)" : "/dev/userfaultfd", strerror(-bad));
	}
	ret = us_uffd_api(f1, 0, &a1);
	if (!ret)
		ret = us_uffd_api(f2, 0, &a2);
	close(f1);
	close(f2);
	if (ret)
		return us_fail(ctx, "UFFDIO_API: %s", strerror(-ret));
	if (a1.features != a2.features || a1.ioctls != a2.ioctls)
		return us_fail(ctx, "syscall features 0x%llx ioctls 0x%llx, dev 0x%llx 0x%llx",
			       (unsigned long long)a1.features, (unsigned long long)a1.ioctls,
			       (unsigned long long)a2.features, (unsigned long long)a2.ioctls);
	/* the flags of USERFAULTFD_IOC_NEW are those of userfaultfd(2) */
	f2 = us_uffd_open_dev(O_CLOEXEC | O_NONBLOCK);
	if (f2 < 0)
		return us_fail(ctx, "USERFAULTFD_IOC_NEW(O_NONBLOCK): %s", strerror(-f2));
	ret = fcntl(f2, F_GETFL);
	close(f2);
	if (ret < 0 || !(ret & O_NONBLOCK))
		return us_fail(ctx, "USERFAULTFD_IOC_NEW(O_NONBLOCK) gave flags 0x%x", ret);
	return US_PASS;
}

/* a handler that resolves every fault with a page of zeros (COPY) */
struct umo {
	int uffd;
	size_t psize;
	char *zero;
	atomic_int faults;
	atomic_bool stop;
};

static void *umo_handler(void *arg)
{
	struct umo *u = arg;
	struct uffd_msg msg;

	while (!atomic_load(&u->stop)) {
		struct pollfd pfd = { .fd = u->uffd, .events = POLLIN };

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		if (read(u->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		atomic_fetch_add(&u->faults, 1);
		struct uffdio_copy cp = {
			.dst = msg.arg.pagefault.address & ~(u->psize - 1),
			.src = (uintptr_t)u->zero,
			.len = u->psize,
		};
		if (ioctl(u->uffd, UFFDIO_COPY, &cp) < 0 && errno == EEXIST) {
			struct uffdio_range r = { .start = cp.dst, .len = cp.len };

			ioctl(u->uffd, UFFDIO_WAKE, &r);
		}
	}
	return NULL;
}

/* read() from a pipe into page pg of a: the kernel faults on the user page */
static ssize_t kernel_touch(struct us_area *a, size_t pg)
{
	int p[2];
	char buf[64];
	ssize_t n;

	if (pipe(p) < 0)
		return -1;
	memset(buf, 'k', sizeof(buf));
	if (write(p[1], buf, sizeof(buf)) != sizeof(buf))
		n = -1;
	else
		n = read(p[0], a->p + pg * a->psize, sizeof(buf));
	int e = errno;

	close(p[0]);
	close(p[1]);
	errno = e;
	return n;
}

static int umo_run(struct us_ctx *ctx, bool user_only, struct us_area *a)
{
	struct umo u = { .psize = a->psize };
	pthread_t th;
	ssize_t n;
	int rc = US_PASS, e;
	uint64_t need = us_kind_features(ctx->kind, UFFDIO_REGISTER_MODE_MISSING);

	u.uffd = us_uffd_open(need, O_CLOEXEC | O_NONBLOCK | (user_only ? UFFD_USER_MODE_ONLY : 0));
	if (u.uffd < 0)
		return us_fail(ctx, "uffd%s: %s", user_only ? " (UFFD_USER_MODE_ONLY)" : "",
			       strerror(-u.uffd));
	u.zero = mmap(NULL, a->psize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)a->p, .len = a->len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (u.zero == MAP_FAILED || ioctl(u.uffd, UFFDIO_REGISTER, &reg) < 0) {
		close(u.uffd);
		return us_fail(ctx, "register: %s", strerror(errno));
	}
	pthread_create(&th, NULL, umo_handler, &u);

	/* page 0: touched by the kernel */
	n = kernel_touch(a, 0);
	e = errno;
	if (user_only) {
		if (n >= 0 || e != EFAULT)
			rc = us_fail(ctx, "USER_MODE_ONLY: read() into the range gave %zd (%s), want EFAULT",
				     n, n < 0 ? strerror(e) : "no error");
		else if (atomic_load(&u.faults) != 0)
			rc = us_fail(ctx, "USER_MODE_ONLY: a kernel fault reached the handler");
	} else if (n != 64 || a->p[0] != 'k' || atomic_load(&u.faults) != 1) {
		rc = us_fail(ctx, "without USER_MODE_ONLY: read() gave %zd (%s), %d faults, want 64 and 1",
			     n, n < 0 ? strerror(e) : "ok", atomic_load(&u.faults));
	}
	/* page 1: touched by the user, always delivered */
	if (rc == US_PASS) {
		int before = atomic_load(&u.faults);
		volatile char *q = a->p + a->psize;

		if (*q != 0 || atomic_load(&u.faults) != before + 1)
			rc = us_fail(ctx, "%s: a user fault gave %d messages, want 1",
				     user_only ? "USER_MODE_ONLY" : "default",
				     atomic_load(&u.faults) - before);
	}
	atomic_store(&u.stop, true);
	pthread_join(th, NULL);
	close(u.uffd);
	munmap(u.zero, a->psize);
	return rc;
}

/* UFFD_USER_MODE_ONLY: faults the kernel takes on the range (copy_to_user)
 * are refused (EFAULT), never delivered; user faults are; without the flag the
 * kernel's fault is delivered and resolved */
int us_case_user_mode_only(struct us_ctx *ctx)
{
	struct us_area a;
	int ret, rc;

	for (int pass = 0; pass < 2; pass++) {
		ret = us_area_map(&a, ctx->kind, 2, false);
		if (ret == -ENOMEM && a.psize > 4096)
			return us_skip(ctx, "no free huge pages");
		if (ret < 0)
			return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
		rc = umo_run(ctx, pass == 0, &a);
		us_area_unmap(&a);
		if (rc != US_PASS)
			return rc;
	}
	return US_PASS;
}

/* UFFDIO_REGISTER of [start, start+len) in mode: 0 and *ioctls, or -errno */
static int try_register(int uffd, uintptr_t start, size_t len, uint64_t mode, uint64_t *ioctls)
{
	struct uffdio_register reg = { .range = { start, len }, .mode = mode };

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

static int unregister(int uffd, uintptr_t start, size_t len)
{
	struct uffdio_range r = { start, len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

static bool is_huge_kind(enum us_kind k)
{
	return k == US_HUGETLB || k == US_HUGETLB_SHARED;
}

static const char *modes_name(unsigned m, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s", m & UFFDIO_REGISTER_MODE_MISSING ? "MISSING" : "",
		 (m & UFFDIO_REGISTER_MODE_MISSING) && (m & 6) ? "|" : "",
		 m & UFFDIO_REGISTER_MODE_WP ? "WP" : "",
		 (m & UFFDIO_REGISTER_MODE_WP) && (m & 4) ? "|" : "",
		 m & UFFDIO_REGISTER_MODE_MINOR ? "MINOR" : "");
	return buf;
}

/*
 * Every combination of MISSING, WP and MINOR registered on one page of the
 * kind, with a uffd that asked for every feature the kernel offers.  The
 * uAPI says: a combination is accepted when each of its modes is (MINOR only
 * on shmem and hugetlb); WRITEPROTECT is offered iff WP was asked, CONTINUE
 * iff MINOR; COPY and WAKE always; ZEROPAGE never on hugetlb (always
 * elsewhere); the mask of a combination is the union of its modes' masks.
 * A mode of 0 or with an unknown bit is EINVAL.  The single modes must agree
 * with the probe.
 */
int us_case_register_modes(struct us_ctx *ctx)
{
	const struct us_probe *p = ctx->probe;
	const uint64_t wp = US_IOCTL(_UFFDIO_WRITEPROTECT), cont = US_IOCTL(_UFFDIO_CONTINUE),
		       zero = US_IOCTL(_UFFDIO_ZEROPAGE),
		       always = US_IOCTL(_UFFDIO_COPY) | US_IOCTL(_UFFDIO_WAKE);
	bool huge = is_huge_kind(ctx->kind);
	int err[8] = { 0 }, uffd, ret, rc = US_PASS;
	uint64_t mask[8] = { 0 };
	char line[400], nm[24];
	size_t off = 0;
	struct us_area a;

	ret = us_area_map(&a, ctx->kind, 1, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages");
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	uffd = us_uffd_open(p->features, O_CLOEXEC);
	if (uffd < 0)
		return us_fail(ctx, "uffd with features 0x%llx: %s", (unsigned long long)p->features,
			       strerror(-uffd));
	for (unsigned m = 1; m < 8; m++) {
		err[m] = try_register(uffd, (uintptr_t)a.p, a.len, m, &mask[m]);
		if (!err[m] && (ret = unregister(uffd, (uintptr_t)a.p, a.len)) < 0) {
			rc = us_fail(ctx, "UFFDIO_UNREGISTER after %s: %s",
				     modes_name(m, nm, sizeof(nm)), strerror(-ret));
			goto out;
		}
		off += (size_t)snprintf(line + off, sizeof(line) - off, " %s:", modes_name(m, nm, sizeof(nm)));
		if (err[m])
			off += (size_t)snprintf(line + off, sizeof(line) - off, "%s", strerror(-err[m]));
		else
			off += (size_t)snprintf(line + off, sizeof(line) - off, "0x%llx",
						(unsigned long long)mask[m]);
		if (off >= sizeof(line))
			off = sizeof(line) - 1;
	}
	us_diag("%s/%s/%s:%s", ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), line);

	for (unsigned m = 1; m < 8; m++) {
		bool want_ok = true;
		uint64_t uni = 0;

		modes_name(m, nm, sizeof(nm));
		for (unsigned b = 1; b < 8; b <<= 1)
			if (m & b) {
				want_ok = want_ok && !err[b];
				uni |= mask[b];
			}
		if (err[m] && err[m] != -EINVAL) {
			rc = us_fail(ctx, "%s refused with %s, want EINVAL", nm, strerror(-err[m]));
			goto out;
		}
		if (!err[m] != want_ok) {
			rc = us_fail(ctx, "%s %s though its modes alone were%s all accepted", nm,
				     err[m] ? "refused" : "accepted", want_ok ? "" : " not");
			goto out;
		}
		if (err[m])
			continue;
		if (!!(mask[m] & wp) != !!(m & UFFDIO_REGISTER_MODE_WP) ||
		    !!(mask[m] & cont) != !!(m & UFFDIO_REGISTER_MODE_MINOR) ||
		    (mask[m] & always) != always || !!(mask[m] & zero) == huge) {
			rc = us_fail(ctx, "%s offers ioctls 0x%llx: want WRITEPROTECT iff WP, CONTINUE "
				     "iff MINOR, COPY and WAKE, ZEROPAGE %s", nm,
				     (unsigned long long)mask[m], huge ? "never on hugetlb" : "always");
			goto out;
		}
		if (mask[m] != uni) {
			rc = us_fail(ctx, "%s offers ioctls 0x%llx, its modes alone 0x%llx together", nm,
				     (unsigned long long)mask[m], (unsigned long long)uni);
			goto out;
		}
	}
	for (unsigned i = 0; i < US_NMODES; i++) {
		unsigned m = 1u << i;

		if (-err[m] != p->reg_err[ctx->kind][i] ||
		    (!err[m] && mask[m] != p->reg_ioctls[ctx->kind][i])) {
			rc = us_fail(ctx, "%s: %s / 0x%llx here, the probe had %s / 0x%llx",
				     us_mode_name(m), strerror(-err[m]), (unsigned long long)mask[m],
				     strerror(p->reg_err[ctx->kind][i]),
				     (unsigned long long)p->reg_ioctls[ctx->kind][i]);
			goto out;
		}
	}
	if (ctx->kind == US_ANON && err[UFFDIO_REGISTER_MODE_MINOR] != -EINVAL) {
		rc = us_fail(ctx, "MINOR on anonymous memory: %s, want EINVAL",
			     err[4] ? strerror(-err[4]) : "accepted");
		goto out;
	}
	/* no mode, an unknown mode bit */
	static const uint64_t bad[] = { 0, 1u << 3, UFFDIO_REGISTER_MODE_MISSING | 1u << 3, 1ull << 63 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ret = try_register(uffd, (uintptr_t)a.p, a.len, bad[i], NULL);
		if (ret != -EINVAL) {
			rc = us_fail(ctx, "UFFDIO_REGISTER mode 0x%llx: %s, want EINVAL",
				     (unsigned long long)bad[i], ret ? strerror(-ret) : "accepted");
			goto out;
		}
	}
out:
	close(uffd);
	us_area_unmap(&a);
	return rc;
}

/*
 * UFFDIO_REGISTER ranges must be aligned to the kind's page size: on small
 * pages a start or length not page-aligned, or a length of 0, is EINVAL; on
 * hugetlb a range page-aligned but not huge-page-aligned (start or end) is
 * EINVAL, and so is a UFFDIO_COPY of a 4 KiB page into it (UFFDIO_ZEROPAGE
 * of a whole huge page too: hugetlb has none).  The aligned
 * range is accepted (the control), and so is an aligned range running over a
 * hole: registration covers the mappings in the range and skips holes (it
 * only needs one mapping there); COPY into the hole is then ENOENT.
 */
int us_case_register_align(struct us_ctx *ctx)
{
	const size_t small = (size_t)getpagesize();
	const uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
	bool huge = is_huge_kind(ctx->kind);
	struct us_area a;
	int uffd, ret, rc = US_PASS;
	uintptr_t p;
	size_t ps;

	ret = us_area_map(&a, ctx->kind, 3, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages");
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	p = (uintptr_t)a.p;
	ps = a.psize;
	/* a hole after two pages */
	if (munmap(a.p + 2 * ps, ps) < 0)
		return us_fail(ctx, "munmap: %s", strerror(errno));
	a.len = 2 * ps;
	uffd = us_uffd_open(us_kind_features(ctx->kind, mode), O_CLOEXEC);
	if (uffd < 0)
		return us_fail(ctx, "uffd: %s", strerror(-uffd));

	struct {
		const char *what;
		uintptr_t start;
		size_t len;
	} bad[] = {
		{ "start + 1", p + 1, ps },
		{ "length 100", p, 100 },
		{ "length 0", p, 0 },
		{ "start + 4 KiB (huge page)", p + small, ps },
		{ "length 4 KiB (huge page)", p, small },
		{ "length one page + 4 KiB (huge page)", p, ps + small },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!huge && strstr(bad[i].what, "huge"))
			continue;
		ret = try_register(uffd, bad[i].start, bad[i].len, mode, NULL);
		if (ret != -EINVAL) {
			rc = us_fail(ctx, "UFFDIO_REGISTER %s: %s, want EINVAL", bad[i].what,
				     ret ? strerror(-ret) : "accepted");
			goto out;
		}
	}
	ret = try_register(uffd, p, 3 * ps, mode, NULL);
	if (ret < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER of two pages and a hole: %s, want it accepted",
			     strerror(-ret));
		goto out;
	}
	if ((ret = unregister(uffd, p, 3 * ps)) < 0) {
		rc = us_fail(ctx, "UFFDIO_UNREGISTER of two pages and a hole: %s", strerror(-ret));
		goto out;
	}
	ret = try_register(uffd, p, 2 * ps, mode, NULL);
	if (ret < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER of the aligned range: %s", strerror(-ret));
		goto out;
	}
	if (huge) {
		/* COPY into hugetlb is by whole huge pages */
		char *src = malloc(ps);
		struct uffdio_copy c[] = {
			{ .dst = p, .src = (uintptr_t)src, .len = small },
			{ .dst = p + small, .src = (uintptr_t)src, .len = ps },
		};
		for (size_t i = 0; src && i < 2; i++) {
			c[i].copy = 0x5a5a;
			ret = ioctl(uffd, UFFDIO_COPY, &c[i]) < 0 ? -errno : 0;
			if (ret != -EINVAL) {
				rc = us_fail(ctx, "UFFDIO_COPY of %s into hugetlb: %s, want EINVAL",
					     i ? "a huge page at +4 KiB" : "4 KiB",
					     ret ? strerror(-ret) : "accepted");
				break;
			}
		}
		free(src);
		/* and no ZEROPAGE at all (the mask does not offer it) */
		struct uffdio_zeropage z = { .range = { p, ps } };

		ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
		if (rc == US_PASS && ret != -EINVAL)
			rc = us_fail(ctx, "UFFDIO_ZEROPAGE of a huge page: %s, want EINVAL",
				     ret ? strerror(-ret) : "done");
	}
out:
	close(uffd);
	us_area_unmap(&a);
	return rc;
}

/*
 * UFFDIO_ZEROPAGE (and UFFDIO_COPY) on a page already there is EEXIST, with
 * -EEXIST in the result field, and leaves the page alone: on anon the page
 * was filled by UFFDIO_COPY; on shmem written through a second mapping of the
 * memfd (it is in the page cache, not mapped in the registered range); on
 * shmem-private written through that alias and then read through the
 * private mapping (which maps the page cache page without a fault).  The
 * next page, missing, is zero-filled (the control).
 *
 * shmem-private, page 2 written through the alias only: ZEROPAGE does not
 * look at the page cache of a private mapping, only at its pte, so it is
 * done and the private mapping reads zeros over the file's data (seen on
 * 6.18; such a page never takes a MISSING fault, its first touch maps the
 * page cache page).
 */
int us_case_zeropage_eexist(struct us_ctx *ctx)
{
	const uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
	const uint64_t seed = 0x2e70ULL + ctx->kind;
	struct us_area a;
	int uffd, ret, rc = US_PASS;
	char *buf;
	size_t ps, bad;

	ret = us_area_map(&a, ctx->kind, 3, true);
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	ps = a.psize;
	buf = malloc(ps);
	uffd = us_uffd_open(us_kind_features(ctx->kind, mode), O_CLOEXEC);
	if (!buf || uffd < 0)
		return us_fail(ctx, "uffd: %s", buf ? strerror(-uffd) : "out of memory");
	if ((ret = try_register(uffd, (uintptr_t)a.p, a.len, mode, NULL)) < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER: %s", strerror(-ret));
		goto out;
	}
	us_pattern(buf, ps, 0, seed);
	if (a.alias) {
		memcpy(a.alias, buf, ps);
		if (ctx->kind == US_SHMEM_PRIVATE)
			(void)*(volatile char *)a.p;
	} else {
		struct uffdio_copy c = { .dst = (uintptr_t)a.p, .src = (uintptr_t)buf, .len = ps };

		if (ioctl(uffd, UFFDIO_COPY, &c) < 0) {
			rc = us_fail(ctx, "UFFDIO_COPY page 0: %s", strerror(errno));
			goto out;
		}
	}
	struct uffdio_zeropage z = { .range = { (uintptr_t)a.p, ps }, .zeropage = 0x5a5a };

	ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
	if (ret != -EEXIST || z.zeropage != -EEXIST) {
		rc = us_fail(ctx, "UFFDIO_ZEROPAGE on a populated page: %s, zeropage %lld, want "
			     "EEXIST and -EEXIST", ret ? strerror(-ret) : "done",
			     (long long)z.zeropage);
		goto out;
	}
	struct uffdio_copy c = { .dst = (uintptr_t)a.p, .src = (uintptr_t)buf, .len = ps,
				 .copy = 0x5a5a };

	ret = ioctl(uffd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
	if (ret != -EEXIST || c.copy != -EEXIST) {
		rc = us_fail(ctx, "UFFDIO_COPY on a populated page: %s, copy %lld, want EEXIST "
			     "and -EEXIST", ret ? strerror(-ret) : "done", (long long)c.copy);
		goto out;
	}
	if ((bad = us_pattern_check(a.p, ps, 0, seed))) {
		rc = us_fail(ctx, "page 0 changed by the refused ZEROPAGE (byte %zu)", bad - 1);
		goto out;
	}
	z = (struct uffdio_zeropage){ .range = { (uintptr_t)a.p + ps, ps } };
	if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 || z.zeropage != (int64_t)ps) {
		rc = us_fail(ctx, "UFFDIO_ZEROPAGE on the missing page 1: %s, zeropage %lld",
			     strerror(errno), (long long)z.zeropage);
		goto out;
	}
	for (size_t i = 0; i < ps; i += 512)
		if (a.p[ps + i]) {
			rc = us_fail(ctx, "page 1 not zero at byte %zu after UFFDIO_ZEROPAGE", i);
			goto out;
		}
	if (ctx->kind == US_SHMEM_PRIVATE) {
		us_pattern(a.alias + 2 * ps, ps, 2, seed);
		z = (struct uffdio_zeropage){ .range = { (uintptr_t)a.p + 2 * ps, ps } };
		ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
		if (ret || z.zeropage != (int64_t)ps || a.p[2 * ps] || a.p[3 * ps - 1] ||
		    us_pattern_check(a.alias + 2 * ps, ps, 2, seed)) {
			rc = us_fail(ctx, "UFFDIO_ZEROPAGE on a private page whose file page exists "
				     "(not mapped): %s, zeropage %lld, private page %s, want it done, "
				     "zeros over the file's data", ret ? strerror(-ret) : "done",
				     (long long)z.zeropage, a.p[2 * ps] ? "has data" : "zero");
			goto out;
		}
		us_diag("%s/%s/%s: ZEROPAGE on a private page whose file page is in the page "
			"cache but not mapped is done: the mapping reads zeros, the file keeps its "
			"data", ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind));
	}
out:
	free(buf);
	close(uffd);
	us_area_unmap(&a);
	return rc;
}

/*
 * UFFDIO_COPY where no uffd has a range is ENOENT, with -ENOENT in the
 * result field: into an unregistered mapping, into a hole, running past the
 * end of the registered mapping.  dst or len not aligned to the page size,
 * len 0: EINVAL (refused before any copy: the result field is left alone).
 * Through a second uffd of the same process into the first one's range the
 * COPY is done: the kernel checks that the destination is registered and in
 * the uffd's mm, not that this uffd registered it.  A valid COPY still works
 * after the refused ones.
 */
int us_case_copy_bad_range(struct us_ctx *ctx)
{
	const uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
	uint64_t feats = us_kind_features(ctx->kind, mode);
	bool huge = is_huge_kind(ctx->kind);
	struct us_area a;
	int uffd, other, ret, rc = US_PASS;
	char *buf, *plain, *hole;
	size_t ps;
	char einval_fields[96] = "";
	size_t off = 0;

	ret = us_area_map(&a, ctx->kind, 2, false);
	if (ret == -ENOMEM && huge)
		return us_skip(ctx, "no free huge pages");
	if (ret < 0)
		return us_fail(ctx, "map %s: %s", us_kind_name(ctx->kind), strerror(-ret));
	ps = a.psize;
	buf = calloc(1, ps);
	plain = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!buf || plain == MAP_FAILED)
		return us_fail(ctx, "out of memory");
	hole = plain + ps;
	munmap(hole, ps);
	uffd = us_uffd_open(feats, O_CLOEXEC);
	other = us_uffd_open(feats, O_CLOEXEC);
	if (uffd < 0 || other < 0)
		return us_fail(ctx, "uffd: %s", strerror(uffd < 0 ? -uffd : -other));
	if ((ret = try_register(uffd, (uintptr_t)a.p, a.len, mode, NULL)) < 0) {
		rc = us_fail(ctx, "UFFDIO_REGISTER: %s", strerror(-ret));
		goto out;
	}

	struct {
		const char *what;
		int fd;
		uintptr_t dst;
		size_t len;
		int want;
	} t[] = {
		{ "into an unregistered mapping", uffd, (uintptr_t)plain, ps, ENOENT },
		{ "into a hole", uffd, (uintptr_t)hole, ps, ENOENT },
		{ "through another uffd of this mm", other, (uintptr_t)a.p + ps, ps, 0 },
		{ "past the end of the registered mapping", uffd, (uintptr_t)a.p + ps, 2 * ps,
		  ENOENT },
		{ "with len 100", uffd, (uintptr_t)a.p, 100, EINVAL },
		{ "with len 0", uffd, (uintptr_t)a.p, 0, EINVAL },
		{ "to dst + 8", uffd, (uintptr_t)a.p + 8, ps, EINVAL },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct uffdio_copy c = { .dst = t[i].dst, .src = (uintptr_t)buf, .len = t[i].len,
					 .copy = 0x5a5a };

		ret = ioctl(t[i].fd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
		if (ret != -t[i].want || (t[i].want == ENOENT && c.copy != -ENOENT) ||
		    (!t[i].want && c.copy != (int64_t)ps)) {
			rc = us_fail(ctx, "UFFDIO_COPY %s: %s, copy %lld; want %s%s", t[i].what,
				     ret ? strerror(-ret) : "done", (long long)c.copy,
				     t[i].want ? strerror(t[i].want) : "it done",
				     t[i].want == ENOENT ? " and -ENOENT" : "");
			goto out;
		}
		if (t[i].want == EINVAL && off < sizeof(einval_fields))
			off += (size_t)snprintf(einval_fields + off, sizeof(einval_fields) - off,
						" %lld", (long long)c.copy);
	}
	us_diag("%s/%s/%s: ENOENT cases write -ENOENT to .copy; EINVAL cases leave it:%s; "
		"a second uffd of the process can COPY into the first one's range",
		ctx->c->cat, ctx->c->name, us_kind_name(ctx->kind), einval_fields);
	struct uffdio_copy c = { .dst = (uintptr_t)a.p, .src = (uintptr_t)buf, .len = ps };

	if (ioctl(uffd, UFFDIO_COPY, &c) < 0 || c.copy != (int64_t)ps)
		rc = us_fail(ctx, "a valid UFFDIO_COPY after the refused ones: %s, copy %lld",
			     strerror(errno), (long long)c.copy);
out:
	munmap(plain, ps);
	free(buf);
	close(other);
	close(uffd);
	us_area_unmap(&a);
	return rc;
}
