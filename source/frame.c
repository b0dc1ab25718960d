// SPDX-License-Identifier: MIT
/*
 * frame.c - build batches of page frames and write them with a deadline.
 *
 * A batch is written as iovecs (header, offsets, page data, next header...)
 * so that a whole chunk leaves in one sendmsg: per-page syscalls would cap
 * the stream far below the loopback limit on a 2-vCPU machine, where a
 * syscall costs about a microsecond.  Page data is read (or generated) only
 * when the batch is sent, a round at a time, so a request for 64 pages of
 * 1 GiB does not need 64 GiB of scratch.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "util.h"
#include "source_i.h"

/* Frames without pages (SYNC, END) one batch may hold. */
#define SRC_TX_EMPTY_SLOTS 16

static uint32_t max_data_pages(uint32_t page_size)
{
	/* PCH_FRAME_MAX_DATA, or one page when a page is larger */
	uint32_t n = PCH_MAX(1u, PCH_FRAME_MAX_DATA / page_size);

	return PCH_MIN(n, PCH_FRAME_MAX_PAGES);
}

/*
 * Size a batch for page ranges of up to max_pages pages.  Returns 0 or
 * -ENOMEM.
 */
int src_tx_init(struct src_tx *tx, struct src *s, struct src_chan *ch, uint32_t max_pages)
{
	uint32_t ps = s->be.page_size;
	uint32_t fmax = max_data_pages(ps);

	memset(tx, 0, sizeof(*tx));
	tx->src = s;
	tx->ch = ch;
	tx->max_pages = max_pages;
	tx->bulk = ch - s->chans >= SRC_SLOT_PAGES0;
	tx->cap_hdr = PCH_DIV_ROUND_UP(max_pages, PCH_FRAME_MAX_PAGES) +
		      PCH_DIV_ROUND_UP(max_pages, fmax) + SRC_TX_EMPTY_SLOTS;
	/* each frame: header + offsets; data: at most one iovec per page */
	tx->cap_iov = 2 * tx->cap_hdr + max_pages;
	/* a round holds one whole frame at least */
	tx->scratch_pages = PCH_MIN(max_pages, PCH_MAX(fmax, SRC_TX_ROUND_BYTES / ps));
	tx->hdr = calloc(tx->cap_hdr, sizeof(*tx->hdr));
	tx->offs = calloc(tx->cap_hdr, sizeof(*tx->offs));
	tx->zoff = calloc(max_pages, sizeof(uint64_t));
	tx->doff = calloc(max_pages, sizeof(uint64_t));
	tx->iov = calloc(tx->cap_iov, sizeof(*tx->iov));
	/* generated pages only; a mapped backend never writes here */
	tx->scratch = aligned_alloc(4096, (size_t)tx->scratch_pages * ps);
	if (!tx->hdr || !tx->offs || !tx->zoff || !tx->doff || !tx->iov || !tx->scratch) {
		src_tx_free(tx);
		return -ENOMEM;
	}
	return 0;
}

/* Free a batch's buffers; safe on a zeroed or half-built one. */
void src_tx_free(struct src_tx *tx)
{
	free(tx->hdr);
	free(tx->offs);
	free(tx->zoff);
	free(tx->doff);
	free(tx->iov);
	free(tx->scratch);
	memset(tx, 0, sizeof(*tx));
}

/* Empty the batch for the next frames (frame seq numbers carry on). */
void src_tx_reset(struct src_tx *tx)
{
	tx->nhdr = 0;
	tx->niov = 0;
	tx->bytes = 0;
	tx->have_range = false;
	tx->frames = 0;
	tx->pages_data = 0;
	tx->pages_zero = 0;
	tx->pages_hole = 0;
}

static void tx_iov(struct src_tx *tx, const void *base, size_t len)
{
	struct iovec *last = tx->niov ? &tx->iov[tx->niov - 1] : NULL;

	/* adjacent memory (consecutive generated or mapped pages) is one iovec */
	if (last && (const uint8_t *)last->iov_base + last->iov_len == base) {
		last->iov_len += len;
	} else {
		tx->iov[tx->niov].iov_base = (void *)base;
		tx->iov[tx->niov].iov_len = len;
		tx->niov++;
	}
}

static void tx_hdr(struct src_tx *tx, uint16_t type, uint16_t flags, uint32_t count,
		   uint64_t arg, const uint64_t *offs)
{
	struct pch_frame_hdr *h = &tx->hdr[tx->nhdr];

	pch_frame_build(h, type, flags, 0, count, tx->ch->seq++, arg);
	tx->offs[tx->nhdr++] = offs;
	tx->bytes += sizeof(*h) + (offs ? (size_t)count * sizeof(uint64_t) : 0);
	tx->frames++;
}

