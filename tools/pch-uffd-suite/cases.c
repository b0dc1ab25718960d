// SPDX-License-Identifier: MIT
/*
 * cases.c - the case table.  A case runs once per memory kind in .kinds
 * (once, kind "none", when .kinds is 0) and only when the probe found every
 * feature in .features plus those the kind needs for .mode
 * (us_kind_features()), and every ioctl in .ioctls in that registration.
 */
#include "suite.h"

#define IO(x) US_IOCTL(_UFFDIO_##x)
#define MISSING UFFDIO_REGISTER_MODE_MISSING
#define MINOR UFFDIO_REGISTER_MODE_MINOR
#define WP UFFDIO_REGISTER_MODE_WP
#define SHARED_MINOR (US_K(US_SHMEM) | US_K(US_SHMEM_PRIVATE) | US_K(US_HUGETLB_SHARED))

const struct us_case us_cases[] = {
	{ "api", "handshake", 0, 0, 0, 0, us_case_handshake, 0,
	  "UFFDIO_API: bad api, unknown feature, features within the probe, second call refused" },
	{ "api", "dev-userfaultfd", 0, 0, 0, 0, us_case_dev, 0,
	  "/dev/userfaultfd USERFAULTFD_IOC_NEW gives what userfaultfd(2) gives" },
	{ "api", "user-mode-only", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_user_mode_only, 0,
	  "UFFD_USER_MODE_ONLY: kernel-mode faults get EFAULT, user faults are delivered" },
	{ "api", "register-modes", US_ALL_KINDS, 0, 0, 0, us_case_register_modes, 0,
	  "every MISSING/WP/MINOR combination: accepted iff its modes are, ioctls mask per the uAPI" },
	{ "api", "register-align", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_register_align, 0,
	  "ranges not aligned to the kind's page size (huge page on hugetlb) are EINVAL" },
	{ "api", "zeropage-eexist", US_ALL_KINDS, 0, MISSING, IO(ZEROPAGE) | IO(COPY),
	  us_case_zeropage_eexist, 0, "UFFDIO_ZEROPAGE on a populated page (alias on shmem) is EEXIST" },
	{ "api", "copy-bad-range", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_copy_bad_range, 0,
	  "UFFDIO_COPY outside the uffd's ranges is ENOENT, unaligned dst/len EINVAL" },

	{ "missing", "copy", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_copy, 0,
	  "MISSING faults resolved by UFFDIO_COPY" },
	{ "missing", "copy-dontwake", US_ALL_KINDS, 0, MISSING, IO(COPY) | IO(WAKE),
	  us_case_copy, US_ARG_DONTWAKE, "UFFDIO_COPY_MODE_DONTWAKE, then UFFDIO_WAKE" },
	{ "missing", "zeropage", US_ALL_KINDS, 0, MISSING, IO(ZEROPAGE), us_case_zeropage, 0,
	  "MISSING faults resolved by UFFDIO_ZEROPAGE" },
	{ "missing", "zeropage-dontwake", US_ALL_KINDS, 0, MISSING, IO(ZEROPAGE) | IO(WAKE),
	  us_case_zeropage, US_ARG_DONTWAKE, "UFFDIO_ZEROPAGE_MODE_DONTWAKE, then UFFDIO_WAKE" },
	{ "missing", "continue", SHARED_MINOR, 0, MINOR, IO(CONTINUE), us_case_continue, 0,
	  "MINOR faults on pages in the page cache resolved by UFFDIO_CONTINUE" },
	{ "missing", "continue-dontwake", SHARED_MINOR, 0, MINOR, IO(CONTINUE) | IO(WAKE),
	  us_case_continue, US_ARG_DONTWAKE, "UFFDIO_CONTINUE_MODE_DONTWAKE, then UFFDIO_WAKE" },
	{ "missing", "poison", US_ALL_KINDS, UFFD_FEATURE_POISON, MISSING, IO(POISON) | IO(COPY),
	  us_case_poison, 0, "UFFDIO_POISON: the access gets SIGBUS (BUS_MCEERR_AR, or BUS_ADRERR without CONFIG_MEMORY_FAILURE)" },
	{ "missing", "poison-dontwake", US_ALL_KINDS, UFFD_FEATURE_POISON, MISSING,
	  IO(POISON) | IO(COPY) | IO(WAKE), us_case_poison, US_ARG_DONTWAKE,
	  "UFFDIO_POISON_MODE_DONTWAKE, then UFFDIO_WAKE" },
	{ "missing", "move", US_K(US_ANON), UFFD_FEATURE_MOVE, MISSING, IO(MOVE), us_case_move, 0,
	  "MISSING faults resolved by UFFDIO_MOVE; the source is left empty" },
	{ "missing", "move-dontwake", US_K(US_ANON), UFFD_FEATURE_MOVE, MISSING,
	  IO(MOVE) | IO(WAKE), us_case_move, US_ARG_DONTWAKE,
	  "UFFDIO_MOVE_MODE_DONTWAKE, then UFFDIO_WAKE" },

	{ "wp", "sync", US_ALL_KINDS, 0, WP, IO(WRITEPROTECT), us_case_wp_sync, 0,
	  "WP faults (FLAG_WP) on protected pages resolved by un-protecting (which wakes)" },
	{ "wp", "sync-dontwake", US_ALL_KINDS, 0, WP, IO(WRITEPROTECT) | IO(WAKE), us_case_wp_sync,
	  US_ARG_DONTWAKE, "UFFDIO_WRITEPROTECT_MODE_DONTWAKE un-protect, then UFFDIO_WAKE" },
	{ "wp", "async", US_ALL_KINDS, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, WP,
	  IO(WRITEPROTECT), us_case_wp_async, 0,
	  "WP_ASYNC: writes go on without a message; PAGEMAP_SCAN reports exactly the written pages" },
	{ "wp", "unpopulated", US_K(US_ANON), UFFD_FEATURE_WP_UNPOPULATED, WP, IO(WRITEPROTECT),
	  us_case_wp_unpopulated, 0,
	  "WP_UNPOPULATED: a write to a protected, never-populated page is a WP fault" },

	{ "read", "blocking", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_blocking, 0,
	  "faults read by a blocking read(2) (no O_NONBLOCK); the last fault ends the reader" },
	{ "read", "poll", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_poll, 0,
	  "O_NONBLOCK: EAGAIN with nothing pending; poll + read until EAGAIN" },
	{ "read", "epoll", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_epoll, 0,
	  "O_NONBLOCK: epoll_wait + read until EAGAIN" },
	{ "read", "io_uring", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_uring, 0,
	  "IORING_OP_READ of one uffd_msg, re-armed after each completion" },
	{ "read", "io_uring-batch", US_ALL_KINDS, 0, MISSING, IO(COPY),
	  us_case_read_uring_batch, 0,
	  "IORING_OP_READ of up to 16 uffd_msg; messages per read recorded" },
	{ "read", "threads", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_threads, 0,
	  "several poll + read readers on one O_NONBLOCK uffd: each fault read exactly once" },
	{ "read", "io_uring-nonblock", US_ALL_KINDS, 0, MISSING, IO(COPY),
	  us_case_read_uring_nonblock, 0,
	  "IORING_OP_READ on an O_NONBLOCK uffd: pending until a fault, or -EAGAIN + POLL_ADD" },
	{ "read", "io_uring-poll", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_read_uring_poll, 0,
	  "IORING_OP_POLL_ADD (multishot) on an O_NONBLOCK uffd + read until EAGAIN" },
	{ "read", "io_uring-multishot", US_ALL_KINDS, 0, MISSING, IO(COPY),
	  us_case_read_uring_mshot, 0,
	  "IORING_OP_READ_MULTISHOT, provided buffer ring: one uffd_msg per CQE, each read once" },
	{ "read", "io_uring-cancel", US_ALL_KINDS, 0, MISSING, 0, us_case_read_uring_cancel, 0,
	  "a pending IORING_OP_READ: ASYNC_CANCEL completes it; close(uffd) does not, the ring's exit does" },

	{ "proc", "copy", US_ALL_KINDS, 0, MISSING, IO(COPY), us_case_proc_copy, 0,
	  "uffd over SCM_RIGHTS, VMM closes its copy; handler process COPYs from its own memory" },
	{ "proc", "continue", SHARED_MINOR, 0, MINOR, IO(CONTINUE), us_case_proc_continue, 0,
	  "uffd + memfd over SCM_RIGHTS; handler writes through its own mapping, then CONTINUE" },
	{ "proc", "zeropage", US_ALL_KINDS, 0, MISSING, IO(ZEROPAGE), us_case_proc_zeropage, 0,
	  "UFFDIO_ZEROPAGE from the handler process" },
	{ "proc", "move", US_K(US_ANON), UFFD_FEATURE_MOVE, MISSING, IO(MOVE), us_case_proc_move, 0,
	  "UFFDIO_MOVE from another process (either src mm) refused with EINVAL; COPY instead" },
	{ "proc", "handler-dies-vmm-keeps", US_ALL_KINDS, 0, MISSING, 0, us_case_proc_dies_keeps, 0,
	  "handler SIGKILLed with a fault pending, VMM holds the uffd: blocked until the VMM closes it" },
	{ "proc", "handler-dies-vmm-closed", US_ALL_KINDS, 0, MISSING, 0, us_case_proc_dies_closed,
	  0, "handler holding the last uffd SIGKILLed with a fault pending: the thread wakes" },
	{ "proc", "sigbus", US_ALL_KINDS, UFFD_FEATURE_SIGBUS, MISSING, IO(COPY),
	  us_case_proc_sigbus, 0,
	  "UFFD_FEATURE_SIGBUS: BUS_ADRERR, no message; after the handler dies: a normal fault" },
	{ "proc", "two-handlers", US_K(US_ANON) | US_K(US_SHMEM), 0, MISSING, IO(COPY),
	  us_case_proc_two, 0, "the uffd in two handler processes: each fault read exactly once" },
};

const size_t us_ncases = sizeof(us_cases) / sizeof(us_cases[0]);
