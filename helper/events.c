// SPDX-License-Identifier: MIT
/*
 * events.c - non-cooperative memory events: the VMM discards guest RAM
 * (UFFD_EVENT_REMOVE: a balloon's MADV_DONTNEED or MADV_REMOVE) or unmaps
 * it (UFFD_EVENT_UNMAP: a RAM block, or its tail, unplugged) while postcopy
 * runs.
 *
 * A discarded page reads as zero from then on, whatever the source holds:
 * it counts as in place, a fault on it is answered with a zero page, and no
 * install of old content (bulk frame, URGENT answer, sweep) may ever land on
 * it.  An unmapped page is gone: it counts as in place too, its frames are
 * dropped, and ENOENT there is not an error.  Both marks are sticky: the
 * "discarded" bitmap of the block only grows.
 *
 * The race (docs/protocol.md, "Memory events"): while an event is unread,
 * every install fails with EAGAIN (mmap_changing); once the fault thread
 * reads it, the VMM goes on and zaps the range, and an install that lands
 * after the zap but before the range is marked would put stale content over
 * a discarded page.  So, when events are on:
 *   - installs of page content hold the read side of h->ev_lock across "is
 *     it discarded?" and the ioctl (events_install_begin/end);
 *   - the fault thread holds the write side from before it reads the uffd
 *     until every REMOVE/UNMAP in what it read is marked (events_read_*),
 *     reading with a non-blocking read(2), never an asynchronous io_uring
 *     READ (which would read events outside the lock);
 *   - an install that gets EAGAIN drops the read side, lets the fault thread
 *     read (or, on the fault thread itself, reads), retakes it, looks again
 *     at the discarded state and retries (events_eagain).
 * With events off (h->events false) none of this costs anything.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helper_i.h"
#include "log.h"
#include "util.h"
#include "pch/uffd-compat.h"

/* an install waits at most this long, in all, for the events to be read */
#define EVENTS_EAGAIN_MAX_MS 10000
#define EVENTS_EAGAIN_SLEEP_US 50

/* the fault thread's reader, called on that thread when its own install sees EAGAIN */
static __thread int (*tl_drain)(void *arg);
static __thread void *tl_drain_arg;

int events_setup(struct helper *h, uint64_t features, char *whybuf, size_t whylen)
{
	pthread_rwlockattr_t a;
	unsigned i;

	/* EVENT_FORK and EVENT_REMAP were refused before (pch_ctl_uffd_check) */
	if (!(features & (UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)))
		return 0;
	for (i = 0; i < h->nblk; i++) {
		if (events_block_ok(&h->blk[i].d, hblock_shared(&h->blk[i]), features, whybuf,
				    whylen))
			return -EOPNOTSUPP;
	}
	/* the one writer (the fault thread) must not wait behind a stream of readers */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&h->ev_lock, &a);
	pthread_rwlockattr_destroy(&a);
	h->events = true;
	return 0;
}

int events_block_ok(const struct pch_block *d, bool shared, uint64_t features, char *whybuf,
		    size_t whylen)
{
	if (!(features & (UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)) || !shared)
		return 0;
	/*
	 * In-place receive writes the memfd's page cache through the helper's
	 * own mapping, before UFFDIO_CONTINUE: a write after the VMM punched
	 * the range would bring old content back into the page cache, where a
	 * MINOR fault would find it.  Not made airtight yet: refused.
	 */
	snprintf(whybuf, whylen, "block %s (%s): memory events (EVENT_REMOVE/UNMAP) are "
		 "supported on private blocks only (anon, thp, hugetlb-private)", d->name,
		 pch_backing_name(d->backing));
	return -EOPNOTSUPP;
}

void events_free(struct helper *h)
{
	if (h->events)
		pthread_rwlock_destroy(&h->ev_lock);
}

void events_set_drain(int (*fn)(void *arg), void *arg)
{
	tl_drain = fn;
	tl_drain_arg = arg;
}

bool events_eagain(struct helper *h, struct hstats *st, uint64_t *waited_ns)
{
	uint64_t t0 = pch_now_ns();

	STAT_ADD(st, eagain, 1);
	if (*waited_ns > EVENTS_EAGAIN_MAX_MS * 1000000ull || helper_stopping(h))
		return false;
	pthread_rwlock_unlock(&h->ev_lock);
	/*
	 * The fault thread reads the uffd itself; the others sleep while it
	 * polls it (an event makes it readable).  Either sleeps when nothing
	 * was read: the event may not be queued yet, and the VMM thread that
	 * queues it needs the CPU.
	 */
	if (!tl_drain || !tl_drain(tl_drain_arg)) {
		struct timespec ts = { 0, EVENTS_EAGAIN_SLEEP_US * 1000 };

		nanosleep(&ts, NULL);
	}
	pthread_rwlock_rdlock(&h->ev_lock);
	*waited_ns += pch_now_ns() - t0 + 1;
	return true;
}

/*
 * Mark the pages of [start, end) discarded (unmap: gone), in every block
 * the range touches: only whole pages (a hugetlb MADV_DONTNEED zaps the
 * huge pages the range covers whole).  Caller holds the write side.
 */
static void mark_range(struct helper *h, struct hstats *st, uint64_t start, uint64_t end,
		       bool unmap)
{
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t bs = b->host_addr, be = b->host_addr + b->d.size, s, e, first, last, p;
		uint64_t newly = 0, marked = 0;

		if (end <= bs || start >= be)
			continue;
		s = PCH_MAX(start, bs) - bs;
		e = PCH_MIN(end, be) - bs;
		first = PCH_DIV_ROUND_UP(s, b->d.page_size);
		last = e >> b->d.page_shift;
		for (p = first; p < last; p++) {
			marked += pch_bitmap_set(&b->discarded, p);
			/* in place by definition: it reads zero, or it is gone */
			newly += pch_bitmap_set(&b->inplace, p);
		}
		if (newly)
			STAT_ADD(st, inplace, newly);
		if (unmap)
			STAT_ADD(st, pages_unmapped, last > first ? last - first : 0);
		else
			STAT_ADD(st, pages_discarded, last > first ? last - first : 0);
		pch_dbg(PCH_DBG_UFFD, "block %s: %s pages %llu..%llu (%llu newly in place)",
			b->d.name, unmap ? "unmapped" : "discarded", (unsigned long long)first,
			(unsigned long long)last, (unsigned long long)newly);
		(void)marked;
	}
}

bool events_mark(struct helper *h, struct hstats *st, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		STAT_ADD(st, events_remove, 1);
		mark_range(h, st, m->arg.remove.start, m->arg.remove.end, false);
		return true;
	case UFFD_EVENT_UNMAP:
		STAT_ADD(st, events_unmap, 1);
		mark_range(h, st, m->arg.remove.start, m->arg.remove.end, true);
		return true;
	default:
		return false;
	}
}