/* Add a frame without pages (SYNC with arg = epoch, or END). */
void src_tx_add_empty(struct src_tx *tx, uint16_t type, uint64_t arg)
{
	src_tx_add_empty_flags(tx, type, 0, arg);
}

void src_tx_add_empty_flags(struct src_tx *tx, uint16_t type, uint16_t flags, uint64_t arg)
{
	if (tx->nhdr >= tx->cap_hdr)
		abort(); /* callers add at most SRC_TX_EMPTY_SLOTS - 1 per batch */
	tx_hdr(tx, type, flags, 0, arg, NULL);
}

/*
 * Add pages [first, first + n) of block 0, except those set in skip (may be
 * NULL): all-zero pages as ZERO frames (offsets only) when what has
 * SRC_TX_ZERO, the others as PAGES frames when it has SRC_TX_DATA.  Frames
 * are split at the receiver's limits.  One range per batch, n <= max_pages.
 */
void src_tx_add_pages(struct src_tx *tx, uint64_t first, uint64_t n, unsigned what,
		      const struct pch_bitmap *skip, uint16_t flags, uint64_t arg)
{
	const struct src_backend *be = &tx->src->be;
	uint32_t ps = be->page_size;
	uint32_t fmax = max_data_pages(ps);
	uint64_t nz = 0, nd = 0, nh = 0, i, j, k;
	uint64_t ext_end = first; /* pages before it are known (hole or not) */
	bool hole = false;

	if (tx->have_range || n > tx->max_pages)
		abort();
	tx->have_range = true;

	for (i = first; i < first + n; i++) {
		if (skip && pch_bitmap_test(skip, i))
			continue;
		if (i >= ext_end) {
			if (be->ops->extent)
				ext_end = be->ops->extent(be, i, &hole);
			else
				ext_end = first + n;
		}
		if (hole || be->ops->is_zero(be, i)) {
			if (what & SRC_TX_ZERO) {
				tx->zoff[nz++] = i * ps;
				nh += hole;
			}
		} else if (what & SRC_TX_DATA) {
			tx->doff[nd++] = i * ps;
		}
	}

	for (j = 0; j < nz; j += k) {
		k = PCH_MIN(nz - j, (uint64_t)PCH_FRAME_MAX_PAGES);
		tx_hdr(tx, PCH_FRAME_ZERO, flags, k, arg, &tx->zoff[j]);
	}
	for (j = 0; j < nd; j += k) {
		k = PCH_MIN(nd - j, (uint64_t)fmax);
		tx_hdr(tx, PCH_FRAME_PAGES, flags, k, arg, &tx->doff[j]);
	}

	tx->bytes += nd * ps;
	tx->pages_zero += nz;
	tx->pages_hole += nh;
	tx->pages_data += nd;
}

/*
 * Write iov[0..niov) completely on ch.  MSG_DONTWAIT plus poll keeps every
 * wait short so shutdown is noticed within a tick; a channel that takes no
 * bytes for SRC_SEND_STALL_MS fails.  Consumes (modifies) iov.  Returns 0,
 * -ECANCELED when shutdown began, -ETIMEDOUT on a stall, or -errno.
 */
