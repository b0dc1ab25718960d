// SPDX-License-Identifier: MIT
/*
 * ram.c - pch-vm's guest RAM: the backings QEMU can give it (anonymous,
 * THP, memfd, hugetlbfs shared or private), mapping them, and telling
 * whether a page is mapped in this process.
 *
 * Residency is read from /proc/self/pagemap (bit 63: a page table entry
 * maps the page).  mincore() cannot serve the shared backings: for shmem it
 * reports page-cache residency, and the helper fills the page cache before
 * it maps a page into pch-vm with UFFDIO_CONTINUE.  For the private
 * backings both answer the same and cost the same (about 1 us per call on
 * the 2-core development machine, either way), so pagemap is used
 * everywhere; mincore() stays as the fallback of the private backings when
 * /proc/self/pagemap cannot be opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <asm-generic/hugetlb_encode.h>

#include "pch/proto.h"
#include "pch/uffd-compat.h"

#include "log.h"
#include "util.h"
#include "pch-vm.h"

/*
 * <linux/memfd.h> and <linux/mman.h> would clash with glibc's <sys/mman.h>
 * (MFD_HUGETLB, MAP_*): take the 2 MiB encoding from the header they share.
 */
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB HUGETLB_FLAG_ENCODE_2MB
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB HUGETLB_FLAG_ENCODE_2MB
#endif

#define HUGE_2M (2u << 20)
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_CHUNK 65536 /* entries read at a time by vm_ram_residency */
#define THP_ENABLED_PATH "/sys/kernel/mm/transparent_hugepage/enabled"

static const struct vm_backing backings[PCH_BACKING_MAX] = {
	[PCH_BACKING_ANON] = {
		.name = "anon",
		.kind = PCH_BACKING_ANON,
		.reg_mode = UFFDIO_REGISTER_MODE_MISSING,
		.install_ioctl = _UFFDIO_COPY,
	},
	[PCH_BACKING_MEMFD] = {
		.name = "memfd",
		.kind = PCH_BACKING_MEMFD,
		.shared = true,
		.reg_mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
		.reg_features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM,
		.install_ioctl = _UFFDIO_CONTINUE,
	},
	[PCH_BACKING_HUGETLB] = {
		.name = "hugetlb",
		.kind = PCH_BACKING_HUGETLB,
		.page_size = HUGE_2M,
		.shared = true,
		.reg_mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
		.reg_features = UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_HUGETLBFS,
		.install_ioctl = _UFFDIO_CONTINUE,
	},
	[PCH_BACKING_HUGETLB_PRIVATE] = {
		.name = "hugetlb-private",
		.kind = PCH_BACKING_HUGETLB_PRIVATE,
		.page_size = HUGE_2M,
		.reg_mode = UFFDIO_REGISTER_MODE_MISSING,
		.reg_features = UFFD_FEATURE_MISSING_HUGETLBFS,
		.install_ioctl = _UFFDIO_COPY,
	},
	[PCH_BACKING_THP] = {
		.name = "thp",
		.kind = PCH_BACKING_THP,
		.thp = true,
		.reg_mode = UFFDIO_REGISTER_MODE_MISSING,
		.install_ioctl = _UFFDIO_COPY,
	},
};

/* The backing called name, or NULL. */
const struct vm_backing *vm_backing_find(const char *name)
{
	unsigned i;

	for (i = 0; i < PCH_BACKING_MAX; i++)
		if (backings[i].name && !strcmp(name, backings[i].name))
			return &backings[i];
	return NULL;
}

/* "anon|memfd|hugetlb|hugetlb-private|thp" */
const char *vm_backing_names(void)
{
	return "anon|memfd|hugetlb|hugetlb-private|thp";
}

/* Base pages unless the backing has its own (hugetlb: 2 MiB). */
uint32_t vm_backing_page_size(const struct vm_backing *bk)
{
	return bk->page_size ? bk->page_size : (uint32_t)sysconf(_SC_PAGESIZE);
}

