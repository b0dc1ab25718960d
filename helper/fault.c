// SPDX-License-Identifier: MIT
/*
 * fault.c - the fault thread: reads uffd events, serves what it can at once
 * (a page already present: wake; a page known zero: UFFDIO_ZEROPAGE), asks
 * the source for the rest on the URGENT channel and installs the answers.
 * It owns the uffd reads, the URGENT socket and the table of pages requested
 * and not yet installed, all driven by one io_uring.
 *
 * uffd events come either from an io_uring READ of the uffd (needs an
 * O_NONBLOCK uffd and a kernel whose uffd supports nowait reads, probed at
 * start) or from an io_uring POLL of the uffd followed by read(2).  With
 * memory events on, always the latter: the read runs under the write side
 * of the events lock, every REMOVE/UNMAP read is marked before it is
 * released, and the faults read with them are handled after, in order
 * (events.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <liburing.h>
#include <poll.h>
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
#include "pch/uffd-compat.h"

#define FAULT_TICK_MS 100
#define UFFD_MSGS 64
#define OUT_REQS0 64        /* initial room for queued requests (grows) */
#define SWEEP_INFLIGHT (8ull << 20) /* sweep bytes outstanding at once */
#define SWEEP_REQ_BYTES (256u << 10) /* ... per request (at least one page) */
#define SWEEP_ID_BIT (1ull << 63)
#define STALL_REPORTED (1ull << 63)
/*
 * Distinct faulting pages the URGENT lane asks for at once.  A VMM thread
 * blocks on one fault, so a real VMM stays far below; past it a fault is
 * not asked for (its page comes by bulk or the sweep, whose install wakes
 * it) and the fault table, the request table and the request queue stay
 * bounded whatever the VMM does.
 */
#define FAULT_PENDING_MAX 65536u

/* io_uring user_data tags */
enum { UD_UFFD = 1, UD_URGENT, UD_SEND, UD_SWEEP, UD_KICK };

/* stash value of a zero page waiting for its writer to give it up */
static uint8_t stash_zero;

/*
 * URGENT receive.  Answers are small and sent whole, so each RECV takes
 * whatever has arrived into one buffer and every complete frame in it is
 * handled at once: one io_uring round trip per answer, not one per frame
 * part.  A partial frame left at the end moves to the front (a few bytes).
 */
struct urg_rx {
	int fd;
	uint8_t *buf;     /* frames as they arrive: header, offsets, data */
	size_t cap, fill;
	bool hdr_checked; /* the frame at buf[0] has had its header checked */
	uint64_t seq;     /* next expected frame seq */
};

struct fstate {
	struct helper *h;
	struct fault_thread *ft;
	struct io_uring ring;
	bool uring_read;           /* else poll + read(2) */
	struct uffd_msg msgs[UFFD_MSGS];
	struct urg_rx urg;         /* URGENT receive stream */
	bool urg_dead;
	uint64_t urg_last_ns;      /* last bytes received on URGENT */
	struct pch_req *out, *sending; /* queued / being sent */
	unsigned nout, nsending, cap, scap;
	size_t sent;               /* bytes of sending[] already sent */
	bool send_inflight;
	uint64_t next_id;
	GHashTable *pending;       /* key (blk << 56 | page) -> first fault ns */
	/*
	 * Requests queued or sent, id -> struct asked, until every page of
	 * each is answered: an URGENT frame must answer one of them.  At most
	 * FAULT_PENDING_MAX + SWEEP_INFLIGHT / page size entries.
	 */
	GHashTable *asked;
	uint64_t unasked;          /* faults past FAULT_PENDING_MAX, not asked for */
	uint64_t sweep_buf;
	bool sweep_active;
	unsigned sweep_blk;
	uint64_t sweep_page;
	uint64_t sweep_inflight; /* bytes asked by the sweep, not yet answered */
	uint64_t kick_buf;
	/*
	 * Shared blocks: answers for pages an rx thread was still receiving
	 * into, key as pending -> a copy of the page (or &stash_zero), put in
	 * place once it gives the page up or finishes it.
	 */
	GHashTable *stash;
	/*
	 * Memory events on: messages read (events already marked), handled
	 * at the end of the loop round, in order; an install of this thread
	 * that sees EAGAIN reads more into it.
	 */
	struct uffd_msg *backlog;
	size_t nbacklog, backlog_cap;
	bool discards_new;         /* a REMOVE/UNMAP was marked: pending faults to look at */
	int drain_err;             /* a read under the events lock failed: -errno */
};

/* A request in flight and how many of its pages no answer brought yet. */
struct asked {
	struct pch_req r;
	uint32_t left;
};

static inline gpointer pkey(unsigned blk, uint64_t page)
{
	return GSIZE_TO_POINTER(((uint64_t)blk << 56) | page);
}

/* The block and the page of a key of pending or stash. */
static inline unsigned pkey_blk(uint64_t key)
{
	return (unsigned)(key >> 56);
}

static inline uint64_t pkey_page(uint64_t key)
{
	return key & ((1ull << 56) - 1);
}

static struct io_uring_sqe *get_sqe(struct fstate *f)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);

	if (!sqe) {
		io_uring_submit(&f->ring);
		sqe = io_uring_get_sqe(&f->ring);
	}
	return sqe;
}

static void arm_uffd(struct fstate *f)
{
	struct io_uring_sqe *sqe = get_sqe(f);

	if (f->uring_read)
		io_uring_prep_read(sqe, f->h->uffd, f->msgs, sizeof(f->msgs), 0);
	else
		io_uring_prep_poll_add(sqe, f->h->uffd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD_UFFD);
}

static void arm_urgent(struct fstate *f)
{
	struct urg_rx *u = &f->urg;
	struct io_uring_sqe *sqe = get_sqe(f);

	io_uring_prep_recv(sqe, u->fd, u->buf + u->fill, u->cap - u->fill, 0);
	io_uring_sqe_set_data64(sqe, UD_URGENT);
}

