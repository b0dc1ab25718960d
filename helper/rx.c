// SPDX-License-Identifier: MIT
/*
 * rx.c - bulk receive threads.  Each owns a share of the PAGES channels and
 * one io_uring; every channel always has one RECV in flight, for exactly the
 * rest of the part of the frame it is in (header, offsets, data), so page
 * data lands where UFFDIO_COPY reads it with no copy in between.
 *
 * A frame is checked field by field before anything in it is used; a bad
 * frame closes its channel (the others go on, and whatever that channel
 * would have sent is requested on URGENT once every channel has ended).
 * Frames of a channel are handled in order, and each is installed before the
 * next is read, so seeing SYNC(epoch) means everything before it is in.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helper_i.h"
#include "log.h"
#include "util.h"

#define RX_TICK_MS 200
/*
 * In-place data is received in pieces of at most this: between pieces the
 * thread gives up pages a fault is waiting for, so a fault on a (huge) page
 * half received here is answered on URGENT, not after the rest of it.
 */
#define RX_PIECE (256u << 10)
#define RX_PIECE_IOV (RX_PIECE / 4096 + 2)
/* user_data bit: a POLL_ADD of a channel whose frame is spliced in */
#define UD_POLL (1ull << 32)
/* user_data: a read of the thread's wake eventfd (the fault thread wants a page) */
#define UD_WAKE (1ull << 33)
/* how long the end of a frame waits for another writer of one of its pages */
#define RESCUE_WAIT_MS 1000
/* how an rx thread steps aside for faults (step_aside) */
#define RX_ASIDE_STEP_US 50
#define RX_ASIDE_MAX_US 2000
/* faults come in bursts: a fault this recent counts as one being served */
#define RX_ASIDE_RECENT_US 500

/* user_data: which channel slot of this thread. */
static uint64_t ud_chan(unsigned slot)
{
	return (uint64_t)slot;
}

/*
 * Give up page i of the current in-place frame: what was written of it is
 * not vouched for, so it is dropped from the page cache (a hole again), and
 * the page is free for the fault thread to write.
 */
static void release_page(struct rx_thread *t, struct rx_chan *c, uint32_t i, bool steal)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	uint64_t page = c->offs[i] >> b->d.page_shift;
	size_t ps = b->d.page_size, start = (size_t)i * ps;
	uint8_t s = pages_own(b, page);

	/*
	 * Keep what arrived of it with the rest, which now goes to the bounce
	 * buffer: at the end of the frame the whole page is there, to be put
	 * in place if the fault's answer has not done it yet.
	 */
	if (steal && c->got > start)
		memcpy(c->data + start, b->local + c->offs[i], PCH_MIN(c->got - start, ps));

	if (madvise(b->local + (page << b->d.page_shift), b->d.page_size, MADV_REMOVE) < 0)
		pch_warn("block %s page %llu: MADV_REMOVE of a partial page: %s", b->d.name,
			 (unsigned long long)page, strerror(errno));
	while (!__atomic_compare_exchange_n(&b->own[page], &s, OWN_FREE | (s & OWN_STEAL), false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	c->mine[i] = 0;
	if (steal)
		STAT_ADD(&t->st, steals, 1);
}

/* Release every page of the current in-place frame not fully received. */
static void release_frame(struct rx_thread *t, struct rx_chan *c)
{
	uint32_t i;

	if (!c->in_place || c->part != 2)
		return;
	for (i = c->settled; i < c->hdr.count; i++)
		if (c->mine[i])
			release_page(t, c, i, false);
	c->in_place = false;
	fault_kick(t->h);
}

static void chan_fail(struct rx_thread *t, struct rx_chan *c, const char *prefix, const char *what)
{
	struct helper *h = t->h;

	release_frame(t, c);
	snprintf(c->err, sizeof(c->err), "%s%s", prefix, what);
	helper_error(h, "PAGES channel %u: %s; channel closed", c->index, c->err);
	__atomic_store_n(&c->state, CHAN_DEAD, __ATOMIC_RELEASE);
	shutdown(c->fd, SHUT_RDWR);
	helper_kick(h);
}

static void chan_expect(struct rx_chan *c, int part, size_t want)
{
	c->part = part;
	c->want = want;
	c->got = 0;
}

static void *chan_buf(struct rx_chan *c)
{
	switch (c->part) {
	case 0:
		return (uint8_t *)&c->hdr + c->got;
	case 1:
		return (uint8_t *)c->offs + c->got;
	default:
		return c->data + c->got;
	}
}

/*
 * Give up every page of the current in-place frame that a fault now waits
 * for and that is not complete yet, wherever it is in the frame: its URGENT
 * answer goes in place at once instead of waiting for the stream to get
 * there.  Called before each piece (or splice) of data.
 */
static void release_wanted(struct rx_thread *t, struct rx_chan *c, size_t from)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	uint32_t i, n = 0;

	for (i = (uint32_t)(from / b->d.page_size); i < c->hdr.count; i++)
		if (c->mine[i] && pages_own(b, c->offs[i] >> b->d.page_shift) & OWN_STEAL) {
			release_page(t, c, i, true);
			n++;
		}
	if (n)
		fault_kick(t->h);
}

