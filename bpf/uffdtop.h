/* SPDX-License-Identifier: MIT */
/* uffdtop.h - pch-uffdtop: what its BPF side and its loader share. */
#ifndef PCH_BPF_UFFDTOP_H
#define PCH_BPF_UFFDTOP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* what is counted, per process */
enum uffdtop_kind {
	UT_COPY,
	UT_ZEROPAGE,
	UT_CONTINUE,
	UT_WAKE,
	UT_POISON,
	UT_MOVE,
	UT_NIOCTL,         /* the ioctls above; then: */
	UT_FAULT = UT_NIOCTL, /* exceptions:page_fault_user */
	UT_CQE,            /* io_uring:io_uring_complete */
	UT_NKIND,
};

/* the result of an ioctl (a CQE: ok or other) */
enum uffdtop_result { UR_OK, UR_EEXIST, UR_EAGAIN, UR_OTHER, UR_N };

struct uffdtop_key {
	__u32 tgid;
	__u16 kind;   /* enum uffdtop_kind */
	__u16 result; /* enum uffdtop_result */
};

struct uffdtop_val {
	__u64 count;
	__u64 bytes; /* ioctls: bytes copied/zeroed/mapped as the kernel reports */
};

#endif /* PCH_BPF_UFFDTOP_H */
