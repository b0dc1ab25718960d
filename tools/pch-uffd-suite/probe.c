// SPDX-License-Identifier: MIT
/*
 * probe.c - open a uffd, and probe once what the kernel offers: features
 * (UFFDIO_API with features 0), and per memory kind and registration mode
 * the ioctls mask UFFDIO_REGISTER reports.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "suite.h"

int us_uffd_open_syscall(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);

	return fd < 0 ? -errno : fd;
}

int us_uffd_open_dev(int flags)
{
	int dev, fd;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	/* USERFAULTFD_IOC_NEW takes userfaultfd(2)'s flags */
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	if (fd < 0)
		fd = -errno;
	close(dev);
	return fd;
}

int us_uffd_api(int fd, uint64_t features, struct uffdio_api *out)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (out)
		*out = api;
	return 0;
}

int us_uffd_open(uint64_t features, int flags)
{
	int fd, ret;

	fd = us_uffd_open_syscall(flags);
	if (fd == -EPERM || fd == -ENOSYS)
		fd = us_uffd_open_dev(flags);
	if (fd < 0)
		return fd;
	ret = us_uffd_api(fd, features, NULL);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

static const unsigned modes[US_NMODES] = {
	[US_MODE_MISSING] = UFFDIO_REGISTER_MODE_MISSING,
	[US_MODE_WP] = UFFDIO_REGISTER_MODE_WP,
	[US_MODE_MINOR] = UFFDIO_REGISTER_MODE_MINOR,
};

static void probe_kind(struct us_probe *p, int uffd, enum us_kind k)
{
	struct us_area a;
	int ret;

	ret = us_area_map(&a, k, 1, false);
	if (ret < 0) {
		p->kind_ok[k] = false;
		if (ret == -ENOMEM && (k == US_HUGETLB || k == US_HUGETLB_SHARED))
			snprintf(p->kind_why[k], sizeof(p->kind_why[k]), "no free huge pages");
		else
			snprintf(p->kind_why[k], sizeof(p->kind_why[k]), "cannot map %s: %s",
				 us_kind_name(k), strerror(-ret));
		return;
	}
	p->kind_ok[k] = true;
	for (int m = 0; m < US_NMODES; m++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)a.p, .len = a.len },
			.mode = modes[m],
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			p->reg_err[k][m] = errno;
			continue;
		}
		p->reg_ioctls[k][m] = reg.ioctls;
		ioctl(uffd, UFFDIO_UNREGISTER, &reg.range);
	}
	us_area_unmap(&a);
}

void us_probe_run(struct us_probe *p)
{
	struct uffdio_api api;
	int fd, ret;

	memset(p, 0, sizeof(*p));
	fd = us_uffd_open_syscall(O_CLOEXEC);
	p->syscall_ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	fd = us_uffd_open_dev(O_CLOEXEC);
	p->dev_ok = fd >= 0;
	if (fd >= 0)
		close(fd);

	fd = us_uffd_open_syscall(O_CLOEXEC);
	if (fd == -EPERM || fd == -ENOSYS)
		fd = us_uffd_open_dev(O_CLOEXEC);
	if (fd < 0) {
		snprintf(p->uffd_why, sizeof(p->uffd_why),
			 "userfaultfd(2) and /dev/userfaultfd: %s", strerror(-fd));
		return;
	}
	ret = us_uffd_api(fd, 0, &api);
	close(fd);
	if (ret < 0) {
		snprintf(p->uffd_why, sizeof(p->uffd_why), "UFFDIO_API: %s", strerror(-ret));
		return;
	}
	p->uffd_ok = true;
	p->features = api.features;
	p->api_ioctls = api.ioctls;

	/* register with every feature that changes what registration allows
	 * (not SIGBUS or WP_ASYNC, which change fault handling) */
	fd = us_uffd_open(p->features & ~(uint64_t)(UFFD_FEATURE_SIGBUS | UFFD_FEATURE_WP_ASYNC),
			  O_CLOEXEC);
	if (fd < 0)
		fd = us_uffd_open(0, O_CLOEXEC);
	if (fd < 0) {
		p->uffd_ok = false;
		snprintf(p->uffd_why, sizeof(p->uffd_why), "second uffd: %s", strerror(-fd));
		return;
	}
	for (int k = 0; k < US_NKINDS; k++)
		probe_kind(p, fd, (enum us_kind)k);
	close(fd);
}