static void arm_kick(struct fstate *f)
{
	struct io_uring_sqe *sqe = get_sqe(f);

	io_uring_prep_read(sqe, f->ft->kick_efd, &f->kick_buf, sizeof(f->kick_buf), 0);
	io_uring_sqe_set_data64(sqe, UD_KICK);
}

static void arm_sweep(struct fstate *f)
{
	struct io_uring_sqe *sqe = get_sqe(f);

	io_uring_prep_read(sqe, f->ft->sweep_efd, &f->sweep_buf, sizeof(f->sweep_buf), 0);
	io_uring_sqe_set_data64(sqe, UD_SWEEP);
}

/* Send what is queued, if no send is in flight. */
static void flush_requests(struct fstate *f)
{
	struct io_uring_sqe *sqe;

	if (f->send_inflight || !f->nout || f->urg_dead)
		return;
	/*
	 * No send in flight, so sending[] is free: swap the buffers.  The
	 * kernel reads the new sending[] until the send completes; only out[]
	 * is ever grown.
	 */
	{
		struct pch_req *t = f->sending;
		unsigned tc = f->scap;

		f->sending = f->out;
		f->scap = f->cap;
		f->out = t;
		f->cap = tc;
	}
	f->nsending = f->nout;
	f->nout = 0;
	f->sent = 0;
	sqe = get_sqe(f);
	io_uring_prep_send(sqe, f->h->urgent_fd, f->sending, f->nsending * sizeof(struct pch_req),
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD_SEND);
	f->send_inflight = true;
}

static void queue_request(struct fstate *f, unsigned blk, uint64_t page, uint32_t count,
			  bool sweep)
{
	struct hblock *b = &f->h->blk[blk];

	if (f->nout == f->cap) {
		/* Never drop a request: grow the queue. */
		struct pch_req *a = realloc(f->out, 2 * f->cap * sizeof(*a));

		if (!a) {
			helper_error(f->h, "fault thread: out of memory queueing a request");
			return;
		}
		f->out = a;
		f->cap *= 2;
	}
	{
		struct asked *a = g_new(struct asked, 1);

		pch_req_build(&a->r, blk, page << b->d.page_shift, count,
			      (f->next_id++) | (sweep ? SWEEP_ID_BIT : 0));
		a->left = count;
		f->out[f->nout++] = a->r;
		g_hash_table_insert(f->asked, GSIZE_TO_POINTER(a->r.id), a);
	}
	PCH_PROBE(request_sent, b->host_addr + (page << b->d.page_shift), count, f->next_id - 1);
	STAT_ADD(&f->ft->st, requests, 1);
	if (sweep)
		STAT_ADD(&f->ft->st, requests_sweep, 1);
}

static void record_service(struct fstate *f, uint64_t t0)
{
	struct hstats *st = &f->ft->st;

	pthread_mutex_lock(&st->hist_lock);
	pch_hist_add(&st->service, pch_now_ns() - t0);
	pthread_mutex_unlock(&st->hist_lock);
}

/* A page that was requested is now in place: account its service time. */
static void settle(struct fstate *f, unsigned blk, uint64_t page)
{
	gpointer v;

	if (g_hash_table_steal_extended(f->pending, pkey(blk, page), NULL, &v))
		record_service(f, GPOINTER_TO_SIZE(v) & ~STALL_REPORTED);
}

/*
 * Shared block: put page in place from src (NULL: zeros), or hold a copy of
 * it until the rx thread writing the page gives it up.  0 when in place or
 * held, -errno on failure.
 */
static int put_or_stash(struct fstate *f, unsigned blk, uint64_t page, const uint8_t *src)
{
	struct hblock *b = &f->h->blk[blk];
	int rc = pages_put(f->h, &f->ft->st, blk, page, src, src ? PUT_URGENT : PUT_ZERO);

	if (rc != 1)
		return rc;
	if (!g_hash_table_contains(f->stash, pkey(blk, page))) {
		/* the receiver may be waiting for data that does not come: wake it */
		rx_kick_all(f->h);
		g_hash_table_insert(f->stash, pkey(blk, page),
				    src ? g_memdup2(src, b->d.page_size) : &stash_zero);
		STAT_ADD(&f->ft->st, stashed, 1);
	}
	return 0;
}

static void urgent_fail(struct fstate *f, const char *what);
static void urgent_lost(struct fstate *f, const char *what);

static void stash_free(gpointer v)
{
	if (v != &stash_zero)
		g_free(v);
}

/* Put held pages in place whose writer has finished or given them up. */
static void stash_retry(struct fstate *f)
{
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, f->stash);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		uint64_t key = GPOINTER_TO_SIZE(k);
		unsigned blk = pkey_blk(key);
		uint64_t page = pkey_page(key);
		int rc = pages_put(f->h, &f->ft->st, blk, page, v == &stash_zero ? NULL : v,
				   v == &stash_zero ? PUT_ZERO : PUT_URGENT);

		if (rc == 1)
			continue;
		g_hash_table_iter_remove(&it);
		if (!rc) {
			settle(f, blk, page);
			continue;
		}
		if (rc != -ESRCH) {
			/* as for an answer that cannot be installed: fail loudly */
			pch_err("block %s page %llu: putting a held page in place: %s",
				f->h->blk[blk].d.name, (unsigned long long)page, strerror(-rc));
			urgent_fail(f, "install failed");
		}
		return;
	}
}

/*
 * Faults whose page another path put in place (an rx thread finishing or
 * rescuing it) are served: account them now, not when their answer comes.
 * The table holds the faults in flight, a few per vCPU.
 */
