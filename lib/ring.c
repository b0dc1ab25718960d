// SPDX-License-Identifier: MIT
/*
 * ring.c - the shared event ring of include/pch/ring.h.
 *
 * The two ends do not trust each other: the memory is writable by both, so
 * every value read from it is checked before use.  nr is read once, at
 * attach, and kept in struct pch_ring; indices are always masked with it,
 * so a corrupt head or tail can make us report -EBADMSG but never reach
 * outside the mapping.  The memfd must carry F_SEAL_SHRINK, otherwise the
 * peer could truncate it under our mapping and kill us with SIGBUS.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"
#include "util.h"

static bool nr_ok(uint64_t nr)
{
	return nr >= 2 && nr <= PCH_RING_MAX_ENTRIES && pch_is_pow2(nr);
}

static void ring_reset(struct pch_ring *r)
{
	memset(r, 0, sizeof(*r));
	r->memfd = -1;
	r->efd = -1;
}

/*
 * Creator (the VMM): sealed memfd of PCH_RING_BYTES(nr) with an initialised
 * header, plus a non-blocking eventfd.  0, -EINVAL for a bad nr, or -errno.
 */
int pch_ring_create(struct pch_ring *r, uint32_t nr)
{
	size_t size = PCH_RING_BYTES(nr);
	void *p;
	int ret;

	ring_reset(r);
	if (!nr_ok(nr))
		return -EINVAL;

	r->memfd = memfd_create("pch-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (r->memfd < 0)
		return -errno;
	if (ftruncate(r->memfd, (off_t)size) < 0)
		goto err_errno;
	if (fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		goto err_errno;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (p == MAP_FAILED)
		goto err_errno;
	r->hdr = p;
	r->ev = (struct pch_ring_event *)(r->hdr + 1);
	r->nr = nr;
	r->size = size;

	/* A fresh memfd reads as zeroes: only the fixed fields need writing. */
	r->hdr->magic = PCH_RING_MAGIC;
	r->hdr->version = PCH_RING_VERSION;
	r->hdr->entry_size = sizeof(struct pch_ring_event);
	r->hdr->nr_entries = nr;
	__atomic_store_n(&r->hdr->head, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->hdr->tail, 0, __ATOMIC_RELEASE);

	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0)
		goto err_errno;
	return 0;

err_errno:
	ret = -errno;
	pch_ring_close(r);
	return ret;
}

/* Check the creator's fields of a header copy; the reason in *why. */
static int hdr_check(const struct pch_ring_hdr *h, const char **why)
{
	size_t i;

	if (h->magic != PCH_RING_MAGIC) {
		*why = "bad magic";
		return -EBADMSG;
	}
	if (h->version != PCH_RING_VERSION) {
		*why = "bad version";
		return -EBADMSG;
	}
	if (h->entry_size != sizeof(struct pch_ring_event)) {
		*why = "bad entry size";
		return -EBADMSG;
	}
	if (!nr_ok(h->nr_entries)) {
		*why = "bad nr_entries";
		return -EBADMSG;
	}
	if (h->reserved0) {
		*why = "reserved0 not 0";
		return -EBADMSG;
	}
	for (i = 0; i < sizeof(h->pad0); i++) {
		if (h->pad0[i]) {
			*why = "pad0 not 0";
			return -EBADMSG;
		}
	}
	return 0;
}

/*
 * Attach to a ring created by a peer; takes ownership of both fds, even on
 * failure.  Checks that the memfd is a regular file sealed against
 * shrinking and large enough, and the header's magic, version, entry size,
 * nr and indices.  0, -EBADMSG for a bad ring, or -errno.
 */
int pch_ring_attach(struct pch_ring *r, int memfd, int efd)
{
	return pch_ring_attach_why(r, memfd, efd, NULL);
}

int pch_ring_attach_why(struct pch_ring *r, int memfd, int efd, const char **whyp)
{
	struct pch_ring_hdr h;
	const char *why = "system call failed";
	struct stat st;
	uint64_t head, tail;
	ssize_t n;
	void *p;
	int seals, ret;

	ring_reset(r);
	r->memfd = memfd;
	r->efd = efd;
	if (memfd < 0 || efd < 0) {
		why = "bad fd";
		ret = -EBADF;
		goto err;
	}

	/*
	 * The producer writes the eventfd after every post: a blocking fd, or
	 * something that is not an eventfd at all, could block it forever.
	 */
	if (!pch_fd_is_anon(efd, "eventfd") || !(fcntl(efd, F_GETFL) & O_NONBLOCK)) {
		why = "the second fd is not a non-blocking eventfd";
		ret = -EBADMSG;
		goto err;
	}
	if (fstat(memfd, &st) < 0) {
		ret = -errno;
		goto err;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)PCH_RING_BYTES(2)) {
		why = "memfd too small or not a file";
		ret = -EBADMSG;
		goto err;
	}
	seals = fcntl(memfd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		why = "memfd not sealed against shrinking";
		ret = -EBADMSG;
		goto err;
	}

	/* Read the header by copy first: nr decides how much to map. */
	n = pread(memfd, &h, sizeof(h), 0);
	if (n != (ssize_t)sizeof(h)) {
		why = "short header read";
		ret = n < 0 ? -errno : -EBADMSG;
		goto err;
	}
	ret = hdr_check(&h, &why);
	if (ret)
		goto err;
	if ((uint64_t)st.st_size < PCH_RING_BYTES(h.nr_entries)) {
		why = "memfd smaller than nr_entries needs";
		ret = -EBADMSG;
		goto err;
	}

	p = mmap(NULL, PCH_RING_BYTES(h.nr_entries), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto err;
	}
	r->hdr = p;
	r->ev = (struct pch_ring_event *)(r->hdr + 1);
	r->nr = h.nr_entries;
	r->size = PCH_RING_BYTES(h.nr_entries);

	head = __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE);
	tail = __atomic_load_n(&r->hdr->tail, __ATOMIC_ACQUIRE);
	if (head - tail > r->nr) {
		why = "corrupt head/tail";
		ret = -EBADMSG;
		goto err;
	}
	return 0;

