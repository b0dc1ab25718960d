// SPDX-License-Identifier: MIT
/*
 * accept.c - the listener and the channel handshakes.
 *
 * Channels may connect in any order, and each one says what it is in its
 * hello, so a connection is placed by its hello alone.  The listener runs
 * for the whole session: a late, duplicate or unauthenticated connection is
 * refused with a reason and never touches the running migration.
 *
 * One thread runs one poll() loop over the listener and a table of at most
 * SRC_MAX_HALF_OPEN connections whose hello has not been handled yet
 * (half-open).  Every socket is read and written without blocking
 * (MSG_DONTWAIT), and each connection has its own deadline counted from its
 * accept, which bytes trickling in do not extend (slowloris).  When the
 * table is full, a new connection evicts the one that has waited longest:
 * a real helper sends its whole hello with the connection, so its
 * handshake ends at once, while a flood of idle or trickling connections
 * only evicts itself.  Log lines about refused, silent and evicted
 * connections are rate-limited per kind; the counters count every one.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

/* Connections taken off the listener per loop round, so reads keep up. */
#define ACCEPT_BURST 16
/* How often a RESUME hello looks whether the old CONTROL was dropped. */
#define RESUME_POLL_MS 10
/* Log lines per kind per second; then one line says how many were not. */
#define LOG_PER_SEC 10

/* What a rate-limited log line is about: a refusal reason, or these. */
enum { LOG_TIMEOUT = PCH_REFUSE_MAX, LOG_CLOSED, LOG_EVICTED, LOG_KINDS };

struct log_limit {
	uint64_t window_ns; /* start of the current one-second window */
	unsigned n;         /* lines logged in it */
	uint64_t suppressed; /* lines not logged in it */
};

enum hs_state {
	HS_FREE = 0,    /* table entry unused */
	HS_READING,     /* reading the hello */
	HS_RESUME_WAIT, /* an authenticated RESUME hello waits for the old CONTROL to go */
};

/* A connection whose hello is not handled yet. */
struct hs {
	enum hs_state state;
	int fd;
	uint64_t t_accept_ns;
	uint64_t deadline_ns; /* reading: from the accept; RESUME wait: from the hello */
	size_t got;           /* hello bytes read */
	struct pch_hello h;
	struct pch_hello_params p; /* valid in HS_RESUME_WAIT */
	char peer[64];
};

struct hs_table {
	struct hs *e;
	unsigned cap, n;
	struct log_limit lim[LOG_KINDS];
};

static const char *log_kind_name(int kind)
{
	switch (kind) {
	case LOG_TIMEOUT:
		return "no hello in time";
	case LOG_CLOSED:
		return "closed before its hello";
	case LOG_EVICTED:
		return "evicted";
	default:
		return pch_refuse_name(kind);
	}
}

/* Say how many lines of kind were suppressed in its window, if any. */
static void log_flush(struct hs_table *t, int kind, uint64_t now)
{
	struct log_limit *l = &t->lim[kind];

	if (!l->suppressed)
		return;
	pch_warn("handshakes: %llu more '%s' lines suppressed in the last %.1f s",
		 (unsigned long long)l->suppressed, log_kind_name(kind),
		 (now - l->window_ns) / 1e9);
	l->suppressed = 0;
}

/* May a line of this kind be logged now?  At most LOG_PER_SEC a second. */
static bool log_ok(struct hs_table *t, int kind, uint64_t now)
{
	struct log_limit *l = &t->lim[kind];

	if (now - l->window_ns >= 1000000000ull) {
		log_flush(t, kind, now);
		l->window_ns = now;
		l->n = 0;
	}
	if (l->n < LOG_PER_SEC) {
		l->n++;
		return true;
	}
	l->suppressed++;
	return false;
}

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

