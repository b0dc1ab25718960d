// SPDX-License-Identifier: MIT
/*
 * accept.c - the listener and the channel handshakes.
 *
 * Channels may connect in any order, and each one says what it is in its
 * hello, so a connection is placed by its hello alone.  The listener runs
 * for the whole session: a late, duplicate or unauthenticated connection is
 * refused with a reason and never touches the running migration.  Each
 * handshake gets its own short-lived thread so a silent connection cannot
 * hold up the others.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "util.h"
#include "source_i.h"

struct handshake {
	struct src *src;
	int fd;
	char peer[64];
};

static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Send a refusal, log it once, count it by reason, close the connection. */
static void refuse(struct src *s, int fd, const char *peer, int reason, const char *why)
{
	struct pch_refuse r;

	if (reason <= 0 || reason >= PCH_REFUSE_MAX)
		reason = PCH_REFUSE_MAGIC_BAD; /* the codec always sets one; be safe */
	pch_refuse_build(&r, reason, why);
	/* best effort: a rogue peer that does not read must not hold us */
	pch_write_full(fd, &r, sizeof(r), 1000);
	pch_warn("refused channel from %s: %s: %s", peer, pch_refuse_name(reason), why);
	pthread_mutex_lock(&s->lock);
	s->refused[reason]++;
	pthread_mutex_unlock(&s->lock);
	close(fd);
}

static unsigned hello_slot(const struct pch_hello_params *p)
{
	switch (p->kind) {
	case PCH_CHAN_CONTROL:
		return SRC_SLOT_CONTROL;
	case PCH_CHAN_URGENT:
		return SRC_SLOT_URGENT;
	default: /* PAGES; pch_hello_check refused other kinds, checked index */
		return SRC_SLOT_PAGES0 + p->index;
	}
}

/* Read, check and answer one hello; on success the channel fills its slot. */
static void handshake(struct src *s, int fd, const char *peer)
{
	struct pch_hello_params p;
	struct pch_hello h;
	struct src_chan *ch;
	const char *why = "?";
	char text[64];
	int reason = 0, one = 1, ret;

	ret = pch_read_full(fd, &h, sizeof(h), s->opt.handshake_timeout_ms);
	if (ret) {
		if (ret == -ETIMEDOUT)
			pch_warn("channel from %s: no hello within %d ms, closed", peer,
				 s->opt.handshake_timeout_ms);
		else
			pch_warn("channel from %s: %s before its hello", peer,
				 ret == -ECONNRESET ? "closed" : strerror(-ret));
		pthread_mutex_lock(&s->lock);
		s->handshake_failed++;
		pthread_mutex_unlock(&s->lock);
		close(fd);
		return;
	}

	if (pch_hello_check(&h, &s->sess, false, &p, &reason, &why)) {
		refuse(s, fd, peer, reason, why);
		return;
	}
	if (p.count != s->opt.channels) {
		snprintf(text, sizeof(text), "channel count %u, expected %u", p.count,
			 s->opt.channels);
		refuse(s, fd, peer, PCH_REFUSE_INDEX, text);
		return;
	}
	if (p.page_size != s->be.page_size) {
		snprintf(text, sizeof(text), "page size %u, expected %u", p.page_size,
			 s->be.page_size);
		refuse(s, fd, peer, PCH_REFUSE_PAGE_SIZE, text);
		return;
	}

	ch = &s->chans[hello_slot(&p)];
	pthread_mutex_lock(&s->lock);
	if ((p.flags & PCH_HELLO_F_RESUME) && ch->state == SLOT_READY) {
		/*
		 * The helper comes back while we still hold its old channels
		 * (a cut that sent us no reset): end that session, then take
		 * this CONTROL in the new one (docs/protocol.md 5.8).
		 */
		uint64_t until = pch_now_ns() + (uint64_t)s->opt.handshake_timeout_ms * 1000000ull;

		pthread_mutex_unlock(&s->lock);
		src_lost(s, "CONTROL: the helper resumes the session from %s", peer);
		pthread_mutex_lock(&s->lock);
		while (ch->state == SLOT_READY && !src_exiting(s) && pch_now_ns() < until) {
			struct timespec ts = { 0, 10 * 1000000l };

			pthread_mutex_unlock(&s->lock);
			nanosleep(&ts, NULL);
			pthread_mutex_lock(&s->lock);
		}
	}
	if (ch->state != SLOT_FREE) {
		pthread_mutex_unlock(&s->lock);
		snprintf(text, sizeof(text), "%s is already connected", ch->name);
		refuse(s, fd, peer, PCH_REFUSE_DUPLICATE, text);
		return;
	}
	/* held while we answer, so a twin arriving meanwhile is a duplicate */
	ch->state = SLOT_PENDING;
	pthread_mutex_unlock(&s->lock);

	/* fault answers are small and latency-bound */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pch_hello_build(&h, &p, &s->sess, true);
	ret = pch_write_full(fd, &h, sizeof(h), s->opt.handshake_timeout_ms);
	if (ret) {
		pch_warn("%s from %s: sending the ack: %s", ch->name, peer, strerror(-ret));
		pthread_mutex_lock(&s->lock);
		ch->state = SLOT_FREE;
		pthread_mutex_unlock(&s->lock);
		close(fd);
		return;
	}

	pthread_mutex_lock(&s->lock);
	if (src_exiting(s)) {
		/* the session ended while we answered: the slot is not ours now */
		pthread_mutex_unlock(&s->lock);
		close(fd);
		return;
	}
	ch->fd = fd;
	snprintf(ch->peer, sizeof(ch->peer), "%s", peer);
	ch->state = SLOT_READY;
	s->nready++;
	pthread_mutex_unlock(&s->lock);
	pch_info("%s connected from %s", ch->name, peer);
	src_wake(s);
}

