// SPDX-License-Identifier: MIT
/*
 * relay.c - one proxied connection: the helper's socket, the socket to the
 * target, and a fixed ring buffer each way.  Everything is non-blocking;
 * the main loop polls what px_conn_events() asks for and calls
 * px_conn_pump() with the result.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#include "pch-proxy.h"

static const char *const side_name[2] = { "helper", "source" };

static void set_nodelay(int fd)
{
	int one = 1;

	/* both pch ends set TCP_NODELAY: the proxy must not add Nagle delays */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int px_conn_open(struct px *px, int cfd, const char *peer)
{
	struct px_conn *c = g_new0(struct px_conn, 1);
	int d, sfd;

	c->id = px->conns->len + 1;
	c->t_accept_ns = pch_now_ns();
	c->fd[PX_HELPER] = cfd;
	c->fd[PX_SOURCE] = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	snprintf(c->name, sizeof(c->name), "unidentified");
	for (d = 0; d < 2; d++) {
		c->d[d].from = d == PX_UP ? PX_HELPER : PX_SOURCE;
		c->d[d].to = d == PX_UP ? PX_SOURCE : PX_HELPER;
		c->d[d].buf = g_malloc(PX_BUF_BYTES);
	}
	g_ptr_array_add(px->conns, c);
	c->open = true;
	px->nopen++;
	set_nodelay(cfd);

	sfd = socket(px->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sfd < 0) {
		int err = errno;

		px_conn_close(px, c, false, "socket for the target: %s", strerror(err));
		return -err;
	}
	c->fd[PX_SOURCE] = sfd;
	set_nodelay(sfd);
	if (connect(sfd, (struct sockaddr *)&px->target, px->target_len) < 0) {
		if (errno != EINPROGRESS) {
			int err = errno;

			px_conn_close(px, c, false, "connect to the target: %s", strerror(err));
			return -err;
		}
		c->connecting = true;
	}
	pch_info("conn %u: accepted from %s, connecting to the target", c->id, c->peer);
	return 0;
}

void px_conn_free(struct px_conn *c)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (c->fd[i] >= 0)
			close(c->fd[i]);
		g_free(c->d[i].buf);
	}
	g_free(c);
}

void px_conn_close(struct px *px, struct px_conn *c, bool rst, const char *fmt, ...)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	va_list ap;
	int i;

	if (!c->open)
		return;
	va_start(ap, fmt);
	vsnprintf(c->end, sizeof(c->end), fmt, ap);
	va_end(ap);
	for (i = 0; i < 2; i++) {
		if (c->fd[i] < 0)
			continue;
		if (rst)
			setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		else
			shutdown(c->fd[i], SHUT_RDWR);
		close(c->fd[i]);
		c->fd[i] = -1;
	}
	for (i = 0; i < 2; i++) {
		g_free(c->d[i].buf);
		c->d[i].buf = NULL;
		c->d[i].len = 0;
		c->d[i].qn = 0;
	}
	c->open = false;
	c->t_close_ns = pch_now_ns();
	px->nopen--;
	pch_info("%s (conn %u): closed after %.3f s: %s; source->helper %llu bytes, "
		 "helper->source %llu bytes", c->name, c->id, (c->t_close_ns - c->t_accept_ns) / 1e9,
		 c->end, (unsigned long long)c->d[PX_DOWN].out, (unsigned long long)c->d[PX_UP].out);
}

/*
 * --dump-hellos: write the 72 bytes to DIR/<conn>-<name>.bin, e.g.
 * 3-pages-1.bin or 7-control-resume.bin, for a test to replay them.
 */
static void dump_hello(const struct px *px, const struct px_conn *c)
{
	const struct pch_hello *h = &c->hello;
	g_autofree char *path = NULL, *name = g_strdup(c->name);
	g_autoptr(GError) gerr = NULL;

	g_strdelimit(name, ":", '-');
	path = g_strdup_printf("%s/%u-%s%s.bin", px->dump_dir, c->id, name,
			       c->is_pch && (h->flags & PCH_HELLO_F_RESUME) ? "-resume" : "");
	if (!g_file_set_contents(path, (const char *)h, sizeof(*h), &gerr))
		pch_warn("conn %u: --dump-hellos: %s", c->id, gerr->message);
}

