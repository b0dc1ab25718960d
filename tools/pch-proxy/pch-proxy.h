/* SPDX-License-Identifier: MIT */
/*
 * pch-proxy.h - private to pch-proxy, the fault-injection TCP proxy for
 * tests: it sits between pch-helper and pch-source, relays every channel
 * both ways, names each connection by the hello the helper sends first, and
 * cuts, stalls or delays a chosen channel at a chosen byte or time.
 *
 * One thread, one ppoll() loop.  Each connection is a pair of non-blocking
 * sockets with a fixed ring buffer per direction: a full buffer stops
 * reading (back-pressure), so the proxy never holds more than
 * 2 * PX_BUF_BYTES per connection.
 */
#ifndef PCH_PROXY_H
#define PCH_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <glib.h>

#include "pch/proto.h"

#define PX_MAX_FAULTS 32          /* --fault specs (a bitmask per connection) */
#define PX_BUF_BYTES (256u << 10) /* per direction, per connection */
#define PX_MAX_CHUNKS 64          /* delayed chunks queued per direction */
#define PX_MAX_CONNS 256          /* open connections; more are refused */
#define PX_CONNECT_MS 5000        /* to connect to the target */

/* What a fault spec names. */
enum px_chan {
	PX_CH_CONTROL,
	PX_CH_URGENT,
	PX_CH_PAGES,     /* pages:N */
	PX_CH_ANY_PAGES, /* the first PAGES channel that reaches the trigger */
};

enum px_action {
	PX_CUT,   /* shutdown(SHUT_RDWR) + close() both sockets: FIN */
	PX_RESET, /* SO_LINGER 0 + close() both sockets: RST */
	PX_STALL, /* relay nothing either way, keep both open; action_ms: then resume */
	PX_DELAY, /* hold every later chunk, both ways, action_ms before relaying it */
};

enum px_trigger {
	PX_AT_BYTES, /* once at bytes have been relayed source -> helper */
	PX_AT_MS,    /* at ms after the helper's connection was accepted */
};

/* One --fault CHANNEL:ACTION@TRIGGER. */
struct px_fault {
	char *spec; /* as given, for the log */
	enum px_chan chan;
	unsigned index; /* PX_CH_PAGES: the channel index */
	enum px_action action;
	uint64_t action_ms; /* STALL: 0 = for good; DELAY: the delay */
	enum px_trigger trigger;
	uint64_t at;      /* bytes or ms */
	unsigned nfired;  /* connections it fired on */
};

/* A run of bytes in a direction's buffer, relayed once release_ns passed. */
struct px_chunk {
	uint32_t len;
	uint64_t release_ns; /* 0: at once */
};

/* Connection sides: fd[PX_HELPER] was accepted, fd[PX_SOURCE] connected. */
enum { PX_HELPER = 0, PX_SOURCE = 1 };
/* Directions: d[PX_UP] helper -> source, d[PX_DOWN] source -> helper. */
enum { PX_UP = 0, PX_DOWN = 1 };

struct px_dir {
	int from, to; /* PX_HELPER or PX_SOURCE */
	char *buf;    /* PX_BUF_BYTES ring */
	size_t head;  /* oldest buffered byte */
	size_t len;   /* bytes buffered */
	struct px_chunk q[PX_MAX_CHUNKS]; /* the buffered bytes, in order */
	unsigned qh, qn;
	uint64_t in, out; /* bytes read from / written to the sockets */
	bool eof;         /* from sent FIN */
	bool shut;        /* FIN passed on: shutdown(to, SHUT_WR) */
};

struct px_conn {
	unsigned id; /* 1, 2, ... in accept order */
	int fd[2];
	bool open;
	bool connecting; /* to the target, non-blocking */
	uint64_t t_accept_ns, t_close_ns;
	char peer[64]; /* the helper's address */

	/* the first 72 bytes the helper sends */
	struct pch_hello hello;
	size_t hello_got;
	bool identified;
	char name[24]; /* "control", "urgent", "pages:3", "unknown" */
	enum px_chan chan; /* valid when a pch hello was seen */
	unsigned index;
	bool is_pch;

	struct px_dir d[2];

	uint32_t armed;     /* bit i: fault i may still fire here */
	uint64_t delay_ns;  /* added to every chunk read from now on */
	bool stalled;
	uint64_t stall_until_ns; /* 0: for good */
	char end[128];      /* why it closed */
};

struct px {
	struct px_fault fault[PX_MAX_FAULTS];
	unsigned nfaults;
	struct sockaddr_storage target;
	socklen_t target_len;
	const char *dump_dir; /* --dump-hellos: each connection's first 72 bytes */
	GPtrArray *conns; /* of struct px_conn *, every one ever accepted */
	unsigned nopen;
};

/* fault.c */
/*
 * Parse "CHANNEL:ACTION@TRIGGER" into f.  0, or -EINVAL with the reason in
 * why (len bytes).
 */
int px_fault_parse(const char *s, struct px_fault *f, char *why, size_t len);
/* Arm, on an identified connection, every fault that names its channel. */
void px_fault_arm(struct px *px, struct px_conn *c);
/*
 * How many more bytes may be read from the source before a bytes trigger:
 * reads stop there, so a trigger fires at its exact byte.  UINT64_MAX: no
 * limit.
 */
uint64_t px_fault_read_cap(const struct px *px, const struct px_conn *c);
/* Fire every armed fault of c whose trigger is reached at now. */
void px_fault_check(struct px *px, struct px_conn *c, uint64_t now);
/* When c's next ms trigger is due (CLOCK_MONOTONIC ns), or UINT64_MAX. */
uint64_t px_fault_next_ns(const struct px *px, const struct px_conn *c);

/* relay.c */
/*
 * Take an accepted socket: start the connection to the target, allocate
 * the buffers.  0, or -errno (cfd closed, logged).
 */
int px_conn_open(struct px *px, int cfd, const char *peer);
/* Timers: connect deadline, end of a stall, ms triggers. */
void px_conn_tick(struct px *px, struct px_conn *c, uint64_t now);
/* Poll events wanted on fd[PX_HELPER] and fd[PX_SOURCE] (0: do not poll it). */
void px_conn_events(const struct px *px, const struct px_conn *c, uint64_t now, short ev[2]);
/* When c next needs a look without socket events, or UINT64_MAX. */
uint64_t px_conn_next_ns(const struct px *px, const struct px_conn *c, uint64_t now);
/* Relay what the sockets allow, given their revents. */
void px_conn_pump(struct px *px, struct px_conn *c, const short rev[2]);
/*
 * Close both sockets: rst true sends RST (SO_LINGER 0), else FIN after
 * shutdown(SHUT_RDWR).  why is logged and kept for the summary.
 */
void px_conn_close(struct px *px, struct px_conn *c, bool rst, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Free what px_conn_open allocated (closing the sockets if still open). */
void px_conn_free(struct px_conn *c);

#endif /* PCH_PROXY_H */
