// SPDX-License-Identifier: MIT
/*
 * sender.c - the bulk senders, one thread per PAGES channel.
 *
 * The image is cut into chunks of --chunk-pages pages.  Senders claim chunks
 * from a shared atomic bitmap, starting at a shared cursor, so N channels
 * stream disjoint parts of RAM without a lock, and an urgent request can
 * steer all of them to a faulting region by moving the start point (the
 * hint).  With --zero-first there are two passes over the chunks: the first
 * sends only ZERO frames, the second only data; otherwise one pass sends
 * both.  A sender that finds its pass exhausted moves on to the next, so at
 * the switch the last zero chunks may still be in flight on other channels.
 *
 * Every page not in the skip bitmap (HAVE) goes out in bulk exactly once.  A
 * channel whose send fails is closed and its sender ends; the others go on,
 * and the helper requests what the dead channel owed on URGENT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "util.h"
#include "source_i.h"

/* SYNC frames one batch carries at most; more wait for the next boundary. */
#define SRC_SYNC_PER_BATCH 8

#define NO_CHUNK UINT64_MAX

/*
 * Claim the next chunk of pass p: the next unclaimed one from the hint (last
 * pass only) or the cursor, wrapping around to 0 once.  Returns the chunk or
 * NO_CHUNK when every chunk of the pass is claimed.
 */
static uint64_t claim_chunk(struct src *s, unsigned p)
{
	struct src_pass *ps = &s->pass[p];
	uint64_t from = NO_CHUNK, c;
	bool wrapped = false;

	/* fault neighbourhoods matter for data; zero pages are cheap anyway */
	if (p == s->npasses - 1)
		from = __atomic_exchange_n(&s->hint, SRC_NO_HINT, __ATOMIC_ACQ_REL);
	if (from == NO_CHUNK || from >= s->nchunks)
		from = __atomic_load_n(&ps->cursor, __ATOMIC_RELAXED);

	for (;;) {
		c = pch_bitmap_next_clear(&ps->claim, from);
		if (c >= s->nchunks) {
			if (wrapped)
				return NO_CHUNK;
			wrapped = true;
			from = 0;
			continue;
		}
		if (pch_bitmap_set(&ps->claim, c))
			break;
		from = c + 1; /* another sender won this one */
	}
	__atomic_store_n(&ps->cursor, c + 1, __ATOMIC_RELAXED);
	return c;
}

/* Append SYNC frames for epochs requested since *next; advance *next. */
static void add_syncs(struct src *s, struct src_tx *tx, unsigned *next)
{
	unsigned n = __atomic_load_n(&s->nepochs, __ATOMIC_ACQUIRE);
	unsigned i;

	if (n == *next)
		return;
	pthread_mutex_lock(&s->sync_lock);
	for (i = 0; *next < s->nepochs && i < SRC_SYNC_PER_BATCH; i++, (*next)++)
		src_tx_add_empty(tx, PCH_FRAME_SYNC, s->epochs[*next]);
	pthread_mutex_unlock(&s->sync_lock);
}

/* After END: sleep one tick or until a sync point is requested or we stop. */
static void wait_sync(struct src *s, unsigned next)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += SRC_TICK_MS * 1000000l;
	if (ts.tv_nsec >= 1000000000l) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000l;
	}
	pthread_mutex_lock(&s->sync_lock);
	if (!src_stopping(s) && s->nepochs == next)
		pthread_cond_clockwait(&s->sync_cond, &s->sync_lock, CLOCK_MONOTONIC, &ts);
	pthread_mutex_unlock(&s->sync_lock);
}

/* Sleep so this thread's average rate stays at or below bps bytes/s. */
static void pace(struct src *s, uint64_t t0, uint64_t sent, double bps)
{
	uint64_t due = t0 + (uint64_t)((double)sent / bps * 1e9);
	uint64_t now;

	while (!src_stopping(s) && (now = pch_now_ns()) < due) {
		uint64_t ns = PCH_MIN(due - now, SRC_TICK_MS * 1000000ull);
		struct timespec ts = { .tv_sec = ns / 1000000000ull,
				       .tv_nsec = ns % 1000000000ull };

		nanosleep(&ts, NULL);
	}
}