/*
 * Next piece of an in-place frame: pages we own go straight to their place
 * in the block, the others (someone else has them) to the bounce buffer and
 * are dropped.  Pages a fault now waits for are given up first.
 */
static void prep_piece(struct rx_thread *t, struct rx_chan *c, struct io_uring_sqe *sqe)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	size_t ps = b->d.page_size, from = c->got, end = from + PCH_MIN(c->want - c->got, RX_PIECE);
	size_t pos;
	uint32_t i, n = 0;

	release_wanted(t, c, c->got);
	c->inflight_end = end;
	for (pos = from; pos < end;) {
		size_t in = pos % ps, len = PCH_MIN(ps - in, end - pos);
		uint8_t *dst;

		i = (uint32_t)(pos / ps);
		dst = c->mine[i] ? b->local + c->offs[i] + in : c->data + (size_t)i * ps + in;
		if (n && (uint8_t *)c->iov[n - 1].iov_base + c->iov[n - 1].iov_len == dst) {
			c->iov[n - 1].iov_len += len;
		} else {
			c->iov[n].iov_base = dst;
			c->iov[n].iov_len = len;
			n++;
		}
		pos += len;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	io_uring_prep_recvmsg(sqe, c->fd, &c->msg, MSG_WAITALL);
}

static int queue_recv(struct rx_thread *t, struct io_uring *ring, struct rx_chan *c, unsigned slot)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	if (c->part == 2 && c->in_place && t->h->blk[c->hdr.block].splice) {
		/* spliced when the socket is readable, without blocking */
		io_uring_prep_poll_add(sqe, c->fd, POLLIN);
		io_uring_sqe_set_data64(sqe, ud_chan(slot) | UD_POLL);
		return 0;
	}
	if (c->part == 2 && c->in_place)
		prep_piece(t, c, sqe);
	else
		io_uring_prep_recv(sqe, c->fd, chan_buf(c), c->want - c->got, MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud_chan(slot));
	return 0;
}

/*
 * An in-place frame's pages whose last byte is in are complete: mark them
 * so (OWN_FULL), before anything may map them.
 */
static void settle_pages(struct rx_thread *t, struct rx_chan *c)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	size_t ps = b->d.page_size;

	bool wanted = false;

	while (c->settled < c->hdr.count && (c->settled + 1) * ps <= c->got) {
		uint32_t i = c->settled++;

		if (c->mine[i] && __atomic_exchange_n(&b->own[c->offs[i] >> b->d.page_shift],
						      OWN_FULL, __ATOMIC_ACQ_REL) & OWN_STEAL)
			wanted = true;
	}
	/* a fault waits for one of these: the fault thread maps it now */
	if (wanted)
		fault_kick(t->h);
}

/*
 * Claim the pages of a PAGES frame of a shared block that nobody else has
 * (not mapped, no fault waiting for them, no other writer).
 */
