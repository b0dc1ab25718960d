// SPDX-License-Identifier: MIT
/*
 * pages.c - page state and the uffd ioctls that change it.
 *
 * A page is "in place" once installed (present) or known to be zero.  Every
 * path that installs or learns a page sets its bits with atomic test-and-set,
 * so each page is counted exactly once whichever path wins a race.  EEXIST
 * from an install means another path won: the page is there, so the waiters
 * are woken and the race counted.  EAGAIN (a non-cooperative event is
 * pending) is retried.  ENOENT/ESRCH mean the VMM unmapped or exited.
 */
#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helper_i.h"
#include "log.h"
#include "util.h"
#include "pch/uffd-compat.h"

#define EAGAIN_RETRIES 100000

/*
 * An ioctl said EAGAIN: a memory event is pending (mmap_changing).  Yield
 * and retry, a bounded number of times: false when they are used up.
 */
static bool retry_eagain(struct hstats *st, int *tries)
{
	STAT_ADD(st, eagain, 1);
	if (++*tries > EAGAIN_RETRIES)
		return false;
	sched_yield();
	return true;
}

/*
 * UFFDIO_ZEROPAGE of one page, EAGAIN retried.  0, or -errno (-EEXIST: the
 * page is there already).  Zeros are right on a discarded page too: no
 * discarded check, but the ioctl still runs under the events lock, whose
 * EAGAIN path reads the pending events.
 */
static int zeropage_ioctl(struct helper *h, struct hstats *st, struct hblock *b, uint64_t page)
{
	uint64_t waited = 0;
	int tries = 0, rc;

	events_install_begin(h);
	for (;;) {
		struct uffdio_zeropage z = {
			.range = { .start = b->host_addr + (page << b->d.page_shift),
				   .len = b->d.page_size },
			.mode = 0,
		};

		if (ioctl(h->uffd, UFFDIO_ZEROPAGE, &z) == 0) {
			PCH_PROBE(page_installed, z.range.start, z.range.len, 1, 0);
			rc = 0;
			break;
		}
		if (errno == EAGAIN && (h->events ? events_eagain(h, st, &waited) :
						    retry_eagain(st, &tries)))
			continue;
		rc = -errno;
		if (rc == -ESRCH)
			helper_vmm_gone(h);
		break;
	}
	events_install_end(h);
	return rc;
}

int pages_lookup(struct helper *h, uint64_t addr, unsigned *blk, uint64_t *page)
{
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];

		if (addr >= b->host_addr && addr - b->host_addr < b->d.size) {
			*blk = i;
			*page = (addr - b->host_addr) >> b->d.page_shift;
			return 0;
		}
	}
	return -EINVAL;
}

static void mark_present(struct helper *h, struct hstats *st, struct hblock *b, uint64_t first,
			 uint64_t n)
{
	uint64_t newly;

	/* one atomic OR per 64 pages; the count of newly set bits stays exact */
	pch_bitmap_set_range(&b->present, first, n);
	newly = pch_bitmap_set_range(&b->inplace, first, n);
	if (newly)
		STAT_ADD(st, inplace, newly);
}

int pages_wake(struct helper *h, unsigned blk, uint64_t page)
{
	struct hblock *b = &h->blk[blk];
	struct uffdio_range r = {
		.start = b->host_addr + (page << b->d.page_shift),
		.len = b->d.page_size,
	};

	if (ioctl(h->uffd, UFFDIO_WAKE, &r) == 0)
		return 0;
	/* a wake that fails leaves a thread blocked: never silently */
	if (errno == ESRCH) {
		helper_vmm_gone(h);
	} else if (!__atomic_exchange_n(&h->wake_failed, true, __ATOMIC_ACQ_REL)) {
		helper_error(h, "block %s page %llu: UFFDIO_WAKE: %s", b->d.name,
			     (unsigned long long)page, strerror(errno));
	}
	return -errno;
}

/*
 * UFFDIO_COPY of n pages from src to page first of b.  Returns pages copied
 * before the first one that stopped it, and sets *stop to why (STOP_EXISTS:
 * it existed; STOP_DISCARDED: memory events discarded or unmapped it, and
 * only zeros may go there); -errno on failure.  With memory events on, the
 * discarded check and the ioctl run under the read side of the events lock
 * (events.c); zeros skip the check.
 */
