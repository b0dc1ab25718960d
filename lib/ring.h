/* SPDX-License-Identifier: MIT */
/*
 * ring.h - create, attach, post to and read the shared event ring whose
 * layout include/pch/ring.h fixes.  One producer (helper), one consumer (VMM).
 */
#ifndef PCH_LIB_RING_H
#define PCH_LIB_RING_H

#include <stdint.h>

#include "pch/ring.h"

struct pch_ring {
	struct pch_ring_hdr *hdr;
	struct pch_ring_event *ev;
	uint32_t nr;   /* entries, power of two */
	size_t size;   /* bytes mapped */
	int memfd;
	int efd;       /* eventfd: producer writes 1 per post */
};

/*
 * Creator (the VMM): memfd of PCH_RING_BYTES(nr) sealed against shrinking,
 * header initialised, and an eventfd.  nr power of two in
 * [2, PCH_RING_MAX_ENTRIES].  0 or -errno.
 */
int pch_ring_create(struct pch_ring *r, uint32_t nr);
/*
 * Attach to a ring received from a peer (takes ownership of both fds, even on
 * failure).  Checks size, magic, version, entry size, nr and the indices.
 * 0 or -EBADMSG/-errno.
 */
int pch_ring_attach(struct pch_ring *r, int memfd, int efd);
/* The same, with *why naming what was wrong (static text) on failure. */
int pch_ring_attach_why(struct pch_ring *r, int memfd, int efd, const char **why);
/* Unmap and close. */
void pch_ring_close(struct pch_ring *r);

/*
 * Producer: copy ev into the ring (time_ns set if 0), publish, signal the
 * eventfd.  0, -ENOSPC when full, -EBADMSG if the consumer index is corrupt.
 */
int pch_ring_post(struct pch_ring *r, const struct pch_ring_event *ev);
/* Producer: store now_ns as the heartbeat (store-release). */
void pch_ring_heartbeat(struct pch_ring *r, uint64_t now_ns);
/* Consumer: the producer's last heartbeat value, 0 before the first. */
uint64_t pch_ring_heartbeat_ns(const struct pch_ring *r);
/* Convenience: post an event with type, code, epoch and printf text. */
int pch_ring_postf(struct pch_ring *r, uint16_t type, int32_t code, uint64_t epoch,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Consumer: take one event.  0, -EAGAIN when empty, -EBADMSG if corrupt. */
int pch_ring_pop(struct pch_ring *r, struct pch_ring_event *ev);
/*
 * Consumer: wait until the eventfd is signalled (and clear it), at most
 * timeout_ms.  0, -ETIMEDOUT, or -errno.  Events may already be in the ring:
 * pop first, wait when it is empty.
 */
int pch_ring_wait(struct pch_ring *r, int timeout_ms);

/* Name of an event type ("SYNC_REACHED"...), "?" if unknown. */
const char *pch_ring_type_name(uint16_t type);

#endif
