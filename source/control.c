// SPDX-License-Identifier: MIT
/*
 * control.c - the CONTROL channel: the block table out, the helper's
 * session messages in, checked for form (-EBADMSG) and for state (-EPROTO:
 * HAVE after START, SYNC_REQ before START, START twice, BLOCKS from the
 * helper), as docs/protocol.md 2.6 says.  Used by the main thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "net.h"
#include "util.h"
#include "source_i.h"

/* A started message must complete within this. */
#define SRC_CC_READ_MS 30000
#define SRC_CC_WRITE_MS 5000

/*
 * Send one CONTROL message.  Returns 0 or -errno (not logged: the caller
 * says which message failed).
 */
int src_ctl_send(struct src *s, uint16_t type, const void *payload, uint32_t len)
{
	struct src_chan *ch = &s->chans[SRC_SLOT_CONTROL];
	struct pch_cc_hdr h;
	int ret;

	pch_cc_build(&h, type, len);
	pthread_mutex_lock(&s->ctl_lock);
	ret = pch_write_full(ch->fd, &h, sizeof(h), SRC_CC_WRITE_MS);
	if (!ret && len)
		ret = pch_write_full(ch->fd, payload, len, SRC_CC_WRITE_MS);
	if (!ret)
		__atomic_store_n(&s->cc_last_tx_ns, pch_now_ns(), __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->ctl_lock);
	return ret;
}

/*
 * Tell the helper why the session fails, once per session (the first
 * reason is the useful one); best effort.  Returns 0 or -errno.
 */
int src_ctl_send_error(struct src *s, int code, const char *text)
{
	struct pch_cc_error e;

	if (__atomic_exchange_n(&s->ctl_error_sent, true, __ATOMIC_ACQ_REL))
		return 0;
	memset(&e, 0, sizeof(e));
	e.code = code < 0 ? code : -EPROTO;
	snprintf(e.text, sizeof(e.text), "%s", text);
	return src_ctl_send(s, PCH_CC_ERROR, &e, sizeof(e));
}

/* Send PCH_CC_BLOCKS, the RAM block table.  Returns 0 or -errno (logged). */
int src_ctl_send_blocks(struct src *s)
{
	uint8_t buf[sizeof(struct pch_cc_blocks) + PCH_MAX_BLOCKS * sizeof(struct pch_wire_block)];
	int len, ret;

	len = pch_blocktab_encode(&s->tab, buf, sizeof(buf));
	if (len < 0) {
		src_fail(s, "CONTROL: encoding the block table: %s", strerror(-len));
		return len;
	}
	ret = src_ctl_send(s, PCH_CC_BLOCKS, buf, len);
	if (ret) {
		src_lost(s, "CONTROL: sending BLOCKS to %s: %s", s->chans[SRC_SLOT_CONTROL].peer,
			 strerror(-ret));
		return ret;
	}
	pch_dbg(PCH_DBG_SRC, "CONTROL: sent BLOCKS (%u block, %llu pages)", s->tab.count,
		(unsigned long long)s->tab.total_pages);
	return 0;
}

/* The helper broke the protocol: say so on both sides. */
static int malformed(struct src *s, const char *msg, const char *why)
{
	char text[120];

	snprintf(text, sizeof(text), "CONTROL: bad %s: %s", msg, why);
	src_ctl_send_error(s, -EBADMSG, text);
	src_fail(s, "%s", text);
	return -EBADMSG;
}

/* A well-formed message the session cannot take now (or ever, from the helper). */
static int wrong_state(struct src *s, const char *msg, const char *why)
{
	char text[120];

	snprintf(text, sizeof(text), "CONTROL: unexpected %s: %s", msg, why);
	src_ctl_send_error(s, -EPROTO, text);
	src_fail(s, "%s", text);
	return -EPROTO;
}

static int want_len(struct src *s, const char *msg, uint32_t len, uint32_t want)
{
	char why[64];

	if (len == want)
		return 0;
	snprintf(why, sizeof(why), "len %u, expected %u", len, want);
	return malformed(s, msg, why);
}

static int cc_have(struct src *s, const void *payload, uint32_t len)
{
	const struct pch_cc_have *h = payload;
	const char *why = "?";
	int64_t n;

	if (pch_cc_have_check(payload, len, &s->tab, &why))
		return malformed(s, "HAVE", why);
	/* the bulk plan is fixed at START */
	if (s->started)
		return wrong_state(s, "HAVE", "after START");
	n = pch_bitmap_import(&s->skip, h->first_page, (const uint64_t *)(h + 1), h->npages);
	if (n < 0)
		return malformed(s, "HAVE", "range");
	pch_dbg(PCH_DBG_SRC, "CONTROL: HAVE pages %llu..+%llu: %lld new, never sent in bulk",
		(unsigned long long)h->first_page, (unsigned long long)h->npages, (long long)n);
	return 0;
}

/*
 * The helper sends START once all its channels are acked, but we mark a
 * channel connected just after writing its ack, so START can overtake the
 * last slot update by a moment.  Give it the handshake deadline.
 */
static int wait_all_channels(struct src *s)
{
	uint64_t until = pch_now_ns() + (uint64_t)s->opt.handshake_timeout_ms * 1000000ull;

	for (;;) {
		struct timespec ts = { 0, 1000000l };
		bool all;

		pthread_mutex_lock(&s->lock);
		all = s->nready == s->nchans;
		pthread_mutex_unlock(&s->lock);
		if (all)
			return 0;
		if (pch_now_ns() >= until || pch_now_ns() >= s->deadline_ns)
			return wrong_state(s, "START", "not every channel is connected");
		nanosleep(&ts, NULL);
	}
}

