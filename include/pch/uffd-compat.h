/* SPDX-License-Identifier: MIT */
/*
 * uffd-compat.h - userfaultfd constants newer than the build host's headers.
 *
 * Debian 12 ships 6.1 kernel headers; the machines pch runs on have newer
 * kernels.  Every constant that 6.1's <linux/userfaultfd.h> lacks is defined
 * here, and only here, guarded so that newer headers win.  Features are always
 * probed at run time (UFFDIO_API), never assumed from these definitions.
 */
#ifndef PCH_UFFD_COMPAT_H
#define PCH_UFFD_COMPAT_H

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16) /* 6.8 */
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1) /* 6.4: map write-protected */
#endif

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

/*
 * PAGEMAP_SCAN (6.7): an ioctl on /proc/<pid>/pagemap; with a WP_ASYNC uffd
 * it reports (and re-protects) the pages written since they were protected.
 * Newer <linux/fs.h> has it.
 */
#include <linux/fs.h>
#ifndef PAGEMAP_SCAN
#include <linux/types.h>
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)	/* write-protect the pages matched */
#define PM_SCAN_CHECK_WPASYNC (1 << 1)	/* EPERM on a VMA without uffd WP_ASYNC */

struct pm_scan_arg {
	__u64 size;		/* sizeof(struct pm_scan_arg) */
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;		/* out: where the walk stopped */
	__u64 vec;		/* struct page_region[vec_len] */
	__u64 vec_len;
	__u64 max_pages;	/* 0: no limit */
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/*
 * Not userfaultfd, but of the same kind: a socket option newer than 6.1's
 * <asm-generic/socket.h> (the one newer constant the control socket uses).
 * getsockopt fails with ENOPROTOOPT on older kernels; the helper falls back.
 */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* 6.5: a pidfd of the peer, taken at connect() */
#endif

#endif /* PCH_UFFD_COMPAT_H */