static void settle_present(struct fstate *f)
{
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, f->pending);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		uint64_t key = GPOINTER_TO_SIZE(k);

		unsigned blk = pkey_blk(key);
		uint64_t page = pkey_page(key);
		struct hblock *b = &f->h->blk[blk];

		if (g_hash_table_contains(f->stash, k))
			continue;
		/* received whole, not mapped yet (its piece is not over): map it */
		if (!pch_bitmap_test(&b->present, page) && hblock_shared(b) &&
		    (pages_own(b, page) & OWN_MASK) == OWN_FULL)
			pages_continue(f->h, &f->ft->st, blk, page, 1, PUT_ZERO);
		if (!pch_bitmap_test(&b->present, page))
			continue;
		record_service(f, GPOINTER_TO_SIZE(v) & ~STALL_REPORTED);
		g_hash_table_iter_remove(&it);
	}
}

static void handle_fault(struct fstate *f, const struct uffd_msg *m, uint64_t now)
{
	struct helper *h = f->h;
	struct hstats *st = &f->ft->st;
	unsigned blk;
	uint64_t page;
	int rc;

	PCH_PROBE(fault_read, m->arg.pagefault.address, m->arg.pagefault.flags, m->arg.pagefault.feat.ptid);
	STAT_ADD(st, faults, 1);
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
		STAT_ADD(st, faults_minor, 1);
	if (pages_lookup(h, m->arg.pagefault.address, &blk, &page)) {
		/*
		 * The VMM registered memory it did not announce: nobody will
		 * send that page.  Wake the thread rather than leave it blocked
		 * (it faults again; each fault is counted) and say so.
		 */
		struct uffdio_range r = {
			.start = m->arg.pagefault.address & ~4095ull, .len = 4096 };

		if (!st->faults_outside)
			helper_error(h, "fault at 0x%llx is outside every RAM block the VMM announced",
				     (unsigned long long)m->arg.pagefault.address);
		STAT_ADD(st, faults_outside, 1);
		ioctl(h->uffd, UFFDIO_WAKE, &r);
		return;
	}
	if (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE)) {
		/*
		 * The ranges are unregistered.  UNREGISTER woke its waiters, but a
		 * fault queued while it ran can miss that wake-up (a lost-wakeup
		 * race seen on 6.18): wake it; its retry needs no uffd.
		 */
		STAT_ADD(st, faults_late, 1);
		pages_wake(h, blk, page);
		return;
	}
	if (events_discarded(&h->blk[blk], page)) {
		/*
		 * Discarded by the VMM (or a fault read before the REMOVE that
		 * discards it: either order reads zeros): never old content.
		 */
		STAT_ADD(st, faults_discarded, 1);
		rc = pages_zeropage(h, st, blk, page);
		if (rc && rc != -ESRCH)
			helper_error(h, "block %s page %llu: zero page for a discarded page: %s",
				     h->blk[blk].d.name, (unsigned long long)page, strerror(-rc));
		if (!rc) {
			if (g_hash_table_contains(f->pending, pkey(blk, page)))
				settle(f, blk, page);
			else
				record_service(f, now);
		}
		return;
	}
	if (pch_bitmap_test(&h->blk[blk].present, page)) {
		/* Installed between the fault and now: its waker may have missed it. */
		STAT_ADD(st, faults_present, 1);
		/*
		 * A MINOR fault on a page we mapped: the VMM's page table lost it
		 * (swapped out, reclaimed) while the page cache kept it.  Waking
		 * would fault again forever: map it again (EEXIST: just woken).
		 */
		if (hblock_shared(&h->blk[blk]) &&
		    m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
			rc = pages_continue(h, st, blk, page, 1, PUT_ZERO);
			if (rc && rc != -ESRCH)
				helper_error(h, "block %s page %llu: UFFDIO_CONTINUE again: %s",
					     h->blk[blk].d.name, (unsigned long long)page,
					     strerror(-rc));
			return;
		}
		pages_wake(h, blk, page);
		return;
	}
	if (pch_bitmap_test(&h->blk[blk].zero, page)) {
		/*
		 * Known zero but never placed: serve it here and now.  Marking a
		 * zero page received without placing it, and leaving its fault
		 * unserved, is the hang QEMU's postcopy tests had.
		 */
		if (g_hash_table_contains(f->pending, pkey(blk, page))) {
			STAT_ADD(st, faults_dup, 1);
			return;
		}
		STAT_ADD(st, faults_zero, 1);
		rc = pages_zeropage(h, st, blk, page);
		if (!rc) {
			record_service(f, now);
			return;
		}
		if (rc == 1) {
			/* being written by bulk (a source that sent it as data too) */
			g_hash_table_insert(f->pending, pkey(blk, page), GSIZE_TO_POINTER(now));
			rc = put_or_stash(f, blk, page, NULL);
			if (!rc && !g_hash_table_contains(f->stash, pkey(blk, page)))
				settle(f, blk, page);
		}
		if (rc && rc != -ESRCH)
			helper_error(h, "block %s page %llu: zero page: %s", h->blk[blk].d.name,
				     (unsigned long long)page, strerror(-rc));
		return;
	}
	if (g_hash_table_contains(f->pending, pkey(blk, page))) {
		STAT_ADD(st, faults_dup, 1);
		return;
	}
	if (g_hash_table_size(f->pending) >= FAULT_PENDING_MAX) {
		if (!f->unasked++)
			pch_warn("fault thread: %u faults pending (FAULT_PENDING_MAX): block %s page "
				 "%llu and later ones are not asked for; bulk or the sweep brings "
				 "them", g_hash_table_size(f->pending), h->blk[blk].d.name,
				 (unsigned long long)page);
		return;
	}
	if (hblock_shared(&h->blk[blk])) {
		struct hblock *b = &h->blk[blk];

		if ((pages_own(b, page) & OWN_MASK) == OWN_FULL) {
			/* every byte is in (bulk is about to map it): map it now */
			rc = pages_continue(h, st, blk, page, 1, PUT_URGENT);
			if (!rc) {
				record_service(f, now);
				return;
			}
			if (rc == -ESRCH)
				return;
			/* not mapped: ask the source, whose answer is put in another way */
			helper_error(h, "block %s page %llu: UFFDIO_CONTINUE: %s", b->d.name,
				     (unsigned long long)page, strerror(-rc));
		}
		/* bulk must leave this page to the URGENT answer, or give it up */
		__atomic_fetch_or(&b->own[page], OWN_STEAL, __ATOMIC_ACQ_REL);
	}
	g_hash_table_insert(f->pending, pkey(blk, page), GSIZE_TO_POINTER(now));
	queue_request(f, blk, page, 1, false);
	pch_dbg(PCH_DBG_UFFD, "fault block %s page %llu: requested", h->blk[blk].d.name,
		(unsigned long long)page);
}