/* A sender is through: END sent, or its channel died.  The last one times bulk. */
static void sender_over(struct src *s)
{
	unsigned n = __atomic_add_fetch(&s->senders_over, 1, __ATOMIC_ACQ_REL);

	if (n == s->opt.channels) {
		__atomic_store_n(&s->t_bulk_end_ns, pch_now_ns(), __ATOMIC_RELEASE);
		pch_info("bulk: %u of %u channels sent END",
			 __atomic_load_n(&s->senders_done, __ATOMIC_ACQUIRE), n);
	}
}

static void sender_finished(struct src *s, struct src_sender *sd)
{
	__atomic_add_fetch(&s->senders_done, 1, __ATOMIC_ACQ_REL);
	pch_dbg(PCH_DBG_SRC, "PAGES %u: bulk done, END sent (%llu data, %llu zero pages)",
		sd->index, (unsigned long long)sd->st.pages_bulk,
		(unsigned long long)sd->st.pages_zero);
	sender_over(s);
}

/*
 * A PAGES channel that fails is dead, but the session goes on
 * (docs/protocol.md 5.2): the helper requests whatever that channel still
 * owed on URGENT.  Close it so the helper notices at once.
 */
static void sender_dead(struct src *s, struct src_chan *ch, int err)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s: send to %s: %s; channel closed, the session goes on",
		 ch->name, ch->peer,
		 err == -ETIMEDOUT ? "no progress for 30 s" : strerror(-err));
	pch_err("%s", msg);
	src_record_error(s, "%s", msg);
	__atomic_add_fetch(&s->senders_dead, 1, __ATOMIC_ACQ_REL);
	shutdown(ch->fd, SHUT_RDWR);
	sender_over(s);
}

static void *sender_main(void *arg)
{
	struct src_sender *sd = arg;
	struct src *s = sd->src;
	struct src_chan *ch = &s->chans[SRC_SLOT_PAGES0 + sd->index];
	uint32_t cp = s->opt.chunk_pages;
	double bps = s->opt.bulk_rate_mbps * 1e6 / s->opt.channels;
	uint64_t t0 = pch_now_ns(), sent = 0, last_tx = t0;
	unsigned pass = 0, next_sync = 0, batches = 0;
	bool end_sent = false;
	struct src_tx tx;
	char tname[16];
	int ret;

	snprintf(tname, sizeof(tname), "pch-bulk%u", sd->index);
	pch_thread_name(tname);
	/* bulk yields the CPU to the urgent thread (and the helper) */
	pch_thread_nice(5);

	ret = src_tx_init(&tx, s, ch, cp);
	if (ret) {
		src_fail(s, "%s: send buffer: %s", ch->name, strerror(-ret));
		return NULL;
	}

	while (!src_stopping(s)) {
		bool end_now = false;

		src_tx_reset(&tx);
		/* a frame boundary: sync points requested so far go first */
		add_syncs(s, &tx, &next_sync);
		if (!end_sent) {
			uint64_t c = NO_CHUNK;

			while (pass < s->npasses && (c = claim_chunk(s, pass)) == NO_CHUNK)
				pass++;
			if (c == NO_CHUNK) {
				src_tx_add_empty(&tx, PCH_FRAME_END, 0);
				end_now = true;
			} else {
				uint64_t first = c * cp;

				src_tx_add_pages(&tx, first, PCH_MIN((uint64_t)cp,
								     s->be.npages - first),
						 s->pass[pass].what, &s->skip, 0, 0);
			}
		} else if (!tx.nhdr) {
			/* after END: idle, but a keep-alive every second says not dead */
			if (pch_now_ns() - last_tx < PCH_KEEPALIVE_MS * 1000000ull) {
				wait_sync(s, next_sync);
				continue;
			}
			src_tx_add_empty(&tx, PCH_FRAME_KEEPALIVE, 0);
		}

		/* Fault injection for tests: a frame naming a block that does not exist. */
		if (s->opt.corrupt_channel == (int)sd->index && ++batches == 3 && tx.nhdr) {
			pch_warn("%s: sending a corrupt frame (--test-corrupt-channel)", ch->name);
			tx.hdr[tx.nhdr - 1].block = 0x7fff;
		}
		ret = src_tx_send(&tx);
		if (ret) {
			if (ret == -ECANCELED || src_wait_stop(s, 1000))
				break; /* shutting down: the helper may have closed first */
			sender_dead(s, ch, ret);
			break;
		}
		last_tx = pch_now_ns();
		PCH_PROBE(bulk_sent, sd->index, tx.pages_data, tx.pages_zero, tx.bytes);
		sd->st.bytes_bulk += tx.bytes;
		sd->st.frames_bulk += tx.frames;
		sd->st.pages_bulk += tx.pages_data;
		sd->st.pages_zero += tx.pages_zero;
		sd->st.pages_hole += tx.pages_hole;
		if (end_now) {
			end_sent = true;
			sender_finished(s, sd);
		}
		if (bps > 0 && !end_sent) {
			sent += tx.bytes;
			pace(s, t0, sent, bps);
		}
	}
	src_tx_free(&tx);
	return NULL;
}

