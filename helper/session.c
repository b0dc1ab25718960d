// SPDX-License-Identifier: MIT
/*
 * session.c - the helper's side of a session with pch-source: open and
 * authenticate every channel (in any order), check the source's RAM block
 * table against the VMM's, and the CONTROL channel messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helper_i.h"
#include "log.h"
#include "net.h"
#include "util.h"

#define HANDSHAKE_MS 5000
#define CC_SEND_MS 5000
#define BUSY_RETRY_MS 10000 /* keep trying a source whose handshake slots are full */

struct chan_spec {
	uint8_t kind;
	uint16_t index;
	uint8_t flags; /* PCH_HELLO_F_* */
};

/*
 * Open one channel: connect, send our hello, read the source's ack (or its
 * refusal) and check it.  fd or -errno, the reason logged.
 */
static int open_channel(struct helper *h, const struct chan_spec *cs)
{
	struct pch_hello_params p = {
		.kind = cs->kind,
		.index = cs->index,
		.count = (uint16_t)h->o.channels,
		.page_size = h->vtab.min_page_size,
		.flags = cs->flags,
	}, got;
	union {
		struct pch_hello ack;
		struct pch_refuse ref;
	} in;
	struct pch_hello hello;
	const char *why = NULL;
	int fd, rc, reason;

	_Static_assert(sizeof(in.ack) == sizeof(in.ref), "hello and refusal differ in size");
	rc = pch_random_bytes(&p.nonce, sizeof(p.nonce));
	if (rc)
		return rc;
	fd = pch_tcp_connect(h->o.src_host, h->o.src_port, h->o.connect_timeout_ms);
	if (fd < 0) {
		pch_err("%s channel %u: connect to %s:%u: %s", pch_chan_kind_name(cs->kind),
			cs->index, h->o.src_host, h->o.src_port, strerror(-fd));
		return fd;
	}
	pch_hello_build(&hello, &p, &h->sess, false);
	rc = pch_write_full(fd, &hello, sizeof(hello), HANDSHAKE_MS);
	if (!rc)
		rc = pch_read_full(fd, &in, sizeof(in), HANDSHAKE_MS);
	if (rc) {
		pch_err("%s channel %u: handshake: %s", pch_chan_kind_name(cs->kind), cs->index,
			strerror(-rc));
		goto err;
	}
	if (in.ref.magic == PCH_REFUSE_MAGIC) {
		in.ref.text[sizeof(in.ref.text) - 1] = '\0';
		if (in.ref.reason == PCH_REFUSE_BUSY) {
			/* other handshakes fill the source's slots: the caller retries */
			pch_warn("%s channel %u: source busy (%s), retrying",
				 pch_chan_kind_name(cs->kind), cs->index, in.ref.text);
			rc = -EBUSY;
			goto err;
		}
		pch_err("%s channel %u: source refused it: %s: %s", pch_chan_kind_name(cs->kind),
			cs->index, pch_refuse_name(in.ref.reason), in.ref.text);
		rc = -EPROTO;
		goto err;
	}
	rc = pch_hello_check(&in.ack, &h->sess, true, &got, &reason, &why);
	if (!rc && (got.kind != p.kind || got.index != p.index || got.count != p.count ||
		    got.nonce != p.nonce || got.page_size != p.page_size)) {
		rc = -EPROTO;
		why = "ack does not echo our hello";
	}
	if (rc) {
		pch_err("%s channel %u: bad ack from source: %s", pch_chan_kind_name(cs->kind),
			cs->index, why);
		goto err;
	}
	pch_dbg(PCH_DBG_CHAN, "%s channel %u: connected", pch_chan_kind_name(cs->kind),
		cs->index);
	return fd;
err:
	close(fd);
	return rc;
}

/* Read one CONTROL message with a deadline; payload into buf (cap bytes). */
static int cc_recv(struct helper *h, struct pch_cc_hdr *hdr, void *buf, size_t cap,
		   int timeout_ms)
{
	const char *why;
	int rc;

	rc = pch_read_full(h->cc_fd, hdr, sizeof(*hdr), timeout_ms);
	if (rc)
		return rc;
	rc = pch_cc_check_hdr(hdr, &why);
	if (rc) {
		pch_err("CONTROL channel: %s", why);
		return rc;
	}
	if (hdr->len > cap) {
		pch_err("CONTROL channel: message type %u of %u bytes, at most %zu expected",
			hdr->type, hdr->len, cap);
		return -E2BIG;
	}
	return pch_read_full(h->cc_fd, buf, hdr->len, timeout_ms);
}

static int cc_send(struct helper *h, uint16_t type, const void *payload, uint32_t len)
{
	struct pch_cc_hdr hdr;
	int rc;

	pch_cc_build(&hdr, type, len);
	rc = pch_write_full(h->cc_fd, &hdr, sizeof(hdr), CC_SEND_MS);
	if (!rc && len)
		rc = pch_write_full(h->cc_fd, payload, len, CC_SEND_MS);
	if (rc)
		pch_err("CONTROL channel: sending message type %u: %s", type, strerror(-rc));
	else
		h->cc_last_tx_ns = pch_now_ns();
	return rc;
}

static void shuffle(struct chan_spec *cs, unsigned n, const char *order)
{
	unsigned seed = (unsigned)pch_now_ns(), i;
	const char *colon = strchr(order, ':');

	if (colon)
		seed = (unsigned)strtoul(colon + 1, NULL, 0);
	for (i = n - 1; i > 0; i--) {
		unsigned j = (unsigned)(rand_r(&seed) % (i + 1));
		struct chan_spec t = cs[i];

		cs[i] = cs[j];
		cs[j] = t;
	}
}