/* One uffd message: a fault, or an event (memory events: marked when read). */
static void handle_msg(struct fstate *f, const struct uffd_msg *m, uint64_t now)
{
	if (m->event == UFFD_EVENT_PAGEFAULT) {
		handle_fault(f, m, now);
		return;
	}
	STAT_ADD(&f->ft->st, events_other, 1);
	pch_dbg(PCH_DBG_UFFD, "uffd event 0x%x ignored", m->event);
}

static void handle_msgs(struct fstate *f, const struct uffd_msg *m, size_t n)
{
	uint64_t now = pch_now_ns();
	size_t i;

	STAT_ADD(&f->ft->st, uffd_reads, 1);
	__atomic_store_n(&f->h->last_fault_ns, now, __ATOMIC_RELEASE);
	for (i = 0; i < n; i++)
		handle_msg(f, &m[i], now);
}

/*
 * Memory events on: read everything the uffd holds under the write side of
 * the events lock, mark each REMOVE/UNMAP as it is read, and keep the
 * faults (and anything else) in the backlog for run_backlog.  No install
 * can run in between, so none lands on a page discarded and not yet marked.
 * 0 or -errno.
 */
static int drain_uffd(struct fstate *f, int *marked)
{
	struct helper *h = f->h;
	struct hstats *st = &f->ft->st;
	int rc = 0;

	*marked = 0;
	pthread_rwlock_wrlock(&h->ev_lock);
	for (;;) {
		size_t i, cnt;
		ssize_t n;

		if (f->backlog_cap - f->nbacklog < UFFD_MSGS) {
			size_t cap = PCH_MAX(f->backlog_cap * 2, (size_t)UFFD_MSGS * 2);
			struct uffd_msg *a = realloc(f->backlog, cap * sizeof(*a));

			if (!a) {
				rc = -ENOMEM;
				break;
			}
			f->backlog = a;
			f->backlog_cap = cap;
		}
		n = read(h->uffd, f->msgs, sizeof(f->msgs));
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				rc = -errno;
			break;
		}
		if (n == 0 || n % sizeof(struct uffd_msg)) {
			rc = -EBADMSG;
			break;
		}
		cnt = (size_t)n / sizeof(struct uffd_msg);
		STAT_ADD(st, uffd_reads, 1);
		for (i = 0; i < cnt; i++) {
			if (events_mark(h, st, &f->msgs[i])) {
				f->discards_new = true;
				++*marked;
			} else
				f->backlog[f->nbacklog++] = f->msgs[i];
		}
		if (cnt < UFFD_MSGS)
			break;
	}
	pthread_rwlock_unlock(&h->ev_lock);
	return rc;
}

/* events_eagain on this thread: read the events its own install waits for; events marked. */
static int drain_cb(void *arg)
{
	struct fstate *f = arg;
	int marked, rc = drain_uffd(f, &marked);

	if (rc && !f->drain_err)
		f->drain_err = rc;
	return marked;
}

/*
 * Faults waiting for pages that are now discarded or unmapped: a zero page
 * wakes the thread (it reads zeros, as it would after the discard); on an
 * unmapped page the wake-up finds it gone.
 */
static void settle_discarded(struct fstate *f)
{
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, f->pending);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		uint64_t key = GPOINTER_TO_SIZE(k);
		unsigned blk = pkey_blk(key);
		uint64_t page = pkey_page(key);
		int rc;

		if (!events_discarded(&f->h->blk[blk], page))
			continue;
		rc = pages_zeropage(f->h, &f->ft->st, blk, page);
		if (rc && rc != -ESRCH)
			helper_error(f->h, "block %s page %llu: zero page for a discarded page: %s",
				     f->h->blk[blk].d.name, (unsigned long long)page,
				     strerror(-rc));
		record_service(f, GPOINTER_TO_SIZE(v) & ~STALL_REPORTED);
		g_hash_table_iter_remove(&it);
	}
}

/*
 * Handle what drain_uffd kept, in the order read, after the pending faults
 * whose pages were discarded.  Handling may read more (an install seeing
 * EAGAIN): that is handled here too, in order.
 */
static void run_backlog(struct fstate *f)
{
	uint64_t now = pch_now_ns();
	size_t i = 0;

	for (;;) {
		if (f->discards_new) {
			f->discards_new = false;
			settle_discarded(f);
			continue;
		}
		if (i == f->nbacklog)
			break;
		/* by value: handling it may grow (move) the backlog */
		{
			struct uffd_msg m = f->backlog[i++];

			handle_msg(f, &m, now);
		}
	}
	f->nbacklog = 0;
}

/* Poll mode: the uffd is readable; read until it is empty. */
static int read_uffd(struct fstate *f)
{
	if (f->h->events) {
		int marked, rc = drain_uffd(f, &marked);

		run_backlog(f);
		return rc;
	}
	for (;;) {
		ssize_t n = read(f->h->uffd, f->msgs, sizeof(f->msgs));

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -errno;
		}
		if (n == 0 || n % sizeof(struct uffd_msg))
			return -EBADMSG;
		handle_msgs(f, f->msgs, (size_t)n / sizeof(struct uffd_msg));
		if ((size_t)n < sizeof(f->msgs))
			return 0;
	}
}

