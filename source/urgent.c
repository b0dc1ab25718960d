// SPDX-License-Identifier: MIT
/*
 * urgent.c - the urgent thread: answers the helper's page requests on the
 * URGENT channel, ahead of bulk.  It raises itself to nice -10 while the
 * bulk senders run at nice +5, so a faulting vCPU never waits for a CPU
 * behind bulk work, and it never waits behind bulk data: URGENT is its own
 * connection.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "net.h"
#include "util.h"
#include "source_i.h"

/* Once a request has started arriving, the rest must follow within this. */
#define SRC_REQ_READ_MS 30000

/*
 * Wait for the next request; 1 when one is readable, 0 when stopping.
 * There is no deadline between requests (a guest may not fault for
 * minutes), but every PCH_KEEPALIVE_MS without an answer to send, a
 * KEEPALIVE frame tells the helper the source is still there.
 */
static int wait_request(struct src *s, struct src_tx *tx, uint64_t *last_tx, const char **what)
{
	struct pollfd pfd = { .fd = tx->ch->fd, .events = POLLIN };

	while (!src_stopping(s)) {
		int n = poll(&pfd, 1, SRC_TICK_MS * 2), ret;

		if (n > 0)
			return 1;
		*what = "poll on";
		if (n < 0 && errno != EINTR)
			return -errno;
		*what = "keep-alive to";
		if (pch_now_ns() - *last_tx < PCH_KEEPALIVE_MS * 1000000ull)
			continue;
		src_tx_reset(tx);
		src_tx_add_empty_flags(tx, PCH_FRAME_KEEPALIVE, PCH_FRAME_F_URGENT, 0);
		ret = src_tx_send(tx);
		if (ret)
			return ret;
		*last_tx = pch_now_ns();
	}
	return 0;
}

static void *urgent_main(void *arg)
{
	struct src *s = arg;
	struct src_chan *ch = &s->chans[SRC_SLOT_URGENT];
	struct src_stats *st = &s->urgent_st;
	uint32_t ps = s->be.page_size;
	uint64_t last_tx = pch_now_ns();
	struct src_tx tx;
	int ret;

	pch_thread_name("pch-urgent");
	/* answers go out ahead of the bulk senders (nice +5) and other work */
	if (pch_thread_nice(-10))
		pch_dbg(PCH_DBG_SRC, "urgent thread: cannot raise its priority");
	ret = src_tx_init(&tx, s, ch, PCH_REQ_MAX_PAGES);
	if (ret) {
		src_fail(s, "URGENT: send buffer: %s", strerror(-ret));
		return NULL;
	}

	for (;;) {
		struct pch_req req;
		const char *why = "?";
		uint64_t first;

		const char *what = "read from";

		ret = wait_request(s, &tx, &last_tx, &what);
		if (ret == 0)
			break;
		if (ret > 0) {
			what = "read from";
			ret = pch_read_full(ch->fd, &req, sizeof(req), SRC_REQ_READ_MS);
		}
		if (ret) {
			if (src_stopping(s) || src_wait_stop(s, 1000))
				break; /* the helper closes URGENT once it is done */
			src_lost(s, "URGENT: %s %s: %s", what,
				 ch->peer, ret == -ECONNRESET ? "helper closed the channel" :
				 strerror(-ret));
			break;
		}

		ret = pch_req_check(&req, &s->tab, &why);
		if (ret) {
			char text[112];

			snprintf(text, sizeof(text), "URGENT: bad page request (id %llu): %s",
				 (unsigned long long)req.id, why);
			/* main tells the helper (PCH_CC_ERROR) as it shuts down */
			src_fail(s, "%s", text);
			break;
		}

		first = req.offset / ps;
		PCH_PROBE(request_received, req.block, req.offset, req.count, req.id);
		pch_dbg(PCH_DBG_SRC, "URGENT: request %llu: %u pages at 0x%llx",
			(unsigned long long)req.id, req.count,
			(unsigned long long)req.offset);
		src_tx_reset(&tx);
		src_tx_add_pages(&tx, first, req.count, SRC_TX_ZERO | SRC_TX_DATA, NULL,
				 PCH_FRAME_F_URGENT, req.id);
		ret = src_tx_send(&tx);
		if (ret) {
			if (ret == -ECANCELED || src_wait_stop(s, 1000))
				break;
			src_lost(s, "URGENT: send to %s (request %llu): %s", ch->peer,
				 (unsigned long long)req.id,
				 ret == -ETIMEDOUT ? "no progress for 30 s" : strerror(-ret));
			break;
		}
		last_tx = pch_now_ns();
		PCH_PROBE(page_sent, req.block, req.offset, req.count, req.id, tx.bytes);
		/* after the answer, so the fault is served before its neighbours */
		src_bulk_hint(s, first);

		st->requests++;
		st->pages_urgent += req.count;
		st->urgent_zero += tx.pages_zero;
		st->bytes_urgent += tx.bytes;
		st->frames_urgent += tx.frames;
		__atomic_store_n(&s->requests_live, st->requests, __ATOMIC_RELAXED);
	}
	src_tx_free(&tx);
	return NULL;
}

/* Start the urgent thread.  Returns 0 or -errno (not logged). */
int src_urgent_start(struct src *s)
{
	int ret = pthread_create(&s->urgent_thread, NULL, urgent_main, s);

	if (ret)
		return -ret;
	s->urgent_started = true;
	return 0;
}

/* Join the urgent thread; call after setting stop. */
void src_urgent_join(struct src *s)
{
	if (s->urgent_started)
		pthread_join(s->urgent_thread, NULL);
	s->urgent_started = false;
}
