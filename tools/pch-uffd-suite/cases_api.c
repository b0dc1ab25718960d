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