/*
 * Record that the hugetlb RAM could not be had (err from what), with what
 * it needs and how to get it: the one failure a user can fix with a sysctl.
 */
static void huge_shortage(struct vm *vm, const char *what, int err)
{
	const char *kind = vm->cfg.backing->name;
	unsigned long long mib = vm->cfg.ram_bytes >> 20, need = vm->cfg.ram_bytes / HUGE_2M;
	long long total = pch_meminfo("HugePages_Total"), nfree = pch_meminfo("HugePages_Free");
	long long rsvd = pch_meminfo("HugePages_Rsvd"), size_kb = pch_meminfo("Hugepagesize");

	if (err != ENOMEM && err != ENOSPC) {
		vm_fail(vm, "%s of %llu MiB of %s RAM: %s", what, mib, kind, strerror(err));
		return;
	}
	if (size_kb != HUGE_2M / 1024 || total < 0 || nfree < 0 || rsvd < 0) {
		/* the default pool is another size: 2 MiB pages have their own knob */
		vm_fail(vm, "%s of %llu MiB of %s RAM: %s: needs %llu free 2 MiB huge pages "
			"(see /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)",
			what, mib, kind, strerror(err), need);
		return;
	}
	vm_fail(vm, "%s of %llu MiB of %s RAM: %s: needs %llu free 2 MiB huge pages, "
		"%lld are free and unreserved; as root: echo %llu > /proc/sys/vm/nr_hugepages",
		what, mib, kind, strerror(err), need, nfree - rsvd,
		(unsigned long long)(total - (nfree - rsvd)) + need);
}

/*
 * memfd_create + ftruncate + seals for the shared backings (the helper
 * refuses a memfd that could shrink under it); fd or -errno (recorded).
 */
static int ram_memfd(struct vm *vm, unsigned int flags)
{
	char name[PCH_BLOCK_NAME_LEN + 8];
	int fd, err;

	snprintf(name, sizeof(name), "pch-vm:%s", vm->cfg.block_name);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | flags);
	if (fd < 0) {
		err = errno;
		if (flags & MFD_HUGETLB)
			vm_fail(vm, "memfd_create(MFD_HUGETLB | MFD_HUGE_2MB): %s%s", strerror(err),
				err == EINVAL ? " (no 2 MiB hugetlb pages on this kernel)" : "");
		else
			vm_fail(vm, "memfd_create: %s", strerror(err));
		return -err;
	}
	if (ftruncate(fd, (off_t)vm->cfg.ram_bytes) < 0) {
		err = errno;
		if (flags & MFD_HUGETLB)
			huge_shortage(vm, "ftruncate", err);
		else
			vm_fail(vm, "ftruncate of the RAM memfd to %llu bytes: %s",
				(unsigned long long)vm->cfg.ram_bytes, strerror(err));
		close(fd);
		return -err;
	}
	/* as QEMU's memory-backend-memfd (seal=on): the RAM keeps its size */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		err = errno;
		vm_fail(vm, "sealing the RAM memfd (F_SEAL_SHRINK | F_SEAL_GROW): %s",
			strerror(err));
		close(fd);
		return -err;
	}
	return fd;
}

/*
 * An anonymous private mapping aligned to 2 MiB, so that every 2 MiB of it
 * can be a transparent huge page: map 2 MiB more and trim both ends.
 */