static void plan_in_place(struct rx_thread *t, struct rx_chan *c)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	bool complete = __atomic_load_n(&t->h->complete, __ATOMIC_ACQUIRE);
	uint32_t i;

	c->in_place = true;
	c->settled = 0;
	c->mapped = 0;
	c->inflight_end = c->want; /* until the first piece is queued: release nothing */
	for (i = 0; i < c->hdr.count; i++) {
		uint64_t page = c->offs[i] >> b->d.page_shift;
		uint8_t s = OWN_FREE;

		/*
		 * Never a page in place already: a zero page is a hole the VMM
		 * may fill itself once the range is unregistered at COMPLETE,
		 * and nothing may write the memfd after that.
		 */
		c->mine[i] = !complete && !pch_bitmap_test(&b->inplace, page) &&
			     __atomic_compare_exchange_n(&b->own[page], &s, OWN_BULK, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
		/* marked zero between the test and the claim (pages_mark_zero): leave it */
		if (c->mine[i] && pch_bitmap_test(&b->inplace, page)) {
			__atomic_store_n(&b->own[page], OWN_FREE, __ATOMIC_RELEASE);
			c->mine[i] = 0;
		}
	}
	/*
	 * hugetlb: populate each run in one call, so a short huge page pool is
	 * an error here rather than in the middle of a receive.
	 */
	for (i = 0; i < c->hdr.count && !b->splice;) {
		uint32_t n = 1;

		if (!c->mine[i]) {
			i++;
			continue;
		}
		while (i + n < c->hdr.count && c->mine[i + n] &&
		       c->offs[i + n] == c->offs[i] + ((uint64_t)n << b->d.page_shift))
			n++;
		if (madvise(b->local + c->offs[i], (size_t)n << b->d.page_shift,
			    MADV_POPULATE_WRITE) < 0 && !t->populate_warned) {
			t->populate_warned = true;
			pch_warn("block %s: MADV_POPULATE_WRITE: %s", b->d.name, strerror(errno));
		}
		i += n;
	}
}

/*
 * Map the settled pages of the in-place frame not mapped yet: contiguous
 * runs, one CONTINUE each, as each piece completes (a fault on a page of
 * this frame waits for its piece, not for the whole frame).  0 or -errno.
 */
static int continue_settled(struct rx_thread *t, struct rx_chan *c)
{
	struct helper *h = t->h;
	struct hblock *b = &h->blk[c->hdr.block];
	unsigned shift = b->d.page_shift;
	uint32_t i = c->mapped, n, mine = 0;
	int rc = 0;

	while (i < c->settled) {
		uint64_t first = c->offs[i] >> shift;

		if (!c->mine[i]) {
			i++;
			continue;
		}
		for (n = 1; i + n < c->settled && c->mine[i + n] &&
			    (c->offs[i + n] >> shift) == first + n; n++)
			;
		rc = pages_continue(h, &t->st, c->hdr.block, first, n, PUT_BULK);
		if (rc)
			break;
		mine += n;
		i += n;
	}
	c->mapped = i;
	STAT_ADD(&t->st, bytes_inplace, (uint64_t)mine << shift);
	return rc;
}

/*
 * The channel's pipe, made on first use: socket -> pipe moves the
 * received data by reference, pipe -> memfd is its one copy, into
 * page-cache pages allocated without zeroing (receiving into the mapping
 * made the kernel zero every new shmem page first: 44% of the receiver's
 * time, half the bulk rate of anonymous memory).  Its capacity bounds a
 * splice; 0 or -errno.
 */
static int chan_pipe(struct rx_chan *c)
{
	int p[2];

	if (c->pipe[0] >= 0)
		return 0;
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/* a piece at a time at most; a smaller pipe only means more splices */
	fcntl(p[1], F_SETPIPE_SZ, RX_PIECE);
	c->pipe[0] = p[0];
	c->pipe[1] = p[1];
	c->pipe_cap = (size_t)PCH_MAX(fcntl(p[1], F_GETPIPE_SZ), 4096);
	return 0;
}

