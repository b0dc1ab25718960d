// SPDX-License-Identifier: MIT
/*
 * backend.c - where pch-source's pages come from: the deterministic synthetic
 * image (lib/image.c), or a file mapped read-only (an image on disk, a
 * /dev/shm file, a VMM's memfd or hugetlb memfd through /proc/PID/fd/N, a
 * hugetlbfs file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"
#include "source_i.h"
#include "util.h"

static bool synth_is_zero(const struct src_backend *be, uint64_t idx)
{
	return pch_image_kind(&be->image, 0, idx) == PCH_PAGE_ZERO;
}

static const void *synth_page(const struct src_backend *be, uint64_t idx, void *scratch)
{
	pch_image_fill(&be->image, 0, idx, scratch);
	return scratch;
}

static const struct src_backend_ops synth_ops = {
	.name = "synthetic",
	.is_zero = synth_is_zero,
	.page = synth_page,
};

static bool file_is_zero(const struct src_backend *be, uint64_t idx)
{
	return pch_page_is_zero(be->map + idx * be->page_size, be->page_size);
}

static const void *file_page(const struct src_backend *be, uint64_t idx, void *scratch)
{
	return be->map + idx * be->page_size;
}

/*
 * SEEK_DATA on the file: shmem (memfds, /dev/shm) and most disk file systems
 * know their holes; hugetlbfs and others report the whole file as data, and
 * then every page is read.  A page is a hole only if all of it is; the
 * answer is as of the call (a live VMM may fill the hole later, as it may
 * rewrite any page after we read it).  No SEEK_HOLE: it walks the whole
 * data run under the inode lock (a guest's 256 MiB of data, again for every
 * batch, while the urgent thread's lookups waited: fault answers p99 31 ms
 * under make qemu-check), where SEEK_DATA stops at the first page with data.
 * So a data page costs one lseek, a hole one lseek for all of it.  lseek
 * moves the file offset, which nothing here uses (pages are read through
 * the mapping).
 */
static uint64_t file_extent(const struct src_backend *be, uint64_t idx, bool *hole)
{
	uint64_t ps = be->page_size, off = idx * ps;
	off_t r;

	*hole = false;
	r = lseek(be->fd, (off_t)off, SEEK_DATA);
	if (r < 0) {
		/* ENXIO: no data from off to the end of the file */
		*hole = errno == ENXIO;
		return be->npages;
	}
	if ((uint64_t)r < off + ps)
		return idx + 1; /* data in page idx */
	*hole = true;
	return PCH_MIN((uint64_t)r / ps, be->npages);
}

static void file_close(struct src_backend *be)
{
	munmap((void *)be->map, be->map_len);
	close(be->fd);
}

static const struct src_backend_ops file_ops = {
	.name = "file",
	.is_zero = file_is_zero,
	.page = file_page,
	.extent = file_extent,
	.close = file_close,
};

/*
 * The backing kind of an open file and the page size it imposes (0: none),
 * from its file system: shmem (a /dev/shm file, a memfd) is MEMFD,
 * hugetlbfs (a hugetlbfs file, an MFD_HUGETLB memfd) is HUGETLB with pages
 * of st_blksize, anything else (a disk image) is labelled ANON.
 */
static int file_backing(int fd, const struct stat *st, uint32_t *backing, uint32_t *page_size)
{
	struct statfs sfs;

	*page_size = 0;
	if (fstatfs(fd, &sfs) < 0)
		return -errno;
	switch ((unsigned long)sfs.f_type) {
	case TMPFS_MAGIC:
		*backing = PCH_BACKING_MEMFD;
		break;
	case HUGETLBFS_MAGIC:
		*backing = PCH_BACKING_HUGETLB;
		*page_size = (uint32_t)st->st_blksize;
		break;
	default:
		*backing = PCH_BACKING_ANON;
		break;
	}
	return 0;
}

/*
 * Map fd (open read-only; what names it in messages: "file X", "VMM block
 * Y") read-only and take ownership of it, also on failure.  size 0 serves
 * the whole file, rounded down to whole pages; another size (a VMM's block
 * length) must fit in the file.  MAP_SHARED so that a live VMM's memfd is
 * served as it is now, not as it was at open.  The file must not shrink
 * while we serve it (that would be SIGBUS), as with any VMM's RAM file.
 */