/*
 * Plan the bulk stream: chunk count, passes, claim and skip bitmaps.
 * Returns 0 or -errno.
 */
int src_bulk_init(struct src *s)
{
	uint64_t npages = s->be.npages;
	unsigned p;
	int ret;

	s->nchunks = PCH_DIV_ROUND_UP(npages, s->opt.chunk_pages);
	if (s->opt.zero_first) {
		s->npasses = 2;
		s->pass[0].what = SRC_TX_ZERO;
		s->pass[1].what = SRC_TX_DATA;
	} else {
		s->npasses = 1;
		s->pass[0].what = SRC_TX_ZERO | SRC_TX_DATA;
	}
	for (p = 0; p < s->npasses; p++) {
		ret = pch_bitmap_init(&s->pass[p].claim, s->nchunks);
		if (ret)
			return ret;
	}
	ret = pch_bitmap_init(&s->skip, npages);
	if (ret)
		return ret;
	s->hint = SRC_NO_HINT;
	s->senders = calloc(s->opt.channels, sizeof(*s->senders));
	return s->senders ? 0 : -ENOMEM;
}

/* Start one sender per PAGES channel.  Returns 0 or -errno (not logged). */
int src_bulk_start(struct src *s)
{
	unsigned i;
	int ret;

	s->t_bulk_start_ns = pch_now_ns();
	for (i = 0; i < s->opt.channels; i++) {
		struct src_sender *sd = &s->senders[i];

		sd->src = s;
		sd->index = i;
		ret = pthread_create(&sd->thread, NULL, sender_main, sd);
		if (ret)
			return -ret;
		sd->started = true;
	}
	return 0;
}

/* Join the senders; call after setting stop. */
void src_bulk_join(struct src *s)
{
	unsigned i;

	pthread_mutex_lock(&s->sync_lock);
	pthread_cond_broadcast(&s->sync_cond);
	pthread_mutex_unlock(&s->sync_lock);
	for (i = 0; s->senders && i < s->opt.channels; i++) {
		if (s->senders[i].started)
			pthread_join(s->senders[i].thread, NULL);
		s->senders[i].started = false;
	}
}

/* An urgent request touched page: stream its chunk's neighbourhood next. */
void src_bulk_hint(struct src *s, uint64_t page)
{
	__atomic_store_n(&s->hint, page / s->opt.chunk_pages, __ATOMIC_RELEASE);
}

/*
 * Queue a sync point: every sender emits SYNC(epoch) at its next frame
 * boundary, or at once if it already sent END.  Returns 0, -EINVAL when
 * epoch is not above every earlier one, or -ENOMEM.
 */
int src_sync_request(struct src *s, uint64_t epoch)
{
	int ret = 0;

	pthread_mutex_lock(&s->sync_lock);
	if (s->nepochs && epoch <= s->epochs[s->nepochs - 1]) {
		ret = -EINVAL;
		goto out;
	}
	if (s->nepochs == s->epochs_cap) {
		unsigned cap = s->epochs_cap ? 2 * s->epochs_cap : 16;
		uint64_t *e = realloc(s->epochs, cap * sizeof(*e));

		if (!e) {
			ret = -ENOMEM;
			goto out;
		}
		s->epochs = e;
		s->epochs_cap = cap;
	}
	s->epochs[s->nepochs] = epoch;
	__atomic_store_n(&s->nepochs, s->nepochs + 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&s->sync_cond);
out:
	pthread_mutex_unlock(&s->sync_lock);
	return ret;
}