/*
 * Move what has arrived of a shmem frame's data to its place, without
 * blocking: pages we own go socket -> pipe -> memfd, the others are read
 * into the bounce buffer and dropped.  Pages a fault waits for are given
 * up before anything more is written into them, and pieces are mapped as
 * they complete, as with recvmsg.  0 when the socket has nothing more for
 * now (or the data part is complete), -errno with *what on failure.
 */
static int splice_data(struct rx_thread *t, struct rx_chan *c, const char **what)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	size_t ps = b->d.page_size;
	int rc;

	*what = "";
	rc = chan_pipe(c);
	if (rc) {
		*what = "pipe: ";
		return rc;
	}
	while (c->got < c->want) {
		size_t from = c->got, pend = PCH_MIN((from / RX_PIECE + 1) * RX_PIECE, c->want);
		size_t end, len, left;
		uint32_t i = (uint32_t)(from / ps), j;
		bool mine;
		ssize_t n;

		release_wanted(t, c, c->got);
		mine = c->mine[i];
		/* one segment: pages going the same way, contiguous, to the piece's end */
		for (end = (size_t)(i + 1) * ps; end < pend; end += ps) {
			j = (uint32_t)(end / ps);
			if (c->mine[j] != mine || (mine && c->offs[j] != c->offs[j - 1] + ps))
				break;
		}
		len = PCH_MIN(end, pend) - from;
		if (!mine) {
			n = recv(c->fd, c->data + from, len, MSG_DONTWAIT);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -errno;
			if (n == 0)
				return -ECONNRESET;
		} else {
			loff_t off = (loff_t)(c->offs[i] + from % ps);
			int avail = 0;

			/*
			 * A TCP splice waits for data unless the socket itself is
			 * O_NONBLOCK (SPLICE_F_NONBLOCK covers only the pipe): move
			 * at most what is queued, and poll again when nothing is.
			 */
			if (ioctl(c->fd, FIONREAD, &avail) < 0)
				return -errno;
			if (avail <= 0) {
				/* nothing queued: 0 means wait, unless the peer is gone */
				char b1;

				n = recv(c->fd, &b1, 1, MSG_PEEK | MSG_DONTWAIT);
				if (n == 0)
					return -ECONNRESET;
				if (n < 0 && errno != EAGAIN && errno != EINTR)
					return -errno;
				return 0;
			}
			n = splice(c->fd, NULL, c->pipe[1], NULL,
				   PCH_MIN(PCH_MIN(len, c->pipe_cap), (size_t)avail),
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -errno;
			if (n == 0)
				return -ECONNRESET;
			for (left = (size_t)n; left;) {
				ssize_t k = splice(c->pipe[0], NULL, b->fd, &off, left, SPLICE_F_MOVE);

				if (k < 0 && errno == EINTR)
					continue;
				if (k <= 0) {
					*what = "writing the memfd: ";
					return k < 0 ? -errno : -EIO;
				}
				left -= (size_t)k;
			}
		}
		__atomic_store_n(&c->last_rx_ns, pch_now_ns(), __ATOMIC_RELAXED);
		c->got += (size_t)n;
		settle_pages(t, c);
		if (c->got == pend && c->got < c->want) {
			rc = continue_settled(t, c);
			if (rc) {
				*what = "install failed: ";
				return rc;
			}
		}
	}
	return 0;
}

/*
 * End of an in-place frame: put in place the pages we did not own (a fault
 * had them, or took them from us), from the bounce buffer, unless the
 * fault's answer did already.  So every page of a frame is in place when
 * the next frame is read, as for private blocks: a SYNC read after it
 * still means everything before it is in.  0 or -errno.
 */