/* The source broke the protocol on URGENT: faults cannot be served. */
static void urgent_fail(struct fstate *f, const char *what)
{
	helper_error(f->h, "URGENT channel: %s; faults can no longer be served", what);
	f->urg_dead = true;
	shutdown(f->urg.fd, SHUT_RDWR);
	__atomic_store_n(&f->h->urgent_dead, true, __ATOMIC_RELEASE);
	helper_kick(f->h);
}

/*
 * URGENT broke (closed, reset, silent): the connection is lost, not the
 * session.  Main pauses the session and reconnects (docs/protocol.md 5.8).
 */
static void urgent_lost(struct fstate *f, const char *what)
{
	if (f->urg_dead)
		return;
	pch_warn("URGENT channel: %s", what);
	f->urg_dead = true;
	shutdown(f->urg.fd, SHUT_RDWR);
	snprintf(f->h->urgent_lost_why, sizeof(f->h->urgent_lost_why), "URGENT: %s", what);
	__atomic_store_n(&f->h->urgent_lost, true, __ATOMIC_RELEASE);
	helper_kick(f->h);
}

/* Handle one complete, checked URGENT frame.  false when the channel is dead. */
static bool urgent_frame(struct fstate *f, const struct pch_frame_hdr *hd, const uint64_t *offs,
			 const uint8_t *data)
{
	struct helper *h = f->h;
	struct hstats *st = &f->ft->st;
	struct hblock *b = &h->blk[hd->block];
	uint32_t i;
	int rc;

	PCH_PROBE(page_arrived, hd->block, offs[0], hd->count, hd->arg, hd->type, 1);
	/* every page is in place and the ranges are unregistered: nothing to do */
	if (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
		return true;
	if (hd->type == PCH_FRAME_ZERO) {
		/* Zero pages someone waits for are placed now; the rest just marked. */
		for (i = 0; i < hd->count; i++) {
			uint64_t page = offs[i] >> b->d.page_shift;

			pages_mark_zero(h, st, hd->block, &offs[i], 1);
			if (!g_hash_table_contains(f->pending, pkey(hd->block, page)))
				continue;
			rc = pages_zeropage(h, st, hd->block, page);
			if (rc == 1)
				rc = put_or_stash(f, hd->block, page, NULL);
			if (!rc && !g_hash_table_contains(f->stash, pkey(hd->block, page)))
				settle(f, hd->block, page);
			if (rc == -ESRCH)
				return false; /* the VMM is gone; main stops everything */
			if (rc) {
				urgent_fail(f, "installing a zero page failed");
				return false;
			}
		}
	} else if (hblock_shared(b)) {
		/* written through our mapping of the memfd, then CONTINUEd */
		for (i = 0; i < hd->count; i++) {
			uint64_t page = offs[i] >> b->d.page_shift;

			rc = put_or_stash(f, hd->block, page, data + ((size_t)i << b->d.page_shift));
			if (rc == -ESRCH)
				return false;
			if (rc) {
				urgent_fail(f, "install failed");
				return false;
			}
			if (!g_hash_table_contains(f->stash, pkey(hd->block, page)))
				settle(f, hd->block, page);
		}
		STAT_ADD(st, bytes, (uint64_t)hd->count << b->d.page_shift);
	} else {
		rc = pages_install(h, st, hd->block, offs, hd->count, data, true);
		if (rc == -ESRCH)
			return false;
		if (rc) {
			urgent_fail(f, "install failed");
			return false;
		}
		STAT_ADD(st, bytes, (uint64_t)hd->count << b->d.page_shift);
		/* a page dropped as discarded is settled by settle_discarded, with zeros */
		for (i = 0; i < hd->count; i++)
			if (pch_bitmap_test(&b->present, offs[i] >> b->d.page_shift))
				settle(f, hd->block, offs[i] >> b->d.page_shift);
	}
	STAT_ADD(st, frames, 1);
	/* a request may be answered by a ZERO and a PAGES frame: count pages */
	if (hd->arg & SWEEP_ID_BIT)
		f->sweep_inflight -= PCH_MIN(f->sweep_inflight,
					     (uint64_t)hd->count << b->d.page_shift);
	pages_kick_if_all_in(h);
	return true;
}

/*
 * Does a checked PAGES or ZERO frame answer a request in flight?  Then
 * count its pages against it (forgotten once all are answered); if not,
 * the source is cut off: nothing of it is installed.  false when not.
 */
static bool urgent_answers(struct fstate *f, const struct pch_frame_hdr *hd, const uint64_t *offs)
{
	struct asked *a = g_hash_table_lookup(f->asked, GSIZE_TO_POINTER(hd->arg));
	const char *why;
	char what[160];

	if (!a) {
		snprintf(what, sizeof(what), "answer for request %llu, which the helper never sent "
			 "or had answered already", (unsigned long long)hd->arg);
		urgent_fail(f, what);
		return false;
	}
	if (pch_frame_check_answer(hd, offs, &a->r, a->left, &f->h->vtab, &why)) {
		snprintf(what, sizeof(what), "request %llu: %s", (unsigned long long)hd->arg, why);
		urgent_fail(f, what);
		return false;
	}
	a->left -= hd->count;
	if (!a->left)
		g_hash_table_remove(f->asked, GSIZE_TO_POINTER(hd->arg));
	return true;
}

/*
 * Handle every complete frame in the URGENT buffer, checking each header as
 * soon as it is in and its offsets before anything is installed.  false
 * when the channel is dead.
 */
static bool urgent_consume(struct fstate *f)
{
	struct helper *h = f->h;
	struct urg_rx *u = &f->urg;
	size_t pos = 0; /* frames before pos are handled */
	bool ok = true;

	while (u->fill - pos >= sizeof(struct pch_frame_hdr)) {
		const struct pch_frame_hdr *hd = (const void *)(u->buf + pos);
		const uint64_t *offs = (const void *)(u->buf + pos + sizeof(*hd));
		const char *why;
		size_t olen, need;
		int rc;

		if (!u->hdr_checked) {
			rc = pch_frame_check_hdr(hd, &h->vtab, u->seq, true, &why);
			if (!rc && !(hd->flags & PCH_FRAME_F_URGENT))
				rc = -EBADMSG, why = "frame: URGENT channel frame without URGENT flag";
			if (!rc && hd->type != PCH_FRAME_PAGES && hd->type != PCH_FRAME_ZERO &&
			    hd->type != PCH_FRAME_KEEPALIVE)
				rc = -EBADMSG, why = "frame: type not allowed on URGENT";
			if (rc) {
				urgent_fail(f, why);
				return false;
			}
			u->seq++;
			if (hd->type == PCH_FRAME_KEEPALIVE) {
				pos += sizeof(*hd); /* the source is there; nothing else */
				continue;
			}
			u->hdr_checked = true;
		}
		olen = pch_frame_offsets_len(hd);
		need = sizeof(*hd) + olen +
		       (hd->type == PCH_FRAME_PAGES ? pch_frame_data_len(hd, &h->vtab) : 0);
		if (u->fill - pos < need)
			break; /* the checked header bounds need by the buffer's size */
		rc = pch_frame_check_offsets(hd, offs, &h->vtab, &why);
		if (rc) {
			urgent_fail(f, why);
			return false;
		}
		if (!urgent_answers(f, hd, offs))
			return false;
		if (!urgent_frame(f, hd, offs, u->buf + pos + sizeof(*hd) + olen)) {
			ok = false;
			break;
		}
		pos += need;
		u->hdr_checked = false;
	}
	/* keep the partial frame at the front, moved once per receive */
	if (pos) {
		memmove(u->buf, u->buf + pos, u->fill - pos);
		u->fill -= pos;
	}
	return ok;
}

/* Request runs of pages nobody delivered, a few requests at a time. */
static void sweep_more(struct fstate *f)
{
	struct helper *h = f->h;

	while (f->sweep_active && f->sweep_inflight < SWEEP_INFLIGHT) {
		struct hblock *b;
		uint64_t p, n = 0, max;

		if (f->sweep_blk >= h->nblk) {
			f->sweep_active = false;
			break;
		}
		b = &h->blk[f->sweep_blk];
		p = pch_bitmap_next_clear(&b->inplace, f->sweep_page);
		if (p >= b->d.npages) {
			f->sweep_blk++;
			f->sweep_page = 0;
			continue;
		}
		max = PCH_MIN(PCH_MAX(SWEEP_REQ_BYTES >> b->d.page_shift, 1u), PCH_REQ_MAX_PAGES);
		while (p + n < b->d.npages && n < max && !pch_bitmap_test(&b->inplace, p + n))
			n++;
		queue_request(f, f->sweep_blk, p, (uint32_t)n, true);
		f->sweep_inflight += n << b->d.page_shift;
		f->sweep_page = p + n;
	}
}

/* "streaming 3 ms, ended, dead": each PAGES channel's state and silence. */
static void channel_states(struct helper *h, uint64_t now, char *buf, size_t len)
{
	static const char *const names[] = { "idle", "streaming", "ended", "dead" };
	size_t used = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < h->o.channels && used + 1 < len; i++) {
		const struct rx_chan *c = &h->pages[i];
		int st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
		uint64_t last = __atomic_load_n(&c->last_rx_ns, __ATOMIC_RELAXED);
		int n;

		if (st == CHAN_STREAMING && last && now > last)
			n = snprintf(buf + used, len - used, "%s%u: streaming, silent %llu ms",
				     i ? "; " : "", i, (unsigned long long)((now - last) / 1000000));
		else
			n = snprintf(buf + used, len - used, "%s%u: %s", i ? "; " : "", i,
				     names[st & 3]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* "held answer, bulk writing it, fault waits" ... for a stall report. */
static const char *page_state(struct fstate *f, uint64_t key)
{
	const struct hblock *b = &f->h->blk[pkey_blk(key)];
	uint64_t page = pkey_page(key);
	static const char *const own[] = { "no writer", "bulk receiving it", "being put in place",
					   "received, not mapped" };

	if (events_discarded(b, page))
		return "discarded by the VMM (a zero page is due)";
	if (pch_bitmap_test(&b->present, page))
		return "in place (its waker may be late)";
	if (g_hash_table_contains(f->stash, GSIZE_TO_POINTER(key)))
		return "answer held, waiting for the bulk receiver to give it up";
	if (hblock_shared(b))
		return own[pages_own(b, page) & OWN_MASK];
	return pch_bitmap_test(&b->zero, page) ? "known zero" : "missing";
}

/*
 * Report, once each, faults pending longer than --stall-ms (default 1 s):
 * the page, its state, the URGENT lane and every PAGES channel, so a hang
 * says where it hangs.
 */
static void check_stalls(struct fstate *f)
{
	struct helper *h = f->h;
	uint64_t now = pch_now_ns(), limit = (uint64_t)h->o.stall_ms * 1000000ull;
	char chans[512] = "";
	GHashTableIter it;
	gpointer k, v;

	if (!h->o.stall_ms)
		return;
	g_hash_table_iter_init(&it, f->pending);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		uint64_t t0 = GPOINTER_TO_SIZE(v);
		uint64_t key = GPOINTER_TO_SIZE(k);

		if (t0 & STALL_REPORTED || now - t0 < limit)
			continue;
		if (!chans[0])
			channel_states(h, now, chans, sizeof(chans));
		pch_warn("stall: block %s page %llu: fault pending for %llu ms, requested, "
			 "no answer yet; page: %s; URGENT %s, %u requests queued, %u in flight; "
			 "PAGES %s", h->blk[pkey_blk(key)].d.name, (unsigned long long)pkey_page(key),
			 (unsigned long long)((now - t0) / 1000000), page_state(f, key),
			 f->urg_dead ? "dead" : "up", f->nout, g_hash_table_size(f->asked), chans);
		g_hash_table_iter_replace(&it, GSIZE_TO_POINTER(t0 | STALL_REPORTED));
	}
}

/*
 * The source sends a keep-alive on URGENT every PCH_KEEPALIVE_MS it has
 * nothing else to send: silence past --keepalive-timeout-ms is a lost
 * connection (a cut cable sends no reset).
 */
static void check_urgent_silence(struct fstate *f)
{
	struct helper *h = f->h;
	uint64_t quiet = pch_now_ns() - f->urg_last_ns;
	char what[96];

	if (f->urg_dead || !h->o.keepalive_ms || __atomic_load_n(&h->complete, __ATOMIC_ACQUIRE) ||
	    quiet < (uint64_t)h->o.keepalive_ms * 1000000ull)
		return;
	snprintf(what, sizeof(what), "nothing received for %llu ms, not even a keep-alive",
		 (unsigned long long)(quiet / 1000000));
	urgent_lost(f, what);
}

/*
 * Can io_uring wait for uffd messages?  It needs an O_NONBLOCK uffd, and a
 * kernel whose uffd reads support nowait (else the READ fails at once with
 * -EAGAIN instead of waiting).  The probe READ stays queued when it works.
 */
static bool probe_uring_read(struct fstate *f)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000000ll };
	struct io_uring_probe *pr = io_uring_get_probe_ring(&f->ring);
	struct io_uring_cqe *cqe;
	bool ok;
	int fl = fcntl(f->h->uffd, F_GETFL), rc;

	ok = pr && io_uring_opcode_supported(pr, IORING_OP_READ) && fl >= 0 && (fl & O_NONBLOCK);
	if (pr)
		io_uring_free_probe(pr);
	if (!ok)
		return false;
	f->uring_read = true;
	arm_uffd(f);
	rc = io_uring_submit_and_wait_timeout(&f->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME)
		return false;
	if (io_uring_peek_cqe(&f->ring, &cqe))
		return true; /* still waiting, as it should */
	if (cqe->res > 0 && cqe->res % (int)sizeof(struct uffd_msg) == 0) {
		/* a fault was already queued: serve it, the path works */
		handle_msgs(f, f->msgs, (size_t)cqe->res / sizeof(struct uffd_msg));
		io_uring_cqe_seen(&f->ring, cqe);
		arm_uffd(f);
		return true;
	}
	io_uring_cqe_seen(&f->ring, cqe);
	return false;
}

