/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - control socket protocol between a VMM (pch-vm, QEMU through
 * libpch-client) and pch-helper.
 *
 * Transport: a Unix SOCK_SEQPACKET socket; one message per packet, file
 * descriptors travel as SCM_RIGHTS on the packet that names them.  The VMM
 * sends requests; the helper answers each one, in order, with PCH_CTL_REPLY
 * (or PCH_CTL_HELLO for HELLO).  The first connection is the VMM (owner); a
 * later connection may only send HELLO and STATS (a monitor such as
 * pch-migrate's progress bar).
 *
 * Version history:
 *   1  first version.
 *      Feature bits added within it: PCH_CTL_F_SHARED (shared blocks),
 *      PCH_CTL_F_STATE (STATE message, the VMM-owned page state).
 */
#ifndef PCH_CTL_H
#define PCH_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "pch/proto.h"

#define PCH_CTL_VERSION 1
#define PCH_CTL_MAGIC 0x56484350u /* "PCHV" */
#define PCH_CTL_MAX_MSG (64u << 10) /* largest packet either side sends */

enum pch_ctl_type {
	PCH_CTL_HELLO = 1,    /* both: version and features */
	PCH_CTL_BLOCK = 2,    /* VMM: one RAM block (memfd for shared ones) */
	PCH_CTL_BITMAP = 3,   /* VMM: pages of a block already in place */
	PCH_CTL_UFFD = 4,     /* VMM: the userfaultfd (1 fd) */
	PCH_CTL_RING = 5,     /* VMM: the event ring (memfd, eventfd) */
	PCH_CTL_START = 6,    /* VMM: connect to the source and serve */
	PCH_CTL_SYNC = 7,     /* VMM: ask for a sync point (epoch) */
	PCH_CTL_STATS = 8,    /* VMM or monitor: reply text is stats JSON */
	PCH_CTL_SHUTDOWN = 9, /* VMM: stop serving, exit */
	PCH_CTL_REPLY = 10,   /* helper: status of one request */
	PCH_CTL_STATE = 11,   /* VMM: received-pages state memfd (1 fd), pch/state.h */
	PCH_CTL_TYPE_MAX
};

/* HELLO feature bits */
#define PCH_CTL_F_RING 0x1ull   /* helper posts events on a shared ring */
#define PCH_CTL_F_BITMAP 0x2ull /* blocks may carry an in-place bitmap */
#define PCH_CTL_F_STATS 0x4ull  /* STATS answers with JSON */
#define PCH_CTL_F_SHARED 0x8ull /* helper serves shared (memfd, hugetlb) blocks */
#define PCH_CTL_F_STATE 0x10ull /* page state kept in a VMM-owned memfd (STATE) */

struct pch_ctl_hdr {
	uint32_t magic; /* PCH_CTL_MAGIC */
	uint16_t type;  /* enum pch_ctl_type */
	uint16_t flags; /* 0 */
	uint32_t len;   /* whole packet, header included */
	uint32_t seq;   /* request number, echoed by the reply */
};
_Static_assert(sizeof(struct pch_ctl_hdr) == 16, "pch_ctl_hdr size");

struct pch_ctl_hello {
	struct pch_ctl_hdr hdr;
	uint16_t version; /* PCH_CTL_VERSION */
	uint16_t role;    /* VMM: enum pch_ctl_role; helper: 0 */
	uint32_t pid;     /* sender's pid (informational) */
	uint64_t features; /* PCH_CTL_F_* the sender supports */
	char name[32];     /* sender, e.g. "pch-vm", NUL-terminated */
};
_Static_assert(sizeof(struct pch_ctl_hello) == 64, "pch_ctl_hello size");

enum pch_ctl_role {
	PCH_CTL_ROLE_VMM = 1,     /* owns the session: sends blocks, uffd... */
	PCH_CTL_ROLE_MONITOR = 2, /* may only ask for STATS */
};

/* BLOCK: the VMM's view of one RAM block; ids are 0, 1, 2... in order. */
struct pch_ctl_block {
	struct pch_ctl_hdr hdr;
	uint32_t id;        /* this block's index, = number sent before */
	uint32_t page_size; /* bytes */
	uint32_t backing;   /* enum pch_backing */
	uint32_t flags;     /* PCH_CTL_BLOCK_F_* */
	uint64_t host_addr; /* start of the block in the VMM, page aligned */
	uint64_t length;    /* bytes, multiple of page_size */
	char name[PCH_BLOCK_NAME_LEN]; /* matches the source's table */
};
_Static_assert(sizeof(struct pch_ctl_block) == 112, "pch_ctl_block size");

#define PCH_CTL_BLOCK_F_FD 0x1u /* a memfd of the block rides with it */

/*
 * BITMAP: this, then ceil(npages / 64) uint64_t words; bit i set when page
 * first_page + i of the block is already in place in the VMM.  Sent after the
 * block, before START, in as many packets as needed.
 */
struct pch_ctl_bitmap {
	struct pch_ctl_hdr hdr;
	uint32_t block;
	uint32_t reserved;
	uint64_t first_page; /* multiple of 64 */
	uint64_t npages;     /* bits in this packet */
};
_Static_assert(sizeof(struct pch_ctl_bitmap) == 40, "pch_ctl_bitmap size");

#define PCH_CTL_BITMAP_MAX_PAGES \
	((uint64_t)(PCH_CTL_MAX_MSG - sizeof(struct pch_ctl_bitmap)) / 8 * 64)

/* UFFD: the uffd rides as the only fd; registered ranges cover every block. */
struct pch_ctl_uffd {
	struct pch_ctl_hdr hdr;
	uint64_t features; /* features the VMM enabled with UFFDIO_API */
	uint64_t ioctls;   /* ioctls UFFDIO_REGISTER reported for the blocks */
};
_Static_assert(sizeof(struct pch_ctl_uffd) == 32, "pch_ctl_uffd size");

/* RING: fds are the ring memfd then its eventfd. */
struct pch_ctl_ring {
	struct pch_ctl_hdr hdr;
	uint32_t nr_entries; /* as in the ring header */
	uint32_t reserved;
	uint64_t size; /* bytes of the memfd to map */
};
_Static_assert(sizeof(struct pch_ctl_ring) == 32, "pch_ctl_ring size");

/*
 * STATE: the VMM's memfd holding the received-pages state (pch/state.h),
 * after every BLOCK and before START.  A new helper started after one died
 * gets the same memfd and serves only what it does not record.
 */
struct pch_ctl_state {
	struct pch_ctl_hdr hdr;
	uint32_t flags;    /* 0 */
	uint32_t reserved;
	uint64_t size;     /* bytes of the memfd, as its header says */
};
_Static_assert(sizeof(struct pch_ctl_state) == 32, "pch_ctl_state size");

/* START, STATS, SHUTDOWN carry only this. */
struct pch_ctl_simple {
	struct pch_ctl_hdr hdr;
	uint32_t flags; /* 0 */
	uint32_t reserved;
};
_Static_assert(sizeof(struct pch_ctl_simple) == 24, "pch_ctl_simple size");

struct pch_ctl_sync {
	struct pch_ctl_hdr hdr;
	uint64_t epoch; /* > every epoch asked before; SYNC_REACHED follows */
};
_Static_assert(sizeof(struct pch_ctl_sync) == 24, "pch_ctl_sync size");

/* REPLY: this, then text_len bytes of text (error reason or JSON). */
struct pch_ctl_reply {
	struct pch_ctl_hdr hdr; /* hdr.seq = the request's seq */
	uint16_t req_type;      /* type of the request answered */
	uint16_t reserved;
	int32_t status;   /* 0, or -errno */
	uint32_t text_len;
	uint32_t reserved2;
};
_Static_assert(sizeof(struct pch_ctl_reply) == 32, "pch_ctl_reply size");

#endif /* PCH_CTL_H */
