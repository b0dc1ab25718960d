/* SPDX-License-Identifier: MIT */
/*
 * client.h - libpch-client: what a VMM (QEMU, pch-vm) links to hand its guest
 * RAM, its userfaultfd and an event ring to pch-helper, and to wait for sync
 * points and completion.  Every call that waits takes a timeout; every call
 * returns 0 (or a count) on success and -errno on failure, with a readable
 * reason in pch_client_error().
 *
 * Call sequence (see qemu-glue/README.md):
 *   pch_client_connect()
 *   pch_client_add_block()        once per RAM block, in block order
 *   pch_client_send_bitmap()      optional, pages already in place
 *   pch_client_send_uffd()
 *   pch_client_setup_ring()
 *   pch_client_setup_state()      optional: lets a new helper take over
 *   pch_client_start()
 *   pch_client_request_sync() / pch_client_wait_sync()   at sync points
 *   pch_client_wait_complete()
 *   pch_client_stats()            optional
 *   pch_client_reattach()         after a wait returned -EPIPE, to a new helper
 *   pch_client_close()
 *
 * On the source, a VMM hands its RAM block to pch-source instead, with
 * pch_client_source_handover() (one call, no client).
 */
#ifndef PCH_CLIENT_H
#define PCH_CLIENT_H

#include <stdint.h>

#include "pch/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pch_client;

struct pch_client_block {
	const char *name;   /* as the source names it; < 64 bytes */
	void *host_addr;    /* start of the block in this process */
	uint64_t length;    /* bytes */
	uint32_t page_size; /* bytes */
	uint32_t backing;   /* enum pch_backing (include/pch/proto.h) */
	int fd;             /* memfd of a shared block, or -1 */
};

/* Connect to the helper's control socket and exchange HELLO. */
int pch_client_connect(const char *path, int timeout_ms, struct pch_client **out);
/* Announce one RAM block; blocks get ids 0, 1, ... in call order. */
int pch_client_add_block(struct pch_client *c, const struct pch_client_block *b);
/*
 * Tell the helper which pages of block id are already in place (bit i of
 * words = page i, little-endian 64-bit words, npages bits).
 */
int pch_client_send_bitmap(struct pch_client *c, uint32_t id, const uint64_t *words,
			   uint64_t npages);
/* Hand over the uffd (this process keeps its own copy open). */
int pch_client_send_uffd(struct pch_client *c, int uffd, uint64_t features, uint64_t ioctls);
/* Create the event ring (nr entries, power of two) and hand it over. */
int pch_client_setup_ring(struct pch_client *c, uint32_t nr);
/*
 * Keep the helper's page state in a memfd this client owns (after the
 * blocks, before START), so that a new helper can take over if this one
 * dies (pch_client_reattach).  -EOPNOTSUPP from a helper without it.
 */
int pch_client_setup_state(struct pch_client *c);
/*
 * Before discarding (MADV_DONTNEED, MADV_REMOVE) or unmapping pages [first,
 * first + n) of block id during postcopy, record it in the page state, so
 * no helper ever puts old content there.  0, -EINVAL, -ENODEV (no state).
 */
int pch_client_state_discard(struct pch_client *c, uint32_t id, uint64_t first, uint64_t n);
/* Pages the page state records in place (0 without one). */
uint64_t pch_client_state_inplace(const struct pch_client *c);
/*
 * The helper died (a wait returned -EPIPE) and the caller started a new one
 * listening on path: hand it the same blocks, page state and uffd, a new
 * ring, START, and the sync point still awaited.  Block memfds and the uffd
 * must still be open.  0 or -errno.
 */
int pch_client_reattach(struct pch_client *c, const char *path, int timeout_ms);
/* Let the helper connect to the source and serve pages. */
int pch_client_start(struct pch_client *c);
/* Ask for a sync point; SYNC_REACHED(epoch) arrives on the ring. */
int pch_client_request_sync(struct pch_client *c, uint64_t epoch);

/*
 * Wait for the next ring event, at most timeout_ms.  0, -ETIMEDOUT, -EPIPE
 * when the helper is gone (its socket closed), or -ETIME when it hung
 * (pch_client_set_hung_timeout).
 */
int pch_client_wait_event(struct pch_client *c, struct pch_ring_event *ev, int timeout_ms);
/*
 * Wait for SYNC_REACHED(epoch) (or a later epoch).  An ERROR event on the
 * ring fails the wait with its code.  0, -ETIMEDOUT, -EPIPE, -ETIME, or the
 * code.
 */
int pch_client_wait_sync(struct pch_client *c, uint64_t epoch, int timeout_ms);
/* Wait for COMPLETE, likewise. */
int pch_client_wait_complete(struct pch_client *c, int timeout_ms);
/*
 * The waits above (and pch_client_wait_event) fail with -ETIME when the
 * helper's heartbeat on the ring stands still this long: a helper that is
 * stopped or deadlocked, not just quiet (it beats every 250 ms while it
 * runs; include/pch/ring.h).  Default 30000 ms; 0: never.  0 or -EINVAL.
 */
int pch_client_set_hung_timeout(struct pch_client *c, int ms);

/* Fetch the helper's statistics as JSON; *json is malloc'ed (free it). */
int pch_client_stats(struct pch_client *c, char **json, int timeout_ms);
/* Ask the helper to stop and exit. */
int pch_client_shutdown(struct pch_client *c);
/* fds a caller may poll: the control socket (POLLHUP: helper gone) and the ring's eventfd. */
int pch_client_socket_fd(const struct pch_client *c);
int pch_client_ring_fd(const struct pch_client *c);
/* Last error, as text. */
const char *pch_client_error(const struct pch_client *c);
void pch_client_close(struct pch_client *c);

/*
 * Source side: hand one RAM block to pch-source listening on its VMM socket
 * (pch-source --vmm-socket path): connect (retrying while the socket is not
 * there yet), HELLO, BLOCK with fd as SCM_RIGHTS, and wait for its REPLY, all
 * within timeout_ms (< 0: 5 s).  fd is the block's memfd (or hugetlbfs/tmpfs
 * file), offset 0 = the block's first byte, sealed with F_SEAL_SHRINK; it
 * must not change while pch-source serves it (stop the guest first).  name
 * must match the block name the destination announces to pch-helper.  The
 * caller keeps its fd.  0, or -errno with the reason (pch-source's own text
 * when it refused) in pch_client_error(NULL), per thread.
 */
int pch_client_source_handover(const char *path, const char *name, int fd, uint64_t length,
			       uint32_t page_size, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* PCH_CLIENT_H */