static void *handshake_main(void *arg)
{
	struct handshake *hs = arg;
	struct src *s = hs->src;

	pch_thread_name("pch-hello");
	handshake(s, hs->fd, hs->peer);
	pthread_mutex_lock(&s->lock);
	s->nhandshakes--;
	pthread_mutex_unlock(&s->lock);
	free(hs);
	return NULL;
}

/* Hand a new connection to a handshake thread, or refuse it as busy. */
static void dispatch(struct src *s, int fd)
{
	pthread_attr_t attr;
	struct handshake *hs;
	pthread_t t;
	char peer[64];
	bool busy;
	int ret;

	peer_name(fd, peer, sizeof(peer));
	pthread_mutex_lock(&s->lock);
	busy = s->nhandshakes >= SRC_MAX_HANDSHAKES;
	if (!busy)
		s->nhandshakes++;
	pthread_mutex_unlock(&s->lock);
	if (busy) {
		refuse(s, fd, peer, PCH_REFUSE_BUSY, "too many handshakes in progress");
		return;
	}

	hs = calloc(1, sizeof(*hs));
	ret = ENOMEM;
	if (hs) {
		hs->src = s;
		hs->fd = fd;
		memcpy(hs->peer, peer, sizeof(peer));
		/* detached: nobody waits for a handshake; it ends by its deadline */
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ret = pthread_create(&t, &attr, handshake_main, hs);
		pthread_attr_destroy(&attr);
		if (!ret)
			return;
	}
	pch_warn("channel from %s: no handshake thread: %s, closed", peer, strerror(ret));
	free(hs);
	close(fd);
	pthread_mutex_lock(&s->lock);
	s->nhandshakes--;
	s->handshake_failed++;
	pthread_mutex_unlock(&s->lock);
}

static void *accept_main(void *arg)
{
	struct src *s = arg;

	pch_thread_name("pch-accept");
	while (!src_exiting(s)) {
		int fd = pch_accept(s->lfd, SRC_TICK_MS * 2);

		if (fd >= 0) {
			dispatch(s, fd);
		} else if (src_exiting(s)) {
			break;
		} else if (fd != -ETIMEDOUT && fd != -EINTR && fd != -ECONNABORTED) {
			/* EMFILE and friends: say so, back off, keep serving */
			struct timespec ts = { 0, SRC_TICK_MS * 1000000l };

			pch_warn("accept on the listener: %s", strerror(-fd));
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* Start the accept loop on s->lfd.  Returns 0 or -errno (not logged). */
int src_accept_start(struct src *s)
{
	int ret = pthread_create(&s->accept_thread, NULL, accept_main, s);

	if (ret)
		return -ret;
	s->accept_started = true;
	return 0;
}