/* Name c by its hello, once its first 72 bytes went by; arm its faults. */
static void identify(struct px *px, struct px_conn *c)
{
	const struct pch_hello *h = &c->hello;

	c->identified = true;
	if (h->magic != PCH_HELLO_MAGIC ||
	    (h->kind != PCH_CHAN_CONTROL && h->kind != PCH_CHAN_URGENT && h->kind != PCH_CHAN_PAGES)) {
		snprintf(c->name, sizeof(c->name), "unknown");
		pch_warn("conn %u: not a pch hello (magic 0x%08x, kind %u): relayed, no fault "
			 "applies", c->id, h->magic, h->kind);
		if (px->dump_dir)
			dump_hello(px, c);
		return;
	}
	c->is_pch = true;
	c->index = h->index;
	switch (h->kind) {
	case PCH_CHAN_CONTROL:
		c->chan = PX_CH_CONTROL;
		snprintf(c->name, sizeof(c->name), "control");
		break;
	case PCH_CHAN_URGENT:
		c->chan = PX_CH_URGENT;
		snprintf(c->name, sizeof(c->name), "urgent");
		break;
	default:
		c->chan = PX_CH_PAGES;
		snprintf(c->name, sizeof(c->name), "pages:%u", h->index);
		break;
	}
	if (px->dump_dir)
		dump_hello(px, c);
	px_fault_arm(px, c);
	pch_info("conn %u: %s (hello kind %u index %u count %u)%s", c->id, c->name, h->kind,
		 h->index, h->count, c->armed ? ", faults armed" : "");
	/* bytes=0 and ms=0 triggers fire before the source has said anything */
	px_fault_check(px, c, pch_now_ns());
}

static bool want_read(const struct px *px, const struct px_conn *c, int dir)
{
	const struct px_dir *d = &c->d[dir];

	if (!c->open || c->stalled || d->eof || d->len == PX_BUF_BYTES || d->qn == PX_MAX_CHUNKS)
		return false;
	return dir == PX_UP || px_fault_read_cap(px, c) > 0;
}

/* The oldest chunk may go out now (its delay passed, the target is up). */
static bool can_write(const struct px_conn *c, int dir, uint64_t now)
{
	const struct px_dir *d = &c->d[dir];

	if (!c->open || c->stalled || !d->len)
		return false;
	if (d->to == PX_SOURCE && c->connecting)
		return false;
	return d->q[d->qh].release_ns <= now;
}

void px_conn_events(const struct px *px, const struct px_conn *c, uint64_t now, short ev[2])
{
	int dir;

	ev[0] = ev[1] = 0;
	if (!c->open || c->stalled)
		return; /* a stalled pair is not even watched for hang-ups: a silent peer */
	if (c->connecting)
		ev[PX_SOURCE] |= POLLOUT;
	for (dir = 0; dir < 2; dir++) {
		if (want_read(px, c, dir))
			ev[c->d[dir].from] |= POLLIN | POLLRDHUP;
		if (can_write(c, dir, now))
			ev[c->d[dir].to] |= POLLOUT;
	}
}

uint64_t px_conn_next_ns(const struct px *px, const struct px_conn *c, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	int dir;

	if (!c->open)
		return next;
	if (c->connecting)
		next = c->t_accept_ns + PX_CONNECT_MS * 1000000ull;
	if (c->stalled)
		return c->stall_until_ns ? PCH_MIN(next, c->stall_until_ns) : next;
	next = PCH_MIN(next, px_fault_next_ns(px, c));
	for (dir = 0; dir < 2; dir++) {
		const struct px_dir *d = &c->d[dir];

		if (d->len && d->q[d->qh].release_ns > now)
			next = PCH_MIN(next, d->q[d->qh].release_ns);
	}
	return next;
}

void px_conn_tick(struct px *px, struct px_conn *c, uint64_t now)
{
	if (!c->open)
		return;
	if (c->connecting && now >= c->t_accept_ns + PX_CONNECT_MS * 1000000ull) {
		px_conn_close(px, c, false, "connect to the target: timed out after %d ms",
			      PX_CONNECT_MS);
		return;
	}
	if (c->stalled && c->stall_until_ns && now >= c->stall_until_ns) {
		c->stalled = false;
		pch_info("%s (conn %u): stall over, relaying again (%zu bytes buffered "
			 "source->helper, %zu helper->source)", c->name, c->id, c->d[PX_DOWN].len,
			 c->d[PX_UP].len);
	}
	px_fault_check(px, c, now);
}