static void *map_aligned(uint64_t len)
{
	uint8_t *p, *a;
	uint64_t extra = HUGE_2M;

	p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return p;
	a = (uint8_t *)(((uintptr_t)p + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (p + len + extra > a + len)
		munmap(a + len, (size_t)(p + len + extra - (a + len)));
	return a;
}

/*
 * Map the guest RAM as cfg.backing says.  See pch-vm.h.
 */
int vm_ram_map(struct vm *vm)
{
	const struct vm_backing *bk = vm->cfg.backing;
	uint64_t len = vm->cfg.ram_bytes;
	void *p = MAP_FAILED;
	int err = 0, fd = -1;

	switch (bk->kind) {
	case PCH_BACKING_ANON:
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		err = errno;
		break;
	case PCH_BACKING_THP:
		p = map_aligned(len);
		err = errno;
		break;
	case PCH_BACKING_MEMFD:
		fd = ram_memfd(vm, 0);
		if (fd < 0)
			return fd;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		err = errno;
		break;
	case PCH_BACKING_HUGETLB:
		fd = ram_memfd(vm, MFD_HUGETLB | MFD_HUGE_2MB);
		if (fd < 0)
			return fd;
		/* reserves the huge pages now: a shortage fails here, not as SIGBUS later */
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		err = errno;
		break;
	case PCH_BACKING_HUGETLB_PRIVATE:
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
		err = errno;
		break;
	}
	if (p == MAP_FAILED) {
		if (bk->page_size == HUGE_2M)
			huge_shortage(vm, "mmap", err);
		else
			vm_fail(vm, "mmap of %llu bytes of %s RAM: %s", (unsigned long long)len,
				bk->name, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	vm->ram = p;
	vm->ram_fd = fd;

	/*
	 * Faults must come in base pages, as the helper installs them.  For
	 * thp too until vm_ram_ready(): a prefill write must not make a huge
	 * page whose other 511 pages would then be present, as zeros, and
	 * never fault.
	 */
	if (bk->page_size != HUGE_2M && madvise(vm->ram, len, MADV_NOHUGEPAGE) < 0)
		pch_warn("madvise(MADV_NOHUGEPAGE): %s", strerror(errno));

	vm->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (vm->pagemap_fd < 0) {
		err = errno;
		if (bk->shared) {
			vm_fail(vm, "/proc/self/pagemap: %s (%s RAM needs it to tell mapped pages)",
				strerror(err), bk->name);
			return -err;
		}
		pch_warn("/proc/self/pagemap: %s: residency from mincore()", strerror(err));
	}
	return 0;
}

/*
 * thp: allow huge pages, once the RAM is registered and not before.  Before
 * the prefill, a write would fault in a huge page; after it, khugepaged
 * (woken by MADV_HUGEPAGE) would collapse a 2 MiB range holding a prefilled
 * run, as seen on 6.18.  Either way the range's missing pages become zeros
 * that never fault, and the helper's UFFDIO_COPY finds them present.  In a
 * registered range khugepaged leaves missing pages alone, and a fault on an
 * untouched range goes to the uffd, which installs 4 KiB pages.
 */
void vm_ram_ready(struct vm *vm)
{
	if (vm->cfg.backing->thp && madvise(vm->ram, vm->cfg.ram_bytes, MADV_HUGEPAGE) < 0)
		pch_warn("madvise(MADV_HUGEPAGE): %s", strerror(errno));
}

/* Unmap the RAM, close its memfd and the pagemap. */
void vm_ram_unmap(struct vm *vm)
{
	if (vm->ram)
		munmap(vm->ram, vm->cfg.ram_bytes);
	vm->ram = NULL;
	if (vm->ram_fd >= 0)
		close(vm->ram_fd);
	vm->ram_fd = -1;
	if (vm->pagemap_fd >= 0)
		close(vm->pagemap_fd);
	vm->pagemap_fd = -1;
}

/* pread all of len bytes at off; 0 or -errno (-EIO on a short read). */
static int pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Is page mapped in this process?  See pch-vm.h. */
bool vm_ram_resident(const struct vm *vm, uint64_t page)
{
	uint8_t *p = vm->ram + page * vm->cfg.image.page_size;
	unsigned long base = (unsigned long)sysconf(_SC_PAGESIZE);
	unsigned char res;
	uint64_t ent;

	if (vm->pagemap_fd >= 0) {
		/* one entry per base page; a huge page sets it in all of them */
		if (pread_full(vm->pagemap_fd, &ent, sizeof(ent),
			       (off_t)((uintptr_t)p / base * sizeof(ent))))
			return true;
		return ent & PAGEMAP_PRESENT;
	}
	/* mincore only fails on unmapped memory */
	if (mincore(p, base, &res) < 0)
		return true;
	return res & 1;
}

/* Residency of every page.  See pch-vm.h. */
int vm_ram_residency(const struct vm *vm, unsigned char *out)
{
	uint64_t base = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t per = vm->cfg.image.page_size / base; /* entries per page, a power of 2 */
	uint64_t total = vm->cfg.ram_bytes / base, e0, n, i;
	off_t off0 = (off_t)((uintptr_t)vm->ram / base * 8);
	unsigned char *vec;
	uint64_t *buf;
	int ret = 0;

	if (vm->pagemap_fd < 0) {
		vec = malloc(total);
		if (!vec)
			return -ENOMEM;
		if (mincore(vm->ram, vm->cfg.ram_bytes, vec) < 0)
			ret = -errno;
		for (i = 0; !ret && i < total; i += per)
			out[i / per] = vec[i] & 1;
		free(vec);
		return ret;
	}

	buf = malloc(PAGEMAP_CHUNK * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	/* PAGEMAP_CHUNK is a multiple of per: every chunk starts on a page */
	for (e0 = 0; e0 < total; e0 += n) {
		n = PCH_MIN(total - e0, (uint64_t)PAGEMAP_CHUNK);
		ret = pread_full(vm->pagemap_fd, buf, n * sizeof(*buf),
				 off0 + (off_t)(e0 * sizeof(*buf)));
		if (ret)
			break;
		for (i = 0; i < n; i += per)
			out[(e0 + i) / per] = (buf[i] & PAGEMAP_PRESENT) ? 1 : 0;
	}
	free(buf);
	return ret;
}

/* The bracketed word of the THP "enabled" file into buf ("?" if unreadable). */
static void thp_mode(char *buf, size_t len)
{
	char line[128], *l, *r;
	FILE *f;

	snprintf(buf, len, "?");
	f = fopen(THP_ENABLED_PATH, "re");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f)) {
		l = strchr(line, '[');
		r = l ? strchr(l, ']') : NULL;
		if (r)
			snprintf(buf, len, "%.*s", (int)(r - l - 1), l + 1);
	}
	fclose(f);
}

/*
 * thp: sample the THP mode and the AnonHugePages of every mapping that
 * overlaps the RAM (uffd registration and madvise may have split its VMA).
 */
void vm_ram_thp_sample(struct vm *vm)
{
	uintptr_t lo = (uintptr_t)vm->ram, hi = lo + vm->cfg.ram_bytes;
	unsigned long start, end;
	bool in_ram = false;
	long long kb, sum = 0;
	size_t cap = 0;
	char *line = NULL;
	FILE *f;

	if (!vm->cfg.backing->thp || !vm->ram)
		return;
	thp_mode(vm->thp_enabled, sizeof(vm->thp_enabled));
	f = fopen("/proc/self/smaps", "re");
	if (!f) {
		pch_warn("/proc/self/smaps: %s", strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		/* a mapping's header: "start-end perms ..." (field names never parse so) */
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			in_ram = start < hi && end > lo;
			continue;
		}
		if (in_ram && sscanf(line, "AnonHugePages: %lld kB", &kb) == 1)
			sum += kb;
	}
	free(line);
	fclose(f);
	vm->thp_anon_huge_kb = sum;
}

__thread sigjmp_buf *vm_guard;

/* A memory error inside a guarded load goes back to its guard; any other kills us. */
static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	if (vm_guard)
		siglongjmp(*vm_guard, 1);
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

int vm_guard_install(void)
{
	/* SA_NODEFER: SIGBUS stays unblocked after the jump (sigsetjmp saves no mask) */
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}