static int cc_start(struct src *s, const void *payload, uint32_t len)
{
	uint64_t skip;
	int ret;

	if (want_len(s, "START", len, 0))
		return -EBADMSG;
	if (s->started)
		return wrong_state(s, "START", "received twice");
	ret = wait_all_channels(s);
	if (ret)
		return ret;
	s->started = true;

	skip = pch_bitmap_count(&s->skip);
	pch_info("START: streaming %llu pages (%llu already at the helper) on %u channels%s",
		 (unsigned long long)(s->be.npages - skip), (unsigned long long)skip,
		 s->opt.channels, s->opt.zero_first ? ", zero pages first" : "");
	ret = src_urgent_start(s);
	if (!ret)
		ret = src_bulk_start(s);
	if (ret) {
		src_fail(s, "starting the sender threads: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static int cc_sync(struct src *s, const void *payload, uint32_t len)
{
	const struct pch_cc_sync *m = payload;
	int ret;

	if (want_len(s, "SYNC_REQ", len, sizeof(*m)))
		return -EBADMSG;
	if (!s->started)
		return wrong_state(s, "SYNC_REQ", "before START");
	ret = src_sync_request(s, m->epoch);
	if (ret == -EINVAL)
		return wrong_state(s, "SYNC_REQ", "epoch not above the previous one");
	if (ret) {
		src_fail(s, "CONTROL: SYNC_REQ epoch %llu: %s", (unsigned long long)m->epoch,
			 strerror(-ret));
		return ret;
	}
	pch_dbg(PCH_DBG_SRC, "CONTROL: SYNC_REQ epoch %llu", (unsigned long long)m->epoch);
	return 0;
}

static int cc_done(struct src *s, const void *payload, uint32_t len)
{
	if (want_len(s, "DONE", len, 0))
		return -EBADMSG;
	pch_info("DONE: the helper has every page");
	return 1;
}

static int cc_error(struct src *s, const void *payload, uint32_t len)
{
	const struct pch_cc_error *e = payload;
	char text[sizeof(e->text) + 1];

	if (want_len(s, "ERROR", len, sizeof(*e)))
		return -EBADMSG;
	/* the text is the helper's: bound it ourselves */
	memcpy(text, e->text, sizeof(e->text));
	text[sizeof(e->text)] = '\0';
	/* no answer: the helper is already failing */
	__atomic_store_n(&s->ctl_error_sent, true, __ATOMIC_RELEASE);
	src_fail(s, "helper reported an error: %s (%s)", text, strerror(e->code < 0 ? -e->code : EPROTO));
	return -EPROTO;
}

static int cc_keepalive(struct src *s, const void *payload, uint32_t len)
{
	return 0; /* the helper is there: the time of arrival is all it says */
}

static const struct {
	int (*fn)(struct src *s, const void *payload, uint32_t len);
	const char *name;
} cc_handlers[PCH_CC_TYPE_MAX] = {
	[PCH_CC_BLOCKS] = { NULL, "BLOCKS" }, /* ours to send, not to receive */
	[PCH_CC_HAVE] = { cc_have, "HAVE" },
	[PCH_CC_START] = { cc_start, "START" },
	[PCH_CC_SYNC_REQ] = { cc_sync, "SYNC_REQ" },
	[PCH_CC_DONE] = { cc_done, "DONE" },
	[PCH_CC_ERROR] = { cc_error, "ERROR" },
	[PCH_CC_KEEPALIVE] = { cc_keepalive, "KEEPALIVE" },
};

/*
 * Read one CONTROL message (the caller saw CONTROL readable) and act on it.
 * Returns 0 to go on, 1 on DONE, or -errno when the session failed (logged
 * and recorded).
 */
int src_ctl_handle(struct src *s)
{
	/* u64 words: HAVE's bitmap is read in place */
	static uint64_t payload[PCH_CC_MAX_PAYLOAD / sizeof(uint64_t)];
	struct src_chan *ch = &s->chans[SRC_SLOT_CONTROL];
	struct pch_cc_hdr h;
	const char *why = "?";
	int ms, ret;

	/* a message cut short fails here, within the session deadline */
	ms = PCH_MAX(1, PCH_MIN(SRC_CC_READ_MS, pch_ms_until(s->deadline_ns)));
	ret = pch_read_full(ch->fd, &h, sizeof(h), ms);
	if (!ret && pch_cc_check_hdr(&h, &why))
		return malformed(s, "message header", why);
	if (!ret && h.len > sizeof(payload))
		return malformed(s, "message header", "len");
	if (!ret && h.len)
		ret = pch_read_full(ch->fd, payload, h.len, ms);
	if (ret) {
		/* the connection, not the helper's words: it may come back */
		__atomic_store_n(&s->ctl_error_sent, true, __ATOMIC_RELEASE);
		if (ret == -ECONNRESET)
			src_lost(s, "CONTROL: helper closed the channel before DONE");
		else
			src_lost(s, "CONTROL: reading a message from %s: %s", ch->peer,
				 strerror(-ret));
		return ret;
	}
	s->cc_last_rx_ns = pch_now_ns();

	if (h.type >= PCH_CC_TYPE_MAX || !cc_handlers[h.type].name)
		return malformed(s, "message header", "type");
	if (!cc_handlers[h.type].fn)
		return wrong_state(s, cc_handlers[h.type].name, "the source sends it, not the helper");
	pch_dbg(PCH_DBG_CTL, "CONTROL: %s, %u bytes", cc_handlers[h.type].name, h.len);
	return cc_handlers[h.type].fn(s, payload, h.len);
}