/* Append n bytes just read at the tail as a chunk, delayed if c says so. */
static void queue(struct px_conn *c, struct px_dir *d, size_t n)
{
	uint64_t rel = c->delay_ns ? pch_now_ns() + c->delay_ns : 0;
	struct px_chunk *last = d->qn ? &d->q[(d->qh + d->qn - 1) % PX_MAX_CHUNKS] : NULL;

	/* keep order: never release a chunk before the one ahead of it */
	if (last && last->release_ns > rel)
		rel = last->release_ns;
	if (last && last->release_ns == rel) {
		last->len += (uint32_t)n;
	} else {
		d->q[(d->qh + d->qn) % PX_MAX_CHUNKS] = (struct px_chunk){ (uint32_t)n, rel };
		d->qn++;
	}
	d->len += n;
	d->in += n;
}

/* Read once from d's source side.  false when c was closed. */
static bool do_read(struct px *px, struct px_conn *c, int dir)
{
	struct px_dir *d = &c->d[dir];
	size_t tail = (d->head + d->len) % PX_BUF_BYTES;
	size_t room = PCH_MIN(PX_BUF_BYTES - tail, PX_BUF_BYTES - d->len);
	ssize_t n;

	if (dir == PX_DOWN)
		room = (size_t)PCH_MIN((uint64_t)room, px_fault_read_cap(px, c));
	do
		n = recv(c->fd[d->from], d->buf + tail, room, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN)
			return true;
		/* a reset is passed on as a reset */
		px_conn_close(px, c, true, "%s side: recv: %s", side_name[d->from], strerror(errno));
		return false;
	}
	if (n == 0) {
		d->eof = true;
		pch_info("%s (conn %u): %s closed its side (FIN) after %llu bytes", c->name, c->id,
			 side_name[d->from], (unsigned long long)d->in);
		return true;
	}
	if (dir == PX_UP && c->hello_got < sizeof(c->hello)) {
		size_t k = PCH_MIN((size_t)n, sizeof(c->hello) - c->hello_got);

		memcpy((char *)&c->hello + c->hello_got, d->buf + tail, k);
		c->hello_got += k;
	}
	queue(c, d, (size_t)n);
	if (dir == PX_UP && !c->identified && c->hello_got == sizeof(c->hello))
		identify(px, c);
	return c->open;
}

/* Write out what may go now.  false when c was closed. */
static bool do_write(struct px *px, struct px_conn *c, int dir)
{
	struct px_dir *d = &c->d[dir];

	while (can_write(c, dir, pch_now_ns())) {
		struct px_chunk *ch = &d->q[d->qh];
		size_t n = PCH_MIN((size_t)ch->len, PX_BUF_BYTES - d->head);
		ssize_t w;

		w = send(c->fd[d->to], d->buf + d->head, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			px_conn_close(px, c, true, "%s side: send: %s", side_name[d->to],
				      strerror(errno));
			return false;
		}
		d->head = (d->head + (size_t)w) % PX_BUF_BYTES;
		d->len -= (size_t)w;
		d->out += (uint64_t)w;
		ch->len -= (uint32_t)w;
		if (!ch->len) {
			d->qh = (d->qh + 1) % PX_MAX_CHUNKS;
			d->qn--;
		}
		if (dir == PX_DOWN) {
			px_fault_check(px, c, pch_now_ns());
			if (!c->open)
				return false;
		}
	}
	if (d->eof && !d->len && !d->shut && !c->stalled) {
		shutdown(c->fd[d->to], SHUT_WR);
		d->shut = true;
	}
	return true;
}

void px_conn_pump(struct px *px, struct px_conn *c, const short rev[2])
{
	int dir;

	if (!c->open)
		return;
	if (c->connecting) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (!(rev[PX_SOURCE] & (POLLOUT | POLLERR | POLLHUP)))
			goto relay; /* the helper's hello may already be read */
		if (getsockopt(c->fd[PX_SOURCE], SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			px_conn_close(px, c, false, "connect to the target: %s", strerror(err));
			return;
		}
		c->connecting = false;
	}
relay:
	for (dir = 0; dir < 2; dir++) {
		short r = rev[c->d[dir].from];

		if ((r & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) && want_read(px, c, dir) &&
		    !do_read(px, c, dir))
			return;
		if (!do_write(px, c, dir))
			return;
	}
	if (c->d[PX_UP].shut && c->d[PX_DOWN].shut)
		px_conn_close(px, c, false, "both sides closed");
}