static int rescue_frame(struct rx_thread *t, struct rx_chan *c)
{
	struct hblock *b = &t->h->blk[c->hdr.block];
	size_t ps = b->d.page_size;
	uint64_t deadline = pch_now_ns() + RESCUE_WAIT_MS * 1000000ull;
	uint32_t i, n = 0;
	int rc;

	for (i = 0; i < c->hdr.count; i++) {
		uint64_t page = c->offs[i] >> b->d.page_shift, before;

		/* in place already, or known zero: nothing to rescue */
		if (c->mine[i] || pch_bitmap_test(&b->inplace, page))
			continue;
		before = STAT_GET(&t->st, bytes_bounce);
		while ((rc = pages_put(t->h, &t->st, c->hdr.block, page, c->data + (size_t)i * ps,
				       PUT_BULK)) == 1) {
			/*
			 * Another channel receiving it (a page sent twice) covers
			 * it with its own frame: only the fault thread, which never
			 * waits for us, is worth waiting for, and not for long.
			 */
			if ((pages_own(b, page) & OWN_MASK) == OWN_BULK)
				break;
			if (pch_now_ns() > deadline) {
				pch_warn("block %s page %llu: still being written by another path "
					 "after %d ms; left to it", b->d.name,
					 (unsigned long long)page, RESCUE_WAIT_MS);
				break;
			}
			sched_yield();
		}
		if (rc < 0)
			return rc;
		/* counted when written from here, not when found in place meanwhile */
		if (!rc && STAT_GET(&t->st, bytes_bounce) != before) {
			STAT_ADD(&t->st, rescued, 1);
			n++;
		}
	}
	/* the fault thread may hold answers for these: it can drop them */
	if (n)
		fault_kick(t->h);
	return 0;
}

/*
 * A part of the current frame is complete: check it and move on.  Returns 1
 * to keep receiving, 0 when the channel is finished or dead.
 */
static int frame_step(struct rx_thread *t, struct rx_chan *c)
{
	struct helper *h = t->h;
	const char *why;
	int rc;

	switch (c->part) {
	case 0:
		rc = pch_frame_check_hdr(&c->hdr, &h->vtab, c->seq, false, &why);
		if (rc) {
			chan_fail(t, c, "bad frame: ", why);
			return 0;
		}
		c->seq++;
		switch (c->hdr.type) {
		case PCH_FRAME_SYNC:
			/* only an epoch we asked for, and each once, in order */
			if (c->hdr.arg <= c->sync_epoch ||
			    c->hdr.arg > __atomic_load_n(&h->sync_asked, __ATOMIC_ACQUIRE)) {
				chan_fail(t, c, "bad frame: ", "SYNC epoch not asked for or not increasing");
				return 0;
			}
			__atomic_store_n(&c->sync_epoch, c->hdr.arg, __ATOMIC_RELEASE);
			pch_dbg(PCH_DBG_CHAN, "PAGES channel %u: SYNC %llu", c->index,
				(unsigned long long)c->hdr.arg);
			helper_kick(h);
			chan_expect(c, 0, sizeof(c->hdr));
			return 1;
		case PCH_FRAME_KEEPALIVE:
			/* the source is there, with nothing to send on this channel */
			chan_expect(c, 0, sizeof(c->hdr));
			return 1;
		case PCH_FRAME_END:
			__atomic_store_n(&c->state, CHAN_ENDED, __ATOMIC_RELEASE);
			pch_dbg(PCH_DBG_CHAN, "PAGES channel %u: END after %llu frames", c->index,
				(unsigned long long)c->frames);
			helper_kick(h);
			chan_expect(c, 0, sizeof(c->hdr));
			return 1;
		default:
			chan_expect(c, 1, pch_frame_offsets_len(&c->hdr));
			return 1;
		}
	case 1:
		rc = pch_frame_check_offsets(&c->hdr, c->offs, &h->vtab, &why);
		if (rc) {
			chan_fail(t, c, "bad frame: ", why);
			return 0;
		}
		if (c->hdr.type == PCH_FRAME_ZERO) {
			pages_mark_zero(h, &t->st, c->hdr.block, c->offs, c->hdr.count);
			goto frame_done;
		}
		chan_expect(c, 2, pch_frame_data_len(&c->hdr, &h->vtab));
		if (hblock_shared(&h->blk[c->hdr.block]))
			plan_in_place(t, c);
		return 1;
	default:
		PCH_PROBE(page_arrived, c->hdr.block, c->offs[0], c->hdr.count, c->index, c->hdr.type, 0);
		/* after COMPLETE the ranges are unregistered: the data is not needed */
		if (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE)) {
			c->in_place = false;
			goto frame_done;
		}
		if (c->in_place) {
			rc = continue_settled(t, c);
			if (!rc)
				rc = rescue_frame(t, c);
			c->in_place = false;
		} else
			rc = pages_install(h, &t->st, c->hdr.block, c->offs, c->hdr.count, c->data,
					   false);
		if (rc == -ESRCH)
			return 0; /* the VMM is gone; main stops everything */
		if (rc) {
			chan_fail(t, c, "install failed: ", strerror(-rc));
			return 0;
		}
		STAT_ADD(&t->st, bytes, c->want);
		__atomic_store_n(&c->bytes, c->bytes + c->want, __ATOMIC_RELAXED);
		__atomic_store_n(&c->pages, c->pages + c->hdr.count, __ATOMIC_RELAXED);
		goto frame_done;
	}