enum { STOP_NONE, STOP_EXISTS, STOP_DISCARDED };

static int64_t copy_run(struct helper *h, struct hstats *st, struct hblock *b, uint64_t first,
			uint64_t n, const uint8_t *src, bool zeros, int *stop)
{
	unsigned shift = b->d.page_shift;
	uint64_t done = 0, len = n << shift, waited = 0;
	int64_t ret;
	int tries = 0;

	*stop = STOP_NONE;
	events_install_begin(h);
	while (done < len) {
		uint64_t upto = len, k;
		struct uffdio_copy c;
		int rc, err;

		if (h->events && !zeros) {
			/* copy up to the first discarded page, looked at under the lock */
			for (k = first + (done >> shift); k < first + n && !events_discarded(b, k); k++)
				;
			upto = (k - first) << shift;
			if (upto == done) {
				*stop = STOP_DISCARDED;
				break;
			}
		}
		c = (struct uffdio_copy){
			.dst = b->host_addr + (first << shift) + done,
			.src = (uint64_t)(uintptr_t)(src + done),
			.len = upto - done,
			.mode = 0,
		};
		rc = ioctl(h->uffd, UFFDIO_COPY, &c);
		err = rc < 0 ? errno : 0;
		STAT_ADD(st, copy_ioctls, 1);
		PCH_PROBE(page_installed, c.dst, c.copy, 0, err);
		/* Partial progress is reported in c.copy whatever the errno. */
		if (c.copy > 0)
			done += (uint64_t)c.copy;
		if (!err)
			continue; /* done, or stopped short of a discarded page: looked at next */
		if (err == EEXIST) {
			*stop = STOP_EXISTS;
			break;
		}
		if (err == EAGAIN && c.copy > 0)
			continue; /* partial copy: the rest may hit a present page */
		if (err == EAGAIN && (h->events ? events_eagain(h, st, &waited) :
						  retry_eagain(st, &tries)))
			continue;
		/*
		 * Unmapped under us: the UNMAP event, once read, marks the page
		 * gone.  Read it, and look again.
		 */
		if (err == ENOENT && h->events && !zeros && events_eagain(h, st, &waited) &&
		    events_discarded(b, first + (done >> shift)))
			continue;
		ret = -err;
		goto out;
	}
	ret = (int64_t)(done >> shift);
out:
	events_install_end(h);
	return ret;
}