err:
	pch_dbg(PCH_DBG_RING, "ring: attach failed: %s (%s)", strerror(-ret), why);
	if (whyp)
		*whyp = why;
	pch_ring_close(r);
	return ret;
}

/* Unmap and close both fds; safe on a closed or failed ring. */
void pch_ring_close(struct pch_ring *r)
{
	if (r->hdr)
		munmap(r->hdr, r->size);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->efd >= 0)
		close(r->efd);
	ring_reset(r);
}

/*
 * Producer: copy ev in (time_ns filled if 0, text NUL-terminated), publish
 * head + 1, signal the eventfd.  0, -ENOSPC when full, -EBADMSG if the
 * indices are corrupt.
 */
int pch_ring_post(struct pch_ring *r, const struct pch_ring_event *ev)
{
	struct pch_ring_event *slot;
	uint64_t head, tail, one = 1;

	/* The producer owns head, but it lives in memory the consumer can write. */
	head = __atomic_load_n(&r->hdr->head, __ATOMIC_RELAXED);
	tail = __atomic_load_n(&r->hdr->tail, __ATOMIC_ACQUIRE);
	if (head - tail > r->nr)
		return -EBADMSG;
	if (head - tail == r->nr)
		return -ENOSPC;

	slot = &r->ev[head & (r->nr - 1)];
	memcpy(slot, ev, sizeof(*slot));
	slot->text[sizeof(slot->text) - 1] = '\0';
	if (!slot->time_ns)
		slot->time_ns = pch_now_ns();
	__atomic_store_n(&r->hdr->head, head + 1, __ATOMIC_RELEASE);

	/*
	 * EAGAIN means the counter is saturated: the consumer is already
	 * signalled.  Any other failure is lost wake-up, so report it.
	 */
	if (write(r->efd, &one, sizeof(one)) != (ssize_t)sizeof(one) && errno != EAGAIN)
		return -errno;
	return 0;
}

void pch_ring_heartbeat(struct pch_ring *r, uint64_t now_ns)
{
	__atomic_store_n(&r->hdr->heartbeat_ns, now_ns ? now_ns : 1, __ATOMIC_RELEASE);
}

uint64_t pch_ring_heartbeat_ns(const struct pch_ring *r)
{
	return __atomic_load_n(&r->hdr->heartbeat_ns, __ATOMIC_ACQUIRE);
}

/* Post an event built from type, code, epoch and printf text (truncated). */
int pch_ring_postf(struct pch_ring *r, uint16_t type, int32_t code, uint64_t epoch, const char *fmt,
		   ...)
{
	struct pch_ring_event ev;
	va_list ap;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.code = code;
	ev.epoch = epoch;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(ev.text, sizeof(ev.text), fmt, ap);
		va_end(ap);
	}
	return pch_ring_post(r, &ev);
}

/*
 * Consumer: copy one event out (its text forced NUL-terminated) and publish
 * tail + 1.  0, -EAGAIN when empty, -EBADMSG if the indices are corrupt.
 */
int pch_ring_pop(struct pch_ring *r, struct pch_ring_event *ev)
{
	uint64_t head, tail;

	tail = __atomic_load_n(&r->hdr->tail, __ATOMIC_RELAXED);
	head = __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE);
	if (head == tail)
		return -EAGAIN;
	if (head - tail > r->nr)
		return -EBADMSG;

	memcpy(ev, &r->ev[tail & (r->nr - 1)], sizeof(*ev));
	ev->text[sizeof(ev->text) - 1] = '\0';
	__atomic_store_n(&r->hdr->tail, tail + 1, __ATOMIC_RELEASE);
	return 0;
}

/*
 * Consumer: wait at most timeout_ms (negative: forever) for the eventfd and
 * clear it.  0, -ETIMEDOUT, or -errno (-EINTR included).
 */
int pch_ring_wait(struct pch_ring *r, int timeout_ms)
{
	struct pollfd pfd = {.fd = r->efd, .events = POLLIN};
	uint64_t v;
	int n;

	n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (pfd.revents & POLLNVAL)
		return -EBADF;
	/* EAGAIN: someone else read it first; the signal still happened. */
	if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

/* Name of an event type, "?" if unknown. */
const char *pch_ring_type_name(uint16_t type)
{
	static const char *const names[PCH_RING_TYPE_MAX] = {
	    [PCH_RING_SYNC_REACHED] = "SYNC_REACHED",
	    [PCH_RING_COMPLETE] = "COMPLETE",
	    [PCH_RING_ERROR] = "ERROR",
	    [PCH_RING_PAUSED] = "PAUSED",
	    [PCH_RING_RESUMED] = "RESUMED",
	};

	if (type >= PCH_RING_TYPE_MAX || !names[type])
		return "?";
	return names[type];
}