frame_done:
	STAT_ADD(&t->st, frames, 1);
	__atomic_store_n(&c->frames, c->frames + 1, __ATOMIC_RELAXED);
	pages_kick_if_all_in(h);
	chan_expect(c, 0, sizeof(c->hdr));
	return 1;
}

/*
 * Every rx thread but the first steps aside while a fault is being served,
 * or one was read less than RX_ASIDE_RECENT_US ago (the next of a burst):
 * with as many rx threads as CPUs, bulk work on every CPU held the fault
 * path off (answers waited for a CPU).  Short sleeps, RX_ASIDE_MAX_US at
 * most at a time, so bulk never stops for long.
 */
static bool faults_now(struct helper *h, uint64_t now)
{
	return __atomic_load_n(&h->faults_waiting, __ATOMIC_ACQUIRE) ||
	       now - __atomic_load_n(&h->last_fault_ns, __ATOMIC_ACQUIRE) <
		       RX_ASIDE_RECENT_US * 1000ull;
}

static void step_aside(struct rx_thread *t)
{
	struct helper *h = t->h;
	uint64_t t0 = pch_now_ns(), now = t0;

	if (!t->id || !faults_now(h, now))
		return;
	while (faults_now(h, now) && !helper_stopping(h) && now - t0 < RX_ASIDE_MAX_US * 1000ull) {
		struct timespec ts = { .tv_nsec = RX_ASIDE_STEP_US * 1000l };

		nanosleep(&ts, NULL);
		now = pch_now_ns();
	}
	STAT_ADD(&t->st, rx_aside, 1);
	STAT_ADD(&t->st, rx_aside_us, (now - t0) / 1000);
}