static int fd_open(struct src_backend *be, const struct src_opts *o, int fd, const char *what,
		   uint64_t size)
{
	uint32_t hps;
	struct stat st;
	void *map;
	int ret;

	if (fstat(fd, &st) < 0) {
		ret = -errno;
		pch_err("%s: fstat: %s", what, strerror(-ret));
		goto err_close;
	}
	ret = file_backing(fd, &st, &be->backing, &hps);
	if (ret) {
		pch_err("%s: fstatfs: %s", what, strerror(-ret));
		goto err_close;
	}
	/* a huge page is the smallest unit the kernel maps or the VMM installs */
	if (hps && o->page_size_set && hps != o->page_size) {
		pch_err("%s: hugetlbfs page size is %u bytes, but --page-size is %u", what, hps,
			o->page_size);
		ret = -EINVAL;
		goto err_close;
	}
	if (hps)
		be->page_size = hps;
	if (o->backing && o->backing != be->backing) {
		pch_err("%s: backing is %s (from its file system), but --backing is %s", what,
			pch_backing_name(be->backing), pch_backing_name(o->backing));
		ret = -EINVAL;
		goto err_close;
	}
	if (size && (size % be->page_size || size > (uint64_t)st.st_size)) {
		pch_err("%s: %llu bytes: not a multiple of %u-byte pages, or more than the "
			"file's %lld", what, (unsigned long long)size, be->page_size,
			(long long)st.st_size);
		ret = -EINVAL;
		goto err_close;
	}
	be->size = size ? size : (uint64_t)st.st_size / be->page_size * be->page_size;
	if (be->size == 0) {
		pch_err("%s: size %lld is less than one %u-byte page", what, (long long)st.st_size,
			be->page_size);
		ret = -EINVAL;
		goto err_close;
	}
	/* --ram names the guest's RAM size: a file of another size is the wrong one */
	if (o->ram_set && o->ram != be->size) {
		pch_err("%s: %llu bytes of %u-byte pages, but --ram is %llu", what,
			(unsigned long long)be->size, be->page_size, (unsigned long long)o->ram);
		ret = -EINVAL;
		goto err_close;
	}
	map = mmap(NULL, be->size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		ret = -errno;
		/* a shared hugetlb mapping reserves a huge page for every hole */
		pch_err("%s: mmap %llu bytes: %s%s", what, (unsigned long long)be->size,
			strerror(-ret),
			ret == -ENOMEM && be->backing == PCH_BACKING_HUGETLB ?
			" (too few free huge pages for its holes: /proc/sys/vm/nr_hugepages)" : "");
		goto err_close;
	}
	be->map = map;
	be->map_len = be->size;
	be->fd = fd;
	be->ops = &file_ops;
	if (!size && (uint64_t)st.st_size != be->size)
		pch_warn("%s: serving %llu bytes, ignoring the last partial page", what,
			 (unsigned long long)be->size);
	return 0;

err_close:
	close(fd);
	return ret;
}

/* Open o->file read-only and serve it (fd_open). */
static int file_open(struct src_backend *be, const struct src_opts *o)
{
	char what[PATH_MAX + 8];
	int fd, ret;

	fd = open(o->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pch_err("file %s: open: %s", o->file, strerror(-ret));
		return ret;
	}
	snprintf(what, sizeof(what), "file %s", o->file);
	return fd_open(be, o, fd, what, 0);
}

/*
 * Open the backend the options name.  be->page_size is o->page_size, or a
 * hugetlbfs file's page size.  Returns 0 or -errno (logged, naming the
 * file).
 */
int src_backend_open(struct src_backend *be, const struct src_opts *o)
{
	int ret;

	memset(be, 0, sizeof(*be));
	be->fd = -1;
	be->page_size = o->page_size;
	if (o->file) {
		ret = file_open(be, o);
		if (ret)
			return ret;
	} else {
		/* a label only: the image is the same whatever the VMM maps it with */
		be->backing = o->backing ? o->backing : PCH_BACKING_ANON;
		be->size = o->ram;
		be->image.seed = o->seed;
		be->image.zero_frac = o->zero_frac;
		be->image.repeat_frac = o->repeat_frac;
		be->image.page_size = be->page_size;
		be->ops = &synth_ops;
	}
	be->npages = be->size / be->page_size;
	return 0;
}

/*
 * Serve the RAM block a VMM handed over (fd, size bytes; vmm.c checked it):
 * as a --file, read-only.  Takes fd, also on failure.  0 or -errno (logged).
 */
int src_backend_open_fd(struct src_backend *be, const struct src_opts *o, int fd,
			const char *what, uint64_t size, uint32_t page_size)
{
	int ret;

	memset(be, 0, sizeof(*be));
	be->fd = -1;
	be->page_size = page_size;
	ret = fd_open(be, o, fd, what, size);
	if (ret)
		return ret;
	be->npages = be->size / be->page_size;
	return 0;
}

/* Release the backend; safe on one that failed to open. */
void src_backend_close(struct src_backend *be)
{
	if (be->ops && be->ops->close)
		be->ops->close(be);
	be->ops = NULL;
}