int pages_install(struct helper *h, struct hstats *st, unsigned blk, const uint64_t *offs,
		  uint32_t count, const uint8_t *data, bool urgent)
{
	struct hblock *b = &h->blk[blk];
	unsigned shift = b->d.page_shift;
	uint32_t i = 0;

	while (i < count) {
		uint64_t first = offs[i] >> shift;
		uint32_t n = 1;
		int64_t got;
		int stop;

		/* Already installed by another path: nothing to do. */
		if (pch_bitmap_test(&b->present, first)) {
			i++;
			continue;
		}
		while (i + n < count && (offs[i + n] >> shift) == first + n &&
		       !pch_bitmap_test(&b->present, first + n))
			n++;
		got = copy_run(h, st, b, first, n, data + ((size_t)i << shift), false, &stop);
		if (got == -ESRCH) {
			helper_vmm_gone(h);
			return -ESRCH;
		}
		if (got == -ENOENT && __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
			return 0; /* unregistered at COMPLETE: nothing is waiting for it */
		if (got < 0) {
			pch_err("block %s: UFFDIO_COPY of %u pages at page %llu: %s", b->d.name, n,
				(unsigned long long)first, strerror((int)-got));
			return (int)got;
		}
		mark_present(h, st, b, first, (uint64_t)got);
		STAT_ADD(st, bytes_bounce, (uint64_t)got << shift);
		if (urgent)
			STAT_ADD(st, pages_urgent, (uint64_t)got);
		else
			STAT_ADD(st, pages_bulk, (uint64_t)got);
		i += (uint32_t)got;
		if (stop == STOP_EXISTS) {
			/* Someone else installed it; the kernel woke nobody for us. */
			STAT_ADD(st, eexist, 1);
			mark_present(h, st, b, first + (uint64_t)got, 1);
			pages_wake(h, blk, first + (uint64_t)got);
			i++;
		} else if (stop == STOP_DISCARDED) {
			/* old content, never over a discarded page: dropped */
			STAT_ADD(st, pages_dropped_discarded, 1);
			i++;
		}
	}
	return 0;
}

void pages_mark_zero(struct helper *h, struct hstats *st, unsigned blk, const uint64_t *offs,
		     uint32_t count)
{
	struct hblock *b = &h->blk[blk];
	uint64_t newly = 0, zeros = 0;
	uint32_t i;

	for (i = 0; i < count; i++) {
		uint64_t p = offs[i] >> b->d.page_shift;
		uint8_t s;

		if (!b->own) {
			zeros += pch_bitmap_set(&b->zero, p);
			newly += pch_bitmap_set(&b->inplace, p);
			continue;
		}
		/*
		 * Shared block: a page someone is writing (data for it came too,
		 * from a confused source) is left to that writer; counting it in
		 * place could let COMPLETE unregister the range under the write.
		 * Holding the page while marking keeps a bulk claim out.
		 */
		s = pages_own(b, p);
		if ((s & OWN_MASK) != OWN_FREE ||
		    !__atomic_compare_exchange_n(&b->own[p], &s, OWN_URG, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			continue;
		zeros += pch_bitmap_set(&b->zero, p);
		newly += pch_bitmap_set(&b->inplace, p);
		__atomic_store_n(&b->own[p], s, __ATOMIC_RELEASE);
	}
	STAT_ADD(st, pages_zero, zeros);
	if (newly)
		STAT_ADD(st, inplace, newly);
}

int pages_zeropage(struct helper *h, struct hstats *st, unsigned blk, uint64_t page)
{
	struct hblock *b = &h->blk[blk];
	int rc;

	if (hblock_shared(b)) {
		bool was = pch_bitmap_test(&b->present, page);

		rc = pages_put(h, st, blk, page, NULL, PUT_ZERO);
		if (!rc && !was)
			STAT_ADD(st, zero_installed, 1);
		return rc;
	}
	if (b->d.backing == PCH_BACKING_HUGETLB_PRIVATE) {
		/* hugetlb has no UFFDIO_ZEROPAGE: copy a huge page of zeros */
		int stop;
		int64_t got = copy_run(h, st, b, page, 1, h->zero_buf, true, &stop);

		if (got == -ESRCH)
			helper_vmm_gone(h);
		if (got == -ENOENT && (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE) ||
				       events_discarded(b, page))) {
			STAT_ADD(st, faults_late, 1);
			pages_wake(h, blk, page);
			return 0;
		}
		if (got < 0)
			return (int)got;
		if (stop == STOP_EXISTS) {
			STAT_ADD(st, eexist, 1);
			pages_wake(h, blk, page);
		} else {
			STAT_ADD(st, zero_installed, 1);
		}
		mark_present(h, st, b, page, 1);
		return 0;
	}
	rc = zeropage_ioctl(h, st, b, page);
	if (rc == -EEXIST) {
		STAT_ADD(st, eexist, 1);
		pages_wake(h, blk, page);
		mark_present(h, st, b, page, 1);
		return 0;
	}
	if (rc == -ENOENT && (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE) ||
			      events_discarded(b, page))) {
		/*
		 * Unregistered under us at COMPLETE: a thread that faulted here
		 * may have missed UNREGISTER's wake-up; this one is all it needs
		 * (its retry is served by the kernel).  Or unmapped (an UNMAP
		 * event): a thread still waiting there is woken to find it gone.
		 */
		STAT_ADD(st, faults_late, 1);
		pages_wake(h, blk, page);
		return 0;
	}
	if (rc)
		return rc;
	STAT_ADD(st, zero_installed, 1);
	mark_present(h, st, b, page, 1);
	return 0;
}

int pages_continue(struct helper *h, struct hstats *st, unsigned blk, uint64_t first, uint64_t n,
		   enum put_kind kind)
{
	struct hblock *b = &h->blk[blk];
	unsigned shift = b->d.page_shift;
	uint64_t done = 0, len = n << shift, pg;
	int tries = 0;

	/* every byte is in: from now on a helper taking over only maps these (state.h) */
	for (pg = first; pg < first + n; pg++)
		pch_bitmap_set(&b->mapping, pg);
	while (done < len) {
		struct uffdio_continue c = {
			.range = { .start = b->host_addr + (first << shift) + done,
				   .len = len - done },
			.mode = 0,
		};
		int rc = ioctl(h->uffd, UFFDIO_CONTINUE, &c);
		int err = rc < 0 ? errno : 0;

		STAT_ADD(st, continue_ioctls, 1);
		PCH_PROBE(page_installed, c.range.start, c.mapped, 2, err);
		/* pages mapped before an error are reported in c.mapped */
		if (c.mapped > 0) {
			uint64_t pages = (uint64_t)c.mapped >> shift;

			/* tests: die where a successor finds mapping without present */
			if (h->o.test_die_continue &&
			    __atomic_add_fetch(&h->continues_mapped, 1, __ATOMIC_RELAXED) ==
				    h->o.test_die_continue) {
				pch_warn("dying after CONTINUE %llu mapped, before it is recorded "
					 "(--test-die-continue)",
					 (unsigned long long)h->o.test_die_continue);
				raise(SIGKILL);
			}

			mark_present(h, st, b, first + (done >> shift), pages);
			if (kind == PUT_URGENT)
				STAT_ADD(st, pages_urgent, pages);
			else if (kind == PUT_BULK)
				STAT_ADD(st, pages_bulk, pages);
			done += (uint64_t)c.mapped;
		}
		if (!err)
			break;
		if (err == EEXIST) {
			/* mapped by another path (a fault served first): wake its waiters */
			uint64_t p = first + (done >> shift);

			STAT_ADD(st, eexist, 1);
			mark_present(h, st, b, p, 1);
			pages_wake(h, blk, p);
			done += b->d.page_size;
			continue;
		}
		if (err == EAGAIN && c.mapped > 0)
			continue;
		if (err == EAGAIN && retry_eagain(st, &tries))
			continue;
		if (err == ESRCH) {
			helper_vmm_gone(h);
			return -ESRCH;
		}
		if (err == ENOENT && __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
			return 0; /* unregistered at COMPLETE: the page cache holds it */
		pch_err("block %s: UFFDIO_CONTINUE of %llu pages at page %llu: %s", b->d.name,
			(unsigned long long)((len - done) >> shift),
			(unsigned long long)(first + (done >> shift)), strerror(err));
		return -err;
	}
	return 0;
}

/*
 * Write one page of a shared block, not mapped by the VMM, from src (NULL:
 * zeros).  shmem: pwrite, which allocates the page without zeroing it first
 * and costs no fault here; hugetlbfs has no write(): through the mapping,
 * populated first so that a short pool is an error, not a SIGBUS.
 */
static int write_page(struct hblock *b, uint64_t page, uint8_t *dst, const void *src)
{
	static const uint8_t zeros[4096];
	off_t off = (off_t)(page << b->d.page_shift);
	size_t done = 0;

	if (!b->splice) {
		if (madvise(dst, b->d.page_size, MADV_POPULATE_WRITE) < 0)
			return -errno;
		if (src)
			memcpy(dst, src, b->d.page_size);
		else
			memset(dst, 0, b->d.page_size);
		return 0;
	}
	while (done < b->d.page_size) {
		size_t len = src ? b->d.page_size - done : PCH_MIN(sizeof(zeros), b->d.page_size - done);
		ssize_t n = pwrite(b->fd, src ? (const uint8_t *)src + done : zeros, len,
				   off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/*
 * Fill a hole of a shared block and map it: UFFDIO_COPY from src (or a
 * page of zeros on hugetlb, which has no ZEROPAGE), UFFDIO_ZEROPAGE for a
 * zero shmem page.  0 when done, 1 when the page cache already holds the
 * page (EEXIST: not a hole), -errno on failure (logged).
 */
static int fill_hole(struct helper *h, struct hstats *st, struct hblock *b, uint64_t page,
		     const void *src)
{
	int64_t got;
	int rc, stop;

	/*
	 * The ioctl fills and maps the page at once: a helper taking over
	 * from us must not write it, only map it (state.h).  Cleared again
	 * when the page turns out not to be a hole, or the ioctl failed.
	 */
	pch_bitmap_set(&b->mapping, page);
	if (src || !b->splice) {
		got = copy_run(h, st, b, page, 1, src ? src : h->zero_buf, !src, &stop);
		if (got == -ENOENT && __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
			return 0; /* unregistered at COMPLETE: nobody waits for it */
		if (got < 0) {
			pch_bitmap_clear(&b->mapping, page);
			if (got == -ESRCH)
				helper_vmm_gone(h);
			else
				pch_err("block %s page %llu: UFFDIO_COPY: %s", b->d.name,
					(unsigned long long)page, strerror((int)-got));
			return (int)got;
		}
		if (stop == STOP_EXISTS)
			pch_bitmap_clear(&b->mapping, page);
		return stop == STOP_EXISTS ? 1 : 0;
	}
	rc = zeropage_ioctl(h, st, b, page);
	if (rc == -ENOENT && __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
		return 0;
	if (rc)
		pch_bitmap_clear(&b->mapping, page);
	if (rc == -EEXIST)
		return 1;
	if (rc && rc != -ESRCH)
		pch_err("block %s page %llu: UFFDIO_ZEROPAGE: %s", b->d.name,
			(unsigned long long)page, strerror(-rc));
	return rc;
}

int pages_put(struct helper *h, struct hstats *st, unsigned blk, uint64_t page, const void *src,
	      enum put_kind kind)
{
	struct hblock *b = &h->blk[blk];
	uint8_t *dst = b->local + (page << b->d.page_shift);
	int rc;

	for (;;) {
		uint8_t s;

		/*
		 * Every page is in place at COMPLETE, and the VMM may then write
		 * its holes (zero pages) itself: nothing writes the block after.
		 */
		if (pch_bitmap_test(&b->present, page) ||
		    __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
			return 0;
		s = pages_own(b, page);
		switch (s & OWN_MASK) {
		case OWN_FULL:
			return pages_continue(h, st, blk, page, 1, kind);
		case OWN_BULK:
		case OWN_URG:
			/* someone is writing it: ask an rx thread to give the page up */
			__atomic_fetch_or(&b->own[page], OWN_STEAL, __ATOMIC_ACQ_REL);
			return 1;
		default:
			if (!__atomic_compare_exchange_n(&b->own[page], &s, OWN_URG, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue; /* changed under us: look again */
			/*
			 * A free page is a hole (a page given up mid-receive was
			 * punched out): fill and map it in one ioctl that allocates
			 * without zeroing and takes no inode lock (a pwrite would
			 * wait behind a bulk splice into the same memfd).
			 */
			rc = fill_hole(h, st, b, page, src);
			if (rc <= 0) {
				if (rc) {
					__atomic_store_n(&b->own[page], s, __ATOMIC_RELEASE);
					return rc;
				}
				__atomic_store_n(&b->own[page], OWN_FULL, __ATOMIC_RELEASE);
				mark_present(h, st, b, page, 1);
				if (kind == PUT_URGENT)
					STAT_ADD(st, pages_urgent, 1);
				else if (kind == PUT_BULK)
					STAT_ADD(st, pages_bulk, 1);
				if (src)
					STAT_ADD(st, bytes_bounce, b->d.page_size);
				return 0;
			}
			/* not a hole after all: write what is there, then map it */
			rc = write_page(b, page, dst, src);
			if (rc) {
				__atomic_store_n(&b->own[page], s, __ATOMIC_RELEASE);
				pch_err("block %s page %llu: writing the page: %s", b->d.name,
					(unsigned long long)page, strerror(-rc));
				return rc;
			}
			if (src)
				STAT_ADD(st, bytes_bounce, b->d.page_size);
			__atomic_store_n(&b->own[page], OWN_FULL, __ATOMIC_RELEASE);
			return pages_continue(h, st, blk, page, 1, kind);
		}
	}
}

uint64_t pages_total(struct helper *h)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < h->nblk; i++)
		n += h->blk[i].d.npages;
	return n;
}

uint64_t pages_inplace(struct helper *h)
{
	uint64_t n = h->premarked;
	unsigned i;

	n += STAT_GET(&h->ft.st, inplace);
	for (i = 0; i < h->nrx; i++)
		n += STAT_GET(&h->rx[i].st, inplace);
	return n;
}

void pages_kick_if_all_in(struct helper *h)
{
	if (pages_inplace(h) >= pages_total(h))
		helper_kick(h);
}

size_t pages_frame_cap(struct helper *h)
{
	size_t cap = PCH_FRAME_MAX_DATA;
	unsigned i;

	for (i = 0; i < h->vtab.count; i++)
		cap = PCH_MAX(cap, (size_t)h->vtab.b[i].page_size);
	return cap;
}