static void arm_wake(struct rx_thread *t, struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return; /* the 200 ms tick still comes */
	io_uring_prep_read(sqe, t->wake_efd, &t->wake_buf, sizeof(t->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, UD_WAKE);
}

void rx_kick_all(struct helper *h)
{
	uint64_t one = 1;
	unsigned i;

	for (i = 0; i < h->nrx; i++)
		if (h->rx[i].wake_efd > 0 && write(h->rx[i].wake_efd, &one, sizeof(one)) < 0)
			pch_warn("rx/%u: cannot wake it: %s", i, strerror(errno));
}

static void *rx_main(void *arg)
{
	struct rx_thread *t = arg;
	struct helper *h = t->h;
	struct io_uring ring;
	unsigned i, live;
	char name[16];
	int rc;

	snprintf(name, sizeof(name), "rx/%u", t->id);
	pch_thread_name(name);
	if (h->o.rx_nice)
		pch_thread_nice(h->o.rx_nice);

	rc = io_uring_queue_init(t->nchan + 9, &ring, 0);
	if (rc) {
		helper_error(h, "rx/%u: io_uring_queue_init: %s", t->id, strerror(-rc));
		/* its channels are lost: say so, so their pages are swept */
		for (i = 0; i < t->nchan; i++) {
			__atomic_store_n(&t->chan[i]->state, CHAN_DEAD, __ATOMIC_RELEASE);
			shutdown(t->chan[i]->fd, SHUT_RDWR);
		}
		helper_kick(h);
		return NULL;
	}
	for (i = 0; i < t->nchan; i++) {
		struct rx_chan *c = t->chan[i];

		__atomic_store_n(&c->last_rx_ns, pch_now_ns(), __ATOMIC_RELAXED);
		__atomic_store_n(&c->state, CHAN_STREAMING, __ATOMIC_RELEASE);
		chan_expect(c, 0, sizeof(c->hdr));
		queue_recv(t, &ring, c, i);
	}
	live = t->nchan;
	arm_wake(t, &ring);

	while (live && !helper_stopping(h)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = RX_TICK_MS * 1000000ll };
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		step_aside(t);
		rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR) {
			helper_error(h, "rx/%u: io_uring wait: %s", t->id, strerror(-rc));
			break;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			struct rx_chan *c;

			seen++;
			if (ud == UD_WAKE) {
				/*
				 * A fault wants a page a frame of ours holds: give it up
				 * now rather than when (if ever) more data comes.  Only
				 * where nothing is being written: a spliced frame waits
				 * in POLL; a received one, past the piece in flight.
				 */
				for (i = 0; i < t->nchan; i++) {
					struct rx_chan *w = t->chan[i];
					const struct hblock *b;

					/* (hdr.block is checked once in_place is set) */
					if (!w->in_place || w->part != 2 ||
					    __atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == CHAN_DEAD)
						continue;
					b = &h->blk[w->hdr.block];
					/*
					 * A received frame: only pages wholly past the piece
					 * in flight, which the kernel may be writing now.
					 */
					release_wanted(t, w, b->splice ? w->got :
						       PCH_DIV_ROUND_UP(w->inflight_end, b->d.page_size) *
							       b->d.page_size);
				}
				arm_wake(t, &ring);
				continue;
			}
			if ((ud & ~UD_POLL) >= t->nchan)
				continue;
			c = t->chan[ud & ~UD_POLL];
			if (ud & UD_POLL) {
				const char *what = "";
				int st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);

				if (st == CHAN_DEAD) {
					/* closed by main (silent): give its pages back */
					release_frame(t, c);
					live--;
					continue;
				}
				if (helper_stopping(h)) {
					live--;
					continue;
				}
				rc = res < 0 && res != -EINTR && res != -EAGAIN ? res :
				     splice_data(t, c, &what);
				if (rc == -ESRCH || (rc && __atomic_load_n(&h->complete,
									 __ATOMIC_ACQUIRE))) {
					live--; /* the VMM is gone, or nothing is needed any more */
					continue;
				}
				if (rc) {
					chan_fail(t, c, res < 0 ? "" : what,
						  rc == -ECONNRESET ? "connection closed mid-stream" :
								      strerror(-rc));
					live--;
					continue;
				}
				if (c->got < c->want || frame_step(t, c))
					queue_recv(t, &ring, c, (unsigned)(ud & ~UD_POLL));
				else
					live--;
				continue;
			}
			if (res <= 0) {
				int st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);

				if (helper_stopping(h)) {
					/* main shut the sockets: exiting, or pausing to resume */
					live--;
					continue;
				}
				if (st == CHAN_DEAD) {
					release_frame(t, c);
					live--;
					continue;
				}
				if ((res == 0 && st == CHAN_ENDED && c->part == 0 && c->got == 0) ||
				    __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE)) {
					/*
					 * Orderly close after END, or after COMPLETE, when
					 * the source stops streaming what is no longer needed.
					 */
					live--;
					continue;
				}
				if (res == -EINTR || res == -EAGAIN) {
					queue_recv(t, &ring, c, (unsigned)ud);
					continue;
				}
				chan_fail(t, c, "",
					  res == 0 ? "connection closed mid-stream" : strerror(-res));
				live--;
				continue;
			}
			__atomic_store_n(&c->last_rx_ns, pch_now_ns(), __ATOMIC_RELAXED);
			c->got += (size_t)res;
			if (c->in_place && c->part == 2 && c->got < c->want) {
				settle_pages(t, c);
				rc = continue_settled(t, c);
				if (rc == -ESRCH) {
					live--;
					continue;
				}
				if (rc) {
					chan_fail(t, c, "install failed: ", strerror(-rc));
					live--;
					continue;
				}
			} else if (c->in_place && c->part == 2) {
				settle_pages(t, c);
			}
			if (c->got < c->want) {
				queue_recv(t, &ring, c, (unsigned)ud);
				continue;
			}
			if (frame_step(t, c))
				queue_recv(t, &ring, c, (unsigned)ud);
			else
				live--;
		}
		io_uring_cq_advance(&ring, seen);
	}
	/* nothing is in flight once the ring is gone: give back any frame's pages */
	io_uring_queue_exit(&ring);
	for (i = 0; i < t->nchan; i++)
		release_frame(t, t->chan[i]);
	return NULL;
}