static void *fault_main(void *arg)
{
	struct fault_thread *ft = arg;
	struct helper *h = ft->h;
	struct fstate *f;
	uint64_t last_tick = 0;
	int rc;

	pch_thread_name("fault");
	/*
	 * Faults must not wait for a CPU behind bulk work or spinning vCPUs:
	 * measured on 2 cores, 1 GiB random with 2 vCPUs, fault latency p99
	 * 459-508 us at nice -10 against 590-852 us at nice 0 (4 runs each).
	 */
	if (pch_thread_nice(-10))
		pch_info("fault thread: cannot raise its priority (needs CAP_SYS_NICE)");
	f = calloc(1, sizeof(*f));
	if (!f) {
		helper_error(h, "fault thread: out of memory");
		return NULL;
	}
	f->h = h;
	f->ft = ft;
	f->pending = g_hash_table_new(g_direct_hash, g_direct_equal);
	f->asked = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
	f->stash = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, stash_free);
	f->cap = f->scap = OUT_REQS0;
	f->out = malloc(f->cap * sizeof(*f->out));
	f->sending = malloc(f->cap * sizeof(*f->sending));
	f->urg.fd = h->urgent_fd;
	f->urg_last_ns = pch_now_ns();
	/* room for the largest frame a checked header allows */
	f->urg.cap = sizeof(struct pch_frame_hdr) + PCH_FRAME_MAX_PAGES * sizeof(uint64_t) +
		     pages_frame_cap(h);
	f->urg.buf = mmap(NULL, f->urg.cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	if (f->urg.buf == MAP_FAILED || !f->out || !f->sending) {
		helper_error(h, "fault thread: out of memory");
		goto out;
	}
	rc = io_uring_queue_init(64, &f->ring, 0);
	if (rc) {
		helper_error(h, "fault thread: io_uring_queue_init: %s", strerror(-rc));
		goto out;
	}

	if (h->events) {
		/* events are marked under the events lock: read(2), never a queued READ */
		f->uring_read = false;
		h->io_path = "io_uring-poll+read";
		events_set_drain(drain_cb, f);
		arm_uffd(f);
	} else if (!strcmp(h->o.uffd_read, "uring") && probe_uring_read(f)) {
		h->io_path = "io_uring-read";
	} else {
		if (!strcmp(h->o.uffd_read, "uring"))
			pch_info("io_uring cannot wait on this uffd (needs O_NONBLOCK and nowait "
				 "uffd reads); reading it with poll + read(2)");
		f->uring_read = false;
		h->io_path = "io_uring-poll+read";
		arm_uffd(f);
	}
	pch_info("uffd events read by %s", h->io_path);
	arm_urgent(f);
	arm_sweep(f);
	arm_kick(f);

	while (!helper_stopping(h)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = FAULT_TICK_MS * 1000000ll };
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		flush_requests(f);
		__atomic_store_n(&h->faults_waiting, g_hash_table_size(f->pending), __ATOMIC_RELEASE);
		rc = io_uring_submit_and_wait_timeout(&f->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR) {
			helper_error(h, "fault thread: io_uring wait: %s", strerror(-rc));
			break;
		}
		io_uring_for_each_cqe(&f->ring, head, cqe) {
			int res = cqe->res;

			seen++;
			switch (io_uring_cqe_get_data64(cqe)) {
			case UD_UFFD:
				if (f->uring_read) {
					if (res > 0 && res % (int)sizeof(struct uffd_msg) == 0)
						handle_msgs(f, f->msgs,
							    (size_t)res / sizeof(struct uffd_msg));
					else if (res != -EAGAIN && res != -EINTR) {
						helper_error(h, "uffd read: %s",
							     res < 0 ? strerror(-res) : "short message");
						goto stop;
					}
				} else if (res < 0 || res & (POLLERR | POLLHUP | POLLNVAL)) {
					helper_error(h, "uffd poll: %s",
						     res < 0 ? strerror(-res) : "error or hang-up");
					goto stop;
				} else if ((rc = read_uffd(f)) < 0) {
					helper_error(h, "uffd read: %s", strerror(-rc));
					goto stop;
				}
				arm_uffd(f);
				break;
			case UD_URGENT:
				if (f->urg_dead)
					break;
				if (res <= 0) {
					if (res == -EINTR || res == -EAGAIN) {
						arm_urgent(f);
						break;
					}
					/* after COMPLETE the source closes: not an error */
					if (!helper_stopping(h) &&
					    !__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE))
						urgent_lost(f, res == 0 ? "connection closed" :
									  strerror(-res));
					else
						f->urg_dead = true;
					break;
				}
				f->urg_last_ns = pch_now_ns();
				f->urg.fill += (size_t)res;
				if (urgent_consume(f))
					arm_urgent(f);
				break;
			case UD_SEND:
				f->send_inflight = false;
				if (res < 0) {
					if (!helper_stopping(h))
						urgent_lost(f, strerror(-res));
					break;
				}
				f->sent += (size_t)res;
				if (f->sent < f->nsending * sizeof(struct pch_req)) {
					/* short send: push the rest */
					struct io_uring_sqe *sqe = get_sqe(f);

					io_uring_prep_send(sqe, h->urgent_fd,
							   (uint8_t *)f->sending + f->sent,
							   f->nsending * sizeof(struct pch_req) - f->sent,
							   MSG_NOSIGNAL);
					io_uring_sqe_set_data64(sqe, UD_SEND);
					f->send_inflight = true;
				}
				break;
			case UD_KICK:
				stash_retry(f);
				settle_present(f);
				arm_kick(f);
				break;
			case UD_SWEEP:
				if (res > 0 && !f->sweep_active) {
					f->sweep_active = true;
					f->sweep_blk = 0;
					f->sweep_page = 0;
				}
				arm_sweep(f);
				break;
			}
		}
		io_uring_cq_advance(&f->ring, seen);
		/* faults read by an install of ours that saw EAGAIN */
		if (h->events)
			run_backlog(f);
		if (f->drain_err) {
			helper_error(h, "uffd read: %s", strerror(-f->drain_err));
			break;
		}
		sweep_more(f);
		if (pch_now_ns() - last_tick > FAULT_TICK_MS * 1000000ull) {
			last_tick = pch_now_ns();
			stash_retry(f);
			settle_present(f);
			check_stalls(f);
			check_urgent_silence(f);
		}
	}