/* Free a table entry (its fd already closed or handed over). */
static void hs_release(struct src *s, struct hs_table *t, struct hs *c)
{
	c->state = HS_FREE;
	c->fd = -1;
	t->n--;
	pthread_mutex_lock(&s->lock);
	s->nhandshakes = t->n;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Send a refusal without waiting (72 bytes fit in any fresh socket's send
 * buffer; a peer that does not read cannot hold us), log it once, count it
 * by reason, close the connection.
 */
static void refuse_fd(struct src *s, struct hs_table *t, int fd, const char *peer, int reason,
		      const char *why)
{
	struct pch_refuse r;

	if (reason <= 0 || reason >= PCH_REFUSE_MAX)
		reason = PCH_REFUSE_MAGIC_BAD; /* the codec always sets one; be safe */
	pch_refuse_build(&r, reason, why);
	if (send(fd, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* best effort: the peer may be gone already */
	}
	if (log_ok(t, reason, pch_now_ns()))
		pch_warn("refused channel from %s: %s: %s", peer, pch_refuse_name(reason), why);
	pthread_mutex_lock(&s->lock);
	s->refused[reason]++;
	pthread_mutex_unlock(&s->lock);
	close(fd);
}

static void refuse(struct src *s, struct hs_table *t, struct hs *c, int reason, const char *why)
{
	refuse_fd(s, t, c->fd, c->peer, reason, why);
	hs_release(s, t, c);
}

/* Close a connection that never delivered its hello; count it by kind. */
static void hs_fail(struct src *s, struct hs_table *t, struct hs *c, int kind)
{
	pthread_mutex_lock(&s->lock);
	s->handshake_failed++;
	if (kind == LOG_TIMEOUT)
		s->handshake_timeouts++;
	else if (kind == LOG_EVICTED)
		s->handshake_evicted++;
	pthread_mutex_unlock(&s->lock);
	close(c->fd);
	hs_release(s, t, c);
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

/*
 * Check 3 of docs/protocol.md 2.1 and what follows: take the channel's
 * slot if it is free, write the ack, hand the connection to the session.
 */
/*
 * A channel that is not CONTROL while the session waits for a resuming
 * CONTROL: a late connection of the lost set (the helper went on connecting
 * after CONTROL broke).  Taken, it would fill a slot the resume needs
 * ('duplicate channel'); closed without an ack, it reads as a reset to that
 * helper, which retries the whole set as a resume.  Called with s->lock
 * held; drops it.
 */
static void stale_channel(struct src *s, struct hs_table *t, struct hs *c,
			  const struct src_chan *ch)
{
	s->stale_channels++;
	pthread_mutex_unlock(&s->lock);
	if (log_ok(t, LOG_CLOSED, pch_now_ns()))
		pch_warn("%s from %s: closed without an ack: the session is paused and no "
			 "CONTROL has resumed it (a late channel of the lost connections)",
			 ch->name, c->peer);
	close(c->fd);
	hs_release(s, t, c);
}

static void hs_place(struct src *s, struct hs_table *t, struct hs *c)
{
	struct src_chan *ch = &s->chans[hello_slot(&c->p)];
	struct pch_hello ack;
	char text[64];
	int one = 1;
	ssize_t n;

	pthread_mutex_lock(&s->lock);
	if (s->await_control && c->p.kind != PCH_CHAN_CONTROL) {
		stale_channel(s, t, c, ch);
		return;
	}
	if (ch->state != SLOT_FREE) {
		pthread_mutex_unlock(&s->lock);
		snprintf(text, sizeof(text), "%s is already connected", ch->name);
		refuse(s, t, c, PCH_REFUSE_DUPLICATE, text);
		return;
	}
	/* held while we answer, so a twin arriving meanwhile is a duplicate */
	ch->state = SLOT_PENDING;
	pthread_mutex_unlock(&s->lock);

	/* fault answers are small and latency-bound */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pch_hello_build(&ack, &c->p, &s->sess, true);
	/* 72 bytes into a socket nothing was written on: taken at once, or never */
	n = send(c->fd, &ack, sizeof(ack), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n != (ssize_t)sizeof(ack)) {
		pch_warn("%s from %s: sending the ack: %s", ch->name, c->peer,
			 n < 0 ? strerror(errno) : "short write");
		pthread_mutex_lock(&s->lock);
		ch->state = SLOT_FREE;
		pthread_mutex_unlock(&s->lock);
		close(c->fd);
		hs_release(s, t, c);
		return;
	}

	pthread_mutex_lock(&s->lock);
	if (src_exiting(s)) {
		/* the session ended while we answered: the slot is not ours now */
		pthread_mutex_unlock(&s->lock);
		close(c->fd);
		hs_release(s, t, c);
		return;
	}
	if (s->await_control && c->p.kind != PCH_CHAN_CONTROL) {
		/* the session was lost while we acked it */
		ch->state = SLOT_FREE;
		stale_channel(s, t, c, ch);
		return;
	}
	if (c->p.kind == PCH_CHAN_CONTROL)
		s->await_control = false;
	ch->fd = c->fd;
	snprintf(ch->peer, sizeof(ch->peer), "%s", c->peer);
	ch->state = SLOT_READY;
	s->nready++;
	pthread_mutex_unlock(&s->lock);
	pch_info("%s connected from %s", ch->name, c->peer);
	hs_release(s, t, c);
	src_wake(s);
}

/* A whole hello arrived: check it and answer, or start a RESUME wait. */
static void hs_hello(struct src *s, struct hs_table *t, struct hs *c, uint64_t now)
{
	struct pch_hello_params *p = &c->p;
	const char *why = "?";
	struct src_chan *ch;
	char text[64];
	bool held;
	int reason = 0;

	if (pch_hello_check(&c->h, &s->sess, false, p, &reason, &why)) {
		refuse(s, t, c, reason, why);
		return;
	}
	/*
	 * The authenticator verified: the hello was made with the key, now or
	 * earlier.  A nonce seen before means a copy of an earlier hello, e.g.
	 * captured off the wire; refused before it can take a slot or, flagged
	 * RESUME, end the live session.  Every verified nonce is recorded,
	 * whatever happens to its hello next.
	 */
	switch (pch_nonce_set_add(&s->nonces, p->nonce)) {
	case 0:
		break;
	case -EEXIST:
		snprintf(text, sizeof(text), "%s hello: nonce %016llx seen before",
			 pch_chan_kind_name(p->kind), (unsigned long long)p->nonce);
		refuse(s, t, c, PCH_REFUSE_REPLAY, text);
		return;
	default:
		/* never forget a nonce: that would make its hello replayable */
		snprintf(text, sizeof(text), "replay cache full (%u hellos)", SRC_REPLAY_CACHE);
		refuse(s, t, c, PCH_REFUSE_REPLAY, text);
		return;
	}
	if (p->count != s->opt.channels) {
		snprintf(text, sizeof(text), "channel count %u, expected %u", p->count,
			 s->opt.channels);
		refuse(s, t, c, PCH_REFUSE_INDEX, text);
		return;
	}
	if (p->page_size != s->be.page_size) {
		snprintf(text, sizeof(text), "page size %u, expected %u", p->page_size,
			 s->be.page_size);
		refuse(s, t, c, PCH_REFUSE_PAGE_SIZE, text);
		return;
	}

	ch = &s->chans[hello_slot(p)];
	pthread_mutex_lock(&s->lock);
	held = ch->state == SLOT_READY;
	pthread_mutex_unlock(&s->lock);
	if ((p->flags & PCH_HELLO_F_RESUME) && held) {
		/*
		 * The helper comes back while we still hold its old channels
		 * (a cut that sent us no reset): end that session, then take
		 * this CONTROL in the new one (docs/protocol.md 5.8).  The loop
		 * looks every RESUME_POLL_MS, up to the handshake deadline.
		 */
		src_lost(s, "CONTROL: the helper resumes the session from %s", c->peer);
		c->state = HS_RESUME_WAIT;
		c->deadline_ns = now + (uint64_t)s->opt.handshake_timeout_ms * 1000000ull;
		return;
	}
	hs_place(s, t, c);
}

/* The old CONTROL is gone, or the wait is over: go on with check 3. */
static void hs_resume_tick(struct src *s, struct hs_table *t, struct hs *c, uint64_t now)
{
	bool held;

	pthread_mutex_lock(&s->lock);
	held = s->chans[SRC_SLOT_CONTROL].state == SLOT_READY;
	pthread_mutex_unlock(&s->lock);
	if (held && !src_exiting(s) && now < c->deadline_ns)
		return;
	hs_place(s, t, c);
}

/* Read what the peer sent of its hello, without waiting. */
static void hs_read(struct src *s, struct hs_table *t, struct hs *c, uint64_t now)
{
	for (;;) {
		ssize_t n = recv(c->fd, (char *)&c->h + c->got, sizeof(c->h) - c->got,
				 MSG_DONTWAIT);

		if (n > 0) {
			c->got += (size_t)n;
			if (c->got == sizeof(c->h)) {
				hs_hello(s, t, c, now);
				return;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (log_ok(t, LOG_CLOSED, now))
			pch_warn("channel from %s: %s after %zu of %zu hello bytes", c->peer,
				 n == 0 || errno == ECONNRESET ? "closed" : strerror(errno), c->got,
				 sizeof(c->h));
		hs_fail(s, t, c, LOG_CLOSED);
		return;
	}
}

/*
 * Make room for a new connection in a full table: close the connection
 * still reading its hello that has waited longest, with a BUSY refusal (a
 * real helper evicted by a flood retries BUSY).  An authenticated RESUME
 * hello waiting for the old CONTROL is never evicted.  The freed entry, or
 * NULL when every entry is such a wait.
 */
static struct hs *hs_evict(struct src *s, struct hs_table *t, uint64_t now)
{
	struct hs *old = NULL;
	struct pch_refuse r;
	unsigned i;

	for (i = 0; i < t->cap; i++)
		if (t->e[i].state == HS_READING &&
		    (!old || t->e[i].t_accept_ns < old->t_accept_ns))
			old = &t->e[i];
	if (!old)
		return NULL;
	pch_refuse_build(&r, PCH_REFUSE_BUSY, "evicted: too many connections in handshake");
	if (send(old->fd, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* best effort: an attacker does not read it */
	}
	if (log_ok(t, LOG_EVICTED, now))
		pch_warn("channel from %s: evicted after %llu ms with %zu of %zu hello bytes: "
			 "%u connections in handshake", old->peer,
			 (unsigned long long)((now - old->t_accept_ns) / 1000000), old->got,
			 sizeof(old->h), t->cap);
	hs_fail(s, t, old, LOG_EVICTED);
	return old;
}

/* Take a new connection into the table, evicting the oldest if it is full. */
static void hs_add(struct src *s, struct hs_table *t, int fd, uint64_t now)
{
	char peer[64];
	struct hs *c = NULL;
	unsigned i;

	peer_name(fd, peer, sizeof(peer));
	pthread_mutex_lock(&s->lock);
	s->connections++;
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < t->cap && !c; i++)
		if (t->e[i].state == HS_FREE)
			c = &t->e[i];
	if (!c)
		c = hs_evict(s, t, now);
	if (!c) {
		refuse_fd(s, t, fd, peer, PCH_REFUSE_BUSY, "too many RESUME hellos waiting");
		return;
	}
	memset(c, 0, sizeof(*c));
	c->state = HS_READING;
	c->fd = fd;
	c->t_accept_ns = now;
	c->deadline_ns = now + (uint64_t)s->opt.handshake_timeout_ms * 1000000ull;
	memcpy(c->peer, peer, sizeof(peer));
	t->n++;
	pthread_mutex_lock(&s->lock);
	s->nhandshakes = t->n;
	s->half_open_max = PCH_MAX(s->half_open_max, t->n);
	pthread_mutex_unlock(&s->lock);
	/* a real peer sends its hello with the connection: often it is here */
	hs_read(s, t, c, now);
}

/* Accept what the listener has, at most ACCEPT_BURST connections. */
static void accept_some(struct src *s, struct hs_table *t)
{
	unsigned k;

	for (k = 0; k < ACCEPT_BURST; k++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd >= 0) {
			hs_add(s, t, fd, pch_now_ns());
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && !src_exiting(s)) {
			/* EMFILE and friends: say so, back off, keep serving */
			struct timespec ts = { 0, SRC_TICK_MS * 1000000l };

			pch_warn("accept on the listener: %s", strerror(errno));
			nanosleep(&ts, NULL);
		}
		return;
	}
}

/*
 * Deadlines, RESUME waits and the rate limiter's summaries; the poll
 * timeout until the next of them.
 */
static int hs_timers(struct src *s, struct hs_table *t, uint64_t now)
{
	uint64_t next = now + SRC_TICK_MS * 2 * 1000000ull;
	unsigned i;

	for (i = 0; i < LOG_KINDS; i++) {
		struct log_limit *l = &t->lim[i];

		if (!l->suppressed)
			continue;
		if (now - l->window_ns >= 1000000000ull) {
			log_flush(t, (int)i, now);
			l->window_ns = now;
			l->n = 0;
		} else {
			next = PCH_MIN(next, l->window_ns + 1000000000ull);
		}
	}
	for (i = 0; i < t->cap; i++) {
		struct hs *c = &t->e[i];

		if (c->state == HS_READING && now >= c->deadline_ns) {
			if (log_ok(t, LOG_TIMEOUT, now))
				pch_warn("channel from %s: no hello within %d ms (%zu of %zu bytes), "
					 "closed", c->peer, s->opt.handshake_timeout_ms, c->got,
					 sizeof(c->h));
			hs_fail(s, t, c, LOG_TIMEOUT);
		} else if (c->state == HS_RESUME_WAIT) {
			hs_resume_tick(s, t, c, now);
		}
		if (c->state == HS_READING)
			next = PCH_MIN(next, c->deadline_ns);
		else if (c->state == HS_RESUME_WAIT)
			next = PCH_MIN(next, now + RESUME_POLL_MS * 1000000ull);
	}
	return next > now ? (int)PCH_DIV_ROUND_UP(next - now, 1000000ull) : 0;
}

static void *accept_main(void *arg)
{
	struct src *s = arg;
	struct hs_table t = { .cap = SRC_MAX_HALF_OPEN };
	struct pollfd *pfd;
	unsigned *idx, i;

	pch_thread_name("pch-accept");
	t.e = calloc(t.cap, sizeof(*t.e));
	pfd = calloc(t.cap + 1, sizeof(*pfd));
	idx = calloc(t.cap + 1, sizeof(*idx));
	if (!t.e || !pfd || !idx) {
		src_fail(s, "accept loop: %s", strerror(ENOMEM));
		goto out;
	}
	for (i = 0; i < t.cap; i++)
		t.e[i].fd = -1;
	if (pch_nonce_set_init(&s->nonces, SRC_REPLAY_CACHE)) {
		src_fail(s, "accept loop: replay cache: %s", strerror(ENOMEM));
		goto out;
	}

	while (!src_exiting(s)) {
		uint64_t now = pch_now_ns();
		unsigned n = 0;
		int ms, ret;

		ms = hs_timers(s, &t, now);
		pfd[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (i = 0; i < t.cap; i++) {
			if (t.e[i].state != HS_READING)
				continue;
			idx[n] = i;
			pfd[n++] = (struct pollfd){ .fd = t.e[i].fd, .events = POLLIN };
		}
		ret = poll(pfd, n, ms);
		if (ret < 0 && errno != EINTR) {
			src_fail(s, "accept loop: poll: %s", strerror(errno));
			break;
		}
		if (ret <= 0 || src_exiting(s))
			continue;
		now = pch_now_ns();
		for (i = 1; i < n; i++)
			if (pfd[i].revents && t.e[idx[i]].state == HS_READING)
				hs_read(s, &t, &t.e[idx[i]], now);
		if (pfd[0].revents)
			accept_some(s, &t);
	}
	/* the session is over: what is still in handshake is closed unanswered */
	for (i = 0; t.e && i < t.cap; i++)
		if (t.e[i].state != HS_FREE) {
			close(t.e[i].fd);
			hs_release(s, &t, &t.e[i]);
		}
	for (i = 0; i < LOG_KINDS; i++)
		log_flush(&t, (int)i, pch_now_ns());
out:
	pch_nonce_set_free(&s->nonces);
	free(t.e);
	free(pfd);
	free(idx);
	return NULL;
}

/* Start the accept loop on s->lfd.  Returns 0 or -errno (not logged). */
int src_accept_start(struct src *s)
{
	int fl = fcntl(s->lfd, F_GETFL), ret;

	/* poll says when; accept4 must not block if the peer went meanwhile */
	if (fl < 0 || fcntl(s->lfd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	/*
	 * A deeper backlog than pch_tcp_listen's 128: in a flood, the helper's
	 * connections wait there (the loop takes them in bursts) rather than
	 * have their SYNs dropped and retried a second later.
	 */
	listen(s->lfd, SOMAXCONN);
	ret = pthread_create(&s->accept_thread, NULL, accept_main, s);
	if (ret)
		return -ret;
	s->accept_started = true;
	return 0;
}