int rx_start(struct helper *h)
{
	unsigned i, n = PCH_MIN(PCH_MAX(h->o.rx_threads, 1u), h->o.channels);
	size_t cap = pages_frame_cap(h);
	int rc;

	if (n > HELPER_MAX_RX)
		n = HELPER_MAX_RX;
	/*
	 * A resumed session (docs/protocol.md 5.8) starts the threads again
	 * on new connections: buffers, eventfds and counters stay.
	 */
	if (!h->nrx) {
		for (i = 0; i < n; i++) {
			h->rx[i].h = h;
			h->rx[i].id = i;
			h->rx[i].wake_efd = eventfd(0, EFD_CLOEXEC);
			if (h->rx[i].wake_efd < 0)
				return -errno;
			pthread_mutex_init(&h->rx[i].st.hist_lock, NULL);
			pch_hist_init(&h->rx[i].st.service);
		}
		h->nrx = n;
	}
	for (i = 0; i < n; i++)
		h->rx[i].nchan = 0;
	for (i = 0; i < h->o.channels; i++) {
		struct rx_chan *c = &h->pages[i];
		struct rx_thread *t = &h->rx[i % n];

		/* freed by helper_free, whatever happens here */
		if (!c->offs) {
			c->offs = malloc(PCH_FRAME_MAX_PAGES * sizeof(uint64_t));
			c->mine = calloc(PCH_FRAME_MAX_PAGES, 1);
			c->pipe[0] = c->pipe[1] = -1;
			c->iov = calloc(RX_PIECE_IOV, sizeof(*c->iov));
			c->data = mmap(NULL, cap, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (c->data == MAP_FAILED)
				c->data = NULL;
			if (!c->offs || !c->data || !c->mine || !c->iov)
				return -ENOMEM;
		}
		/* a new connection: frames count from 0 again */
		if (c->pipe[0] >= 0) {
			/* it may hold bytes of the old connection's last frame */
			close(c->pipe[0]);
			close(c->pipe[1]);
			c->pipe[0] = c->pipe[1] = -1;
		}
		__atomic_store_n(&c->state, CHAN_IDLE, __ATOMIC_RELEASE);
		c->seq = 0;
		c->sync_epoch = 0;
		c->in_place = false;
		c->silent_reported = false;
		c->err[0] = '\0';
		t->chan[t->nchan++] = c;
	}
	for (i = 0; i < n; i++) {
		rc = pthread_create(&h->rx[i].tid, NULL, rx_main, &h->rx[i]);
		if (rc)
			return -rc;
		h->rx[i].started = true;
	}
	return 0;
}

void rx_join(struct helper *h)
{
	unsigned i;

	for (i = 0; i < h->nrx; i++)
		if (h->rx[i].started) {
			pthread_join(h->rx[i].tid, NULL);
			h->rx[i].started = false;
		}
}