static int src_sendv(struct src *s, struct src_chan *ch, struct iovec *iov, unsigned niov)
{
	uint64_t last = pch_now_ns();
	unsigned i = 0;

	while (i < niov) {
		struct msghdr msg = {
			.msg_iov = &iov[i],
			.msg_iovlen = PCH_MIN(niov - i, (unsigned)IOV_MAX),
		};
		ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			struct pollfd pfd = { .fd = ch->fd, .events = POLLOUT };

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			if (src_stopping(s))
				return -ECANCELED;
			if (pch_now_ns() - last > SRC_SEND_STALL_MS * 1000000ull)
				return -ETIMEDOUT;
			if (poll(&pfd, 1, SRC_TICK_MS) < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		last = pch_now_ns();
		/* skip what went out; the partial iovec is advanced in place */
		while (i < niov && (size_t)n >= iov[i].iov_len) {
			n -= iov[i].iov_len;
			i++;
		}
		if (i < niov) {
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
			iov[i].iov_len -= n;
		}
	}
	return 0;
}

/* Write the round gathered in tx->iov and empty it. */
static int tx_flush(struct src_tx *tx)
{
	int ret = 0;

	if (tx->niov)
		ret = src_sendv(tx->src, tx->ch, tx->iov, tx->niov);
	tx->niov = 0;
	return ret;
}

/* Append frame f (header, offsets, data read into scratch from page slot) to the round. */
static void tx_gather(struct src_tx *tx, unsigned f, uint32_t slot)
{
	const struct src_backend *be = &tx->src->be;
	const struct pch_frame_hdr *h = &tx->hdr[f];
	uint32_t ps = be->page_size, i;

	tx_iov(tx, h, sizeof(*h));
	if (!tx->offs[f])
		return;
	tx_iov(tx, tx->offs[f], (size_t)h->count * sizeof(uint64_t));
	if (h->type != PCH_FRAME_PAGES)
		return;
	for (i = 0; i < h->count; i++)
		tx_iov(tx, be->ops->page(be, tx->offs[f][i] / ps,
					 tx->scratch + (size_t)(slot + i) * ps), ps);
}

/* Take one of the --test-slow-frames frames, if any are left. */
static bool take_slow(struct src *s)
{
	uint64_t n = __atomic_load_n(&s->slow_left, __ATOMIC_RELAXED);

	while (n)
		if (__atomic_compare_exchange_n(&s->slow_left, &n, n - 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return true;
	return false;
}

/* Sleep ms, a tick at a time; -ECANCELED when shutdown began. */
static int slow_sleep(struct src *s, unsigned ms)
{
	uint64_t until = pch_now_ns() + (uint64_t)ms * 1000000ull;
	uint64_t now;

	while ((now = pch_now_ns()) < until) {
		uint64_t ns = PCH_MIN(until - now, SRC_TICK_MS * 1000000ull);
		struct timespec ts = { .tv_sec = ns / 1000000000ull,
				       .tv_nsec = ns % 1000000000ull };

		if (src_stopping(s))
			return -ECANCELED;
		nanosleep(&ts, NULL);
	}
	return 0;
}

/*
 * Tests (--test-slow-frames): write frame f with its header and offsets at
 * once, then its data as one stream cut in SRC_SLOW_PIECE pieces (across
 * page boundaries), each after a slow_ms sleep, so that the helper sees a
 * page half received on a bulk channel for a while.
 */
static int tx_send_slow(struct src_tx *tx, unsigned f)
{
	struct src *s = tx->src;
	const struct src_backend *be = &s->be;
	const struct pch_frame_hdr *h = &tx->hdr[f];
	uint32_t ps = be->page_size;
	unsigned i, n;
	size_t off;
	int ret;

	pch_info("%s: frame %llu (%u page%s at 0x%llx): data in %u KiB pieces, each after %u ms "
		 "(--test-slow-frames)", tx->ch->name, (unsigned long long)h->seq, h->count,
		 h->count == 1 ? "" : "s", (unsigned long long)tx->offs[f][0],
		 SRC_SLOW_PIECE >> 10, s->opt.slow_ms);
	tx_iov(tx, h, sizeof(*h));
	tx_iov(tx, tx->offs[f], (size_t)h->count * sizeof(uint64_t));
	ret = tx_flush(tx);
	if (ret)
		return ret;

	/* the frame fits in scratch (tx_init), as in any round */
	for (i = 0; i < h->count; i++)
		tx_iov(tx, be->ops->page(be, tx->offs[f][i] / ps, tx->scratch + (size_t)i * ps), ps);
	n = tx->niov;
	tx->niov = 0;
	for (i = 0, off = 0; i < n;) {
		/* iovecs are whole pages of >= 4 KiB: a piece spans at most 17 */
		struct iovec piece[SRC_SLOW_PIECE / 4096 + 1];
		size_t want = SRC_SLOW_PIECE;
		unsigned np = 0;

		while (i < n && want) {
			size_t take = PCH_MIN(want, tx->iov[i].iov_len - off);

			piece[np].iov_base = (uint8_t *)tx->iov[i].iov_base + off;
			piece[np++].iov_len = take;
			want -= take;
			off += take;
			if (off == tx->iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
		ret = slow_sleep(s, s->opt.slow_ms);
		if (!ret)
			ret = src_sendv(s, tx->ch, piece, np);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Send the batch on its channel, reading or generating its pages a round
 * at a time; the caller reads its counters, then resets it.  Returns 0 or
 * -errno as src_sendv (not logged: the caller names what failed).
 */
int src_tx_send(struct src_tx *tx)
{
	uint32_t used = 0; /* scratch pages the round holds */
	unsigned f;
	int ret;

	tx->niov = 0;
	for (f = 0; f < tx->nhdr; f++) {
		const struct pch_frame_hdr *h = &tx->hdr[f];
		uint32_t k = h->type == PCH_FRAME_PAGES ? h->count : 0;
		bool slow = k && tx->bulk && take_slow(tx->src);

		/* scratch pages are reused next round: send what points there first */
		if (slow || used + k > tx->scratch_pages) {
			ret = tx_flush(tx);
			if (ret)
				return ret;
			used = 0;
		}
		if (slow) {
			ret = tx_send_slow(tx, f);
			if (ret)
				return ret;
			continue;
		}
		tx_gather(tx, f, used);
		used += k;
	}
	return tx_flush(tx);
}