stop:
	io_uring_queue_exit(&f->ring);
out:
	if (!helper_stopping(h)) {
		__atomic_store_n(&h->fault_exited, true, __ATOMIC_RELEASE);
		helper_kick(h);
	}
	if (f->pending)
		g_hash_table_destroy(f->pending);
	if (f->asked)
		g_hash_table_destroy(f->asked);
	if (f->stash)
		g_hash_table_destroy(f->stash);
	free(f->out);
	free(f->sending);
	free(f->backlog);
	if (f->urg.buf && f->urg.buf != MAP_FAILED)
		munmap(f->urg.buf, f->urg.cap);
	free(f);
	return NULL;
}

int fault_prepare(struct helper *h)
{
	/* a resumed session starts the thread again: keep its counters */
	if (!h->ft.h) {
		h->ft.h = h;
		pthread_mutex_init(&h->ft.st.hist_lock, NULL);
		pch_hist_init(&h->ft.st.service);
		h->ft.sweep_efd = eventfd(0, EFD_CLOEXEC);
		if (h->ft.sweep_efd < 0)
			return -errno;
		h->ft.kick_efd = eventfd(0, EFD_CLOEXEC);
		if (h->ft.kick_efd < 0)
			return -errno;
	} else {
		struct pollfd pfd = { .fd = h->ft.sweep_efd, .events = POLLIN };
		uint64_t v;

		/* a sweep asked of the old thread: the new session decides anew */
		if (poll(&pfd, 1, 0) == 1 && read(h->ft.sweep_efd, &v, sizeof(v)) < 0)
			pch_warn("fault thread: sweep eventfd: %s", strerror(errno));
	}
	return 0;
}

int fault_start(struct helper *h)
{
	int rc;

	rc = pthread_create(&h->ft.tid, NULL, fault_main, &h->ft);
	if (rc)
		return -rc;
	h->ft.started = true;
	return 0;
}

void fault_join(struct helper *h)
{
	if (h->ft.started) {
		pthread_join(h->ft.tid, NULL);
		h->ft.started = false;
	}
}

void fault_sweep(struct helper *h)
{
	uint64_t one = 1;

	if (write(h->ft.sweep_efd, &one, sizeof(one)) < 0)
		pch_warn("fault thread: cannot signal a sweep: %s", strerror(errno));
}

void fault_kick(struct helper *h)
{
	uint64_t one = 1;

	if (write(h->ft.kick_efd, &one, sizeof(one)) < 0)
		pch_warn("fault thread: cannot kick it: %s", strerror(errno));
}