int session_connect(struct helper *h, bool resume)
{
	struct chan_spec cs[PCH_MAX_CHANNELS + 2];
	unsigned n = 0, i;
	struct pch_blocktab stab;
	struct pch_cc_hdr hdr;
	const char *why;
	void *buf;
	int rc;

	/*
	 * Resuming, CONTROL goes first and says so: the source drops what is
	 * left of the old connections before it takes the new ones.
	 */
	cs[n++] = (struct chan_spec){ PCH_CHAN_CONTROL, 0, resume ? PCH_HELLO_F_RESUME : 0 };
	cs[n++] = (struct chan_spec){ PCH_CHAN_URGENT, 0, 0 };
	for (i = 0; i < h->o.channels; i++)
		cs[n++] = (struct chan_spec){ PCH_CHAN_PAGES, (uint16_t)i, 0 };
	if (h->o.connect_order && !strncmp(h->o.connect_order, "shuffle", 7)) {
		if (resume)
			shuffle(cs + 1, n - 1, h->o.connect_order);
		else
			shuffle(cs, n, h->o.connect_order);
	}

	for (i = 0; i < n; i++) {
		uint64_t busy_until = pch_now_ns() + BUSY_RETRY_MS * 1000000ull;
		int fd;

		/*
		 * Each channel may take a connect and a handshake timeout (5 s
		 * each): beat in between, so a resume that is slow but going
		 * on is not taken for a hung helper (ring.h).
		 */
		while ((fd = open_channel(h, &cs[i])) == -EBUSY && pch_now_ns() < busy_until) {
			if (h->have_ring)
				pch_ring_heartbeat(&h->ring, pch_now_ns());
			usleep(200 * 1000);
		}
		if (h->have_ring)
			pch_ring_heartbeat(&h->ring, pch_now_ns());
		if (fd < 0)
			return fd;
		pch_info("connected %s channel %u (%u of %u)", pch_chan_kind_name(cs[i].kind),
			 cs[i].index, i + 1, n);
		switch (cs[i].kind) {
		case PCH_CHAN_CONTROL:
			h->cc_fd = fd;
			break;
		case PCH_CHAN_URGENT:
			h->urgent_fd = fd;
			break;
		default:
			h->pages[cs[i].index].fd = fd;
			h->pages[cs[i].index].index = cs[i].index;
			break;
		}
	}

	/* The source announces its RAM block table first on CONTROL. */
	buf = malloc(PCH_CC_MAX_PAYLOAD);
	if (!buf)
		return -ENOMEM;
	rc = cc_recv(h, &hdr, buf, PCH_CC_MAX_PAYLOAD, HANDSHAKE_MS);
	if (rc) {
		pch_err("CONTROL channel: waiting for the block table: %s", strerror(-rc));
		goto out;
	}
	if (hdr.type != PCH_CC_BLOCKS) {
		pch_err("CONTROL channel: expected BLOCKS, got message type %u", hdr.type);
		rc = -EPROTO;
		goto out;
	}
	memset(&stab, 0, sizeof(stab));
	rc = pch_blocktab_decode(&stab, buf, hdr.len, &why);
	if (!rc)
		rc = pch_blocktab_match(&stab, &h->vtab, &why);
	if (rc) {
		pch_err("source's RAM block table refused: %s", why);
		goto out;
	}
	pch_info("source's RAM block table matches the VMM's (%u blocks, %llu pages)",
		 stab.count, (unsigned long long)stab.total_pages);
	h->cc_last_rx_ns = h->cc_last_tx_ns = pch_now_ns();
out:
	free(buf);
	return rc;
}

int session_start(struct helper *h)
{
	unsigned i;
	int rc;

	/* Pages the VMM already has (after precopy) are not to be sent. */
	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t first;

		if (!pch_bitmap_count(&b->inplace))
			continue;
		for (first = 0; first < b->d.npages; first += 64 * 1024) {
			uint64_t n = PCH_MIN(b->d.npages - first, 64 * 1024);
			size_t words = PCH_DIV_ROUND_UP(n, 64);
			struct {
				struct pch_cc_have have;
				uint64_t w[1024];
			} m;

			m.have = (struct pch_cc_have){ .block = i, .first_page = first, .npages = n };
			pch_bitmap_export(&b->inplace, first, m.w, n);
			rc = cc_send(h, PCH_CC_HAVE, &m,
				     (uint32_t)(sizeof(m.have) + words * sizeof(uint64_t)));
			if (rc)
				return rc;
		}
	}
	return cc_send(h, PCH_CC_START, NULL, 0);
}

int session_sync_req(struct helper *h, uint64_t epoch)
{
	struct pch_cc_sync s = { .epoch = epoch };

	return cc_send(h, PCH_CC_SYNC_REQ, &s, sizeof(s));
}

int session_done(struct helper *h)
{
	return cc_send(h, PCH_CC_DONE, NULL, 0);
}

int session_keepalive(struct helper *h)
{
	return cc_send(h, PCH_CC_KEEPALIVE, NULL, 0);
}

void session_close(struct helper *h)
{
	unsigned i;

	if (h->cc_fd >= 0)
		close(h->cc_fd);
	if (h->urgent_fd >= 0)
		close(h->urgent_fd);
	h->cc_fd = h->urgent_fd = -1;
	for (i = 0; i < h->o.channels; i++) {
		if (h->pages[i].fd >= 0)
			close(h->pages[i].fd);
		h->pages[i].fd = -1;
	}
}
