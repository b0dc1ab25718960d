// SPDX-License-Identifier: MIT
/*
 * uffd.c - pch-vm's userfaultfd: open it the way the kernel allows, probe
 * the features, register the guest RAM for MISSING faults, and for MINOR
 * faults too when it is shared memory the helper fills through its own
 * mapping (then maps into pch-vm with UFFDIO_CONTINUE).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pch/uffd-compat.h"

#include "log.h"
#include "util.h"
#include "pch-vm.h"

/*
 * What pch-vm would like to enable when the kernel offers it: the thread id
 * in fault messages, and registration of shmem and hugetlbfs memory for
 * MISSING and MINOR faults (the helper learns what is on from UFFD).
 */
#define VM_UFFD_WANTED \
	(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS | \
	 UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS)

static const struct {
	uint64_t bit;
	const char *name;
} feature_names[] = {
	{ UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM" },
	{ UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS" },
	{ UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM" },
	{ UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS" },
};

/* Names of the features in mask, " "-separated, into buf. */
static const char *features_str(uint64_t mask, char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < PCH_ARRAY_SIZE(feature_names); i++)
		if ((mask & feature_names[i].bit) && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? " " : "",
						feature_names[i].name);
	return buf;
}

/* "MISSING" or "MISSING|MINOR" */
static const char *mode_str(uint64_t mode)
{
	return (mode & UFFDIO_REGISTER_MODE_MINOR) ? "MISSING|MINOR" : "MISSING";
}

/*
 * Open a userfaultfd with flags: the userfaultfd(2) syscall first, then
 * /dev/userfaultfd (which works where vm.unprivileged_userfaultfd=0 forbids
 * the syscall to an unprivileged user, given access to the device node).
 * fd, or -errno of the syscall with both reasons in why.
 */
static int uffd_open(int flags, char *why, size_t whylen)
{
	int fd, dev, err_sys, err_dev;

	fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd >= 0)
		return fd;
	err_sys = errno;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		err_dev = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	} else {
		err_dev = errno;
	}
	snprintf(why, whylen,
		 "userfaultfd(2): %s%s; /dev/userfaultfd: %s", strerror(err_sys),
		 err_sys == EPERM ? " (vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE)" : "",
		 strerror(err_dev));
	return -err_sys;
}

/* UFFDIO_API on fd asking for features; *api gets the kernel's answer. */
static int uffd_api(int fd, uint64_t features, struct uffdio_api *api)
{
	memset(api, 0, sizeof(*api));
	api->api = UFFD_API;
	api->features = features;
	if (ioctl(fd, UFFDIO_API, api) < 0)
		return -errno;
	return 0;
}

/*
 * Open the uffd, enable features, register the RAM.  See pch-vm.h.
 */
int vm_uffd_setup(struct vm *vm, bool *unavailable)
{
	const struct vm_backing *bk = vm->cfg.backing;
	const int flags = O_CLOEXEC | O_NONBLOCK;
	struct uffdio_register reg;
	struct uffdio_api api;
	char why[256];
	int probe, fd, ret;
	uint64_t lacking;

	/*
	 * UFFDIO_API may be issued once per uffd, and with features the
	 * kernel lacks it fails: probe on a throwaway uffd with features 0,
	 * which answers with everything the kernel supports.
	 */
	*unavailable = false;
	probe = uffd_open(flags, why, sizeof(why));
	if (probe < 0) {
		pch_err("userfaultfd unavailable: %s", why);
		*unavailable = true;
		return probe;
	}
	ret = uffd_api(probe, 0, &api);
	close(probe);
	if (ret) {
		pch_err("UFFDIO_API probe: %s", strerror(-ret));
		return ret;
	}
	vm->uffd_features_avail = api.features;
	/* --workload balloon: the helper must hear of every discard and unmap */
	if (vm->cfg.workload == VM_WL_BALLOON &&
	    (vm_balloon_uffd_features() & ~vm->uffd_features_avail)) {
		pch_err("--workload balloon needs userfaultfd features this kernel does not offer: "
			"EVENT_REMOVE and EVENT_UNMAP (offered 0x%llx)",
			(unsigned long long)vm->uffd_features_avail);
		return -EOPNOTSUPP;
	}
	/* one message naming all that this backing lacks */
	lacking = bk->reg_features & ~vm->uffd_features_avail;
	if (lacking) {
		pch_err("%s RAM needs userfaultfd features this kernel does not offer: %s",
			bk->name, features_str(lacking, why, sizeof(why)));
		return -EOPNOTSUPP;
	}

	fd = uffd_open(flags, why, sizeof(why));
	if (fd < 0) {
		pch_err("userfaultfd unavailable: %s", why);
		*unavailable = true;
		return fd;
	}
	vm->uffd_features = vm->uffd_features_avail & VM_UFFD_WANTED;
	if (vm->cfg.workload == VM_WL_BALLOON)
		vm->uffd_features |= vm_balloon_uffd_features();
	ret = uffd_api(fd, vm->uffd_features, &api);
	if (ret) {
		pch_err("UFFDIO_API with features 0x%llx: %s",
			(unsigned long long)vm->uffd_features, strerror(-ret));
		goto err_close;
	}
	/* the kernel answers with all it supports; what is on is what we asked */

	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uint64_t)(uintptr_t)vm->ram;
	reg.range.len = vm->cfg.ram_bytes;
	reg.mode = bk->reg_mode;
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		ret = -errno;
		pch_err("UFFDIO_REGISTER %s of %llu bytes of %s RAM at %p: %s", mode_str(bk->reg_mode),
			(unsigned long long)vm->cfg.ram_bytes, bk->name, vm->ram, strerror(-ret));
		goto err_close;
	}
	/* shared RAM is filled through the helper's mapping, then mapped here */
	if (!(reg.ioctls & (1ull << bk->install_ioctl))) {
		pch_err("UFFDIO_REGISTER %s: %s not offered on the %s RAM (ioctls 0x%llx)%s",
			mode_str(bk->reg_mode),
			bk->install_ioctl == _UFFDIO_CONTINUE ? "UFFDIO_CONTINUE" : "UFFDIO_COPY",
			bk->name, (unsigned long long)reg.ioctls,
			bk->install_ioctl == _UFFDIO_CONTINUE ?
				": this kernel cannot resolve MINOR faults with CONTINUE" : "");
		ret = -EOPNOTSUPP;
		goto err_close;
	}
	vm->uffd_ioctls = reg.ioctls;
	vm->uffd = fd;
	pch_info("uffd %d: %s RAM registered %s, features 0x%llx enabled (0x%llx offered), "
		 "ioctls 0x%llx", fd, bk->name, mode_str(bk->reg_mode),
		 (unsigned long long)vm->uffd_features,
		 (unsigned long long)vm->uffd_features_avail, (unsigned long long)reg.ioctls);
	return 0;

err_close:
	close(fd);
	return ret;
}

/*
 * Unregister the RAM (no-op when the helper already did, at COMPLETE).  The
 * kernel wakes the threads blocked on it; a later access to a page that
 * never arrived reads the zero page, so verification reports it instead of
 * hanging.  0 or -errno.
 */
int vm_uffd_unregister(struct vm *vm)
{
	struct uffdio_range range = {
		.start = (uint64_t)(uintptr_t)vm->ram,
		.len = vm->cfg.ram_bytes,
	};

	if (vm->uffd < 0)
		return 0;
	if (ioctl(vm->uffd, UFFDIO_UNREGISTER, &range) < 0) {
		int ret = -errno;

		pch_warn("UFFDIO_UNREGISTER: %s", strerror(-ret));
		return ret;
	}
	/*
	 * UNREGISTER wakes the threads waiting in the range, but a fault that
	 * was queueing while it ran can miss that wake-up and sleep until the
	 * next one (seen on 6.18 under load: a vCPU blocked 5 s after
	 * COMPLETE).  A wake on a range no longer registered is harmless, and
	 * the woken thread retries its access against plain memory.
	 */
	if (ioctl(vm->uffd, UFFDIO_WAKE, &range) < 0)
		pch_warn("UFFDIO_WAKE after unregister: %s", strerror(errno));
	return 0;
}
