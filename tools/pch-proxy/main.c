// SPDX-License-Identifier: MIT
/*
 * pch-proxy - a fault-injection TCP proxy for tests.  The helper connects
 * to it as if it were pch-source; each connection is relayed to --target,
 * named by the hello the helper sends first (control, urgent, pages:N), and
 * cut, stalled or delayed when a --fault says so.
 *
 * Exit status: 0 after --timeout-s or on SIGTERM/SIGINT (the summary of
 * every connection is logged first), 1 when it cannot start.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "util.h"

#include "pch-proxy.h"

struct opts {
	char *listen, *port_file, *target, *log_file, *dump_dir;
	char **faults;
	uint64_t timeout_s;
};

static void free_opts(struct opts *o)
{
	g_free(o->listen);
	g_free(o->port_file);
	g_free(o->target);
	g_free(o->log_file);
	g_free(o->dump_dir);
	g_strfreev(o->faults);
}

/* Parse the command line into o and px's faults.  0, or -EINVAL after saying why. */
static int parse_opts(int argc, char **argv, struct opts *o, struct px *px)
{
	g_autofree char *timeout = NULL;
	GOptionEntry entries[] = {
		{ "listen", 'l', 0, G_OPTION_ARG_STRING, &o->listen,
		  "Listen for the helper on HOST:PORT (default 127.0.0.1:0, any port)", "HOST:PORT" },
		{ "port-file", 0, 0, G_OPTION_ARG_FILENAME, &o->port_file,
		  "Write the bound port to F (atomically) once listening", "F" },
		{ "target", 't', 0, G_OPTION_ARG_STRING, &o->target,
		  "Relay every connection to pch-source at HOST:PORT (required)", "HOST:PORT" },
		{ "fault", 'f', 0, G_OPTION_ARG_STRING_ARRAY, &o->faults,
		  "CHANNEL:ACTION@TRIGGER (repeatable); CHANNEL control|urgent|pages:N|any-pages, "
		  "ACTION cut|reset|stall|stall=MS|delay=MS, TRIGGER bytes=N|ms=N", "SPEC" },
		{ "timeout-s", 0, 0, G_OPTION_ARG_STRING, &timeout,
		  "Exit (status 0) after S seconds (default 300)", "S" },
		{ "log", 0, 0, G_OPTION_ARG_FILENAME, &o->log_file,
		  "Append the log to FILE instead of stderr", "FILE" },
		{ "dump-hellos", 0, 0, G_OPTION_ARG_FILENAME, &o->dump_dir,
		  "Write each connection's first 72 bytes (its hello) to DIR/<conn>-<channel>.bin",
		  "DIR" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx =
		g_option_context_new("- fault-injection TCP proxy between pch-helper and pch-source");
	g_autoptr(GError) gerr = NULL;
	char why[256];
	unsigned i;

	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_description(ctx,
		"Each fault fires once, on the first matching connection to reach its trigger\n"
		"(a reconnecting helper is relayed cleanly).  bytes=N counts bytes relayed source -> helper on\n"
		"that channel, the source's 72-byte ack included; ms=N counts from the accept.\n"
		"cut: shutdown + close both sides (FIN); reset: close with SO_LINGER 0 (RST);\n"
		"stall: relay nothing either way and keep both open (stall=MS: then resume);\n"
		"delay=MS: hold every later chunk, both ways, MS ms, in order.\n"
		"Example: --fault pages:1:cut@bytes=1M --fault urgent:delay=2@ms=0\n");
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "pch-proxy: %s\n", gerr->message);
		return -EINVAL;
	}
	if (argc > 1) {
		fprintf(stderr, "pch-proxy: unexpected argument '%s'\n", argv[1]);
		return -EINVAL;
	}
	if (!o->listen)
		o->listen = g_strdup("127.0.0.1:0");
	o->timeout_s = 300;
	if (!o->target) {
		fprintf(stderr, "pch-proxy: --target HOST:PORT is required\n");
		return -EINVAL;
	}
	if (timeout && pch_parse_u64(timeout, 1, 1u << 30, &o->timeout_s)) {
		fprintf(stderr, "pch-proxy: --timeout-s: expected a positive number of seconds\n");
		return -EINVAL;
	}
	for (i = 0; o->faults && o->faults[i]; i++) {
		if (i == PX_MAX_FAULTS) {
			fprintf(stderr, "pch-proxy: at most %d --fault\n", PX_MAX_FAULTS);
			return -EINVAL;
		}
		if (px_fault_parse(o->faults[i], &px->fault[i], why, sizeof(why))) {
			fprintf(stderr, "pch-proxy: --fault %s\n", why);
			return -EINVAL;
		}
		px->nfaults++;
	}
	return 0;
}

/* Resolve --target once, into px->target.  0 or -errno (said why). */
static int resolve_target(struct px *px, const char *target)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	char host[256], port[8];
	uint16_t p;
	int rc;

	if (pch_parse_hostport(target, host, sizeof(host), &p) || !p) {
		pch_err("--target %s: expected HOST:PORT", target);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", p);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		pch_err("--target %s: %s", target, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	/* the first address only: a test proxy has one target it knows */
	memcpy(&px->target, res->ai_addr, res->ai_addrlen);
	px->target_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Listen, and publish the port.  The listening fd, or -errno (said why). */
static int setup_listener(const struct opts *o)
{
	g_autoptr(GError) gerr = NULL;
	char host[256], text[16];
	uint16_t port, bound;
	int fd;

	if (pch_parse_hostport(o->listen, host, sizeof(host), &port)) {
		pch_err("--listen %s: expected HOST:PORT", o->listen);
		return -EINVAL;
	}
	fd = pch_tcp_listen(host, port, &bound);
	if (fd < 0) {
		pch_err("listen on %s: %s", o->listen, strerror(-fd));
		return fd;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (o->port_file) {
		/* a temp file renamed over the path; no newline, as pch-source's */
		snprintf(text, sizeof(text), "%u", bound);
		if (!g_file_set_contents(o->port_file, text, -1, &gerr)) {
			pch_err("port file %s: %s", o->port_file, gerr->message);
			close(fd);
			return -EIO;
		}
	}
	pch_info(strchr(host, ':') ? "listening on [%s]:%u, relaying to %s" :
				     "listening on %s:%u, relaying to %s", host, bound, o->target);
	return fd;
}

/* SIGINT/SIGTERM arrive on a signalfd the loop polls.  fd or -errno. */
static int setup_signals(void)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0) {
		pch_err("signalfd: %s", strerror(errno));
		return -errno;
	}
	return fd;
}

static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	snprintf(buf, len, "%s:%u", host, port);
}

/* Take every pending connection; beyond PX_MAX_CONNS open, refuse (close). */
static void accept_all(struct px *px, int lfd)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[64];
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				pch_warn("accept: %s", strerror(errno));
			if (errno != EINTR && errno != ECONNABORTED)
				return;
			continue;
		}
		peer_text(&ss, peer, sizeof(peer));
		if (px->nopen >= PX_MAX_CONNS) {
			pch_warn("refusing %s: %d connections open already", peer, PX_MAX_CONNS);
			close(fd);
			continue;
		}
		px_conn_open(px, fd, peer);
	}
}

/* Bytes relayed per connection, and what each fault did: the exit summary. */
static void summary(struct px *px, const char *why)
{
	guint i;

	pch_info("exiting (%s): %u connections", why, px->conns->len);
	for (i = 0; i < px->conns->len; i++) {
		struct px_conn *c = px->conns->pdata[i];

		pch_info("summary: conn %u %s: source->helper %llu bytes, helper->source %llu "
			 "bytes; %s", c->id, c->name, (unsigned long long)c->d[PX_DOWN].out,
			 (unsigned long long)c->d[PX_UP].out,
			 c->open ? (c->stalled ? "open, stalled" : "open") : c->end);
	}
	for (i = 0; i < px->nfaults; i++)
		pch_info("summary: fault %s: fired %u time%s", px->fault[i].spec,
			 px->fault[i].nfired, px->fault[i].nfired == 1 ? "" : "s");
}

/*
 * The loop: poll the signalfd, the listener and every open connection, with
 * a timeout at the nearest timer (delayed chunk, stall end, ms trigger,
 * connect deadline, --timeout-s).  Returns why it ended.
 */
static const char *run(struct px *px, int lfd, int sfd, uint64_t deadline)
{
	GArray *pfd = g_array_new(FALSE, FALSE, sizeof(struct pollfd));
	GPtrArray *owner = g_ptr_array_new(); /* conn of pfd[2 + 2k] and [3 + 2k] */
	const char *why = NULL;

	while (!why) {
		uint64_t now = pch_now_ns(), next = deadline;
		struct pollfd p;
		struct timespec ts;
		guint i;
		int n;

		if (now >= deadline) {
			why = "timeout";
			break;
		}
		g_array_set_size(pfd, 0);
		g_ptr_array_set_size(owner, 0);
		p = (struct pollfd){ .fd = sfd, .events = POLLIN };
		g_array_append_val(pfd, p);
		p = (struct pollfd){ .fd = px->nopen < PX_MAX_CONNS ? lfd : -1, .events = POLLIN };
		g_array_append_val(pfd, p);
		for (i = 0; i < px->conns->len; i++) {
			struct px_conn *c = px->conns->pdata[i];
			short ev[2];
			int s;

			px_conn_tick(px, c, now);
			if (!c->open)
				continue;
			px_conn_events(px, c, now, ev);
			for (s = 0; s < 2; s++) {
				/* nothing wanted: not polled, so a hang-up cannot spin us */
				p = (struct pollfd){ .fd = ev[s] ? c->fd[s] : -1, .events = ev[s] };
				g_array_append_val(pfd, p);
			}
			g_ptr_array_add(owner, c);
			next = PCH_MIN(next, px_conn_next_ns(px, c, now));
		}
		now = pch_now_ns();
		next = next > now ? next - now : 0;
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		n = ppoll((struct pollfd *)pfd->data, pfd->len, &ts, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			pch_err("poll: %s", strerror(errno));
			why = "poll failed";
			break;
		}
		if (g_array_index(pfd, struct pollfd, 0).revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				why = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
			continue;
		}
		for (i = 0; i < owner->len; i++) {
			struct pollfd *pp = &g_array_index(pfd, struct pollfd, 2 + 2 * i);
			short rev[2] = { pp[0].revents, pp[1].revents };

			px_conn_pump(px, owner->pdata[i], rev);
		}
		if (g_array_index(pfd, struct pollfd, 1).revents)
			accept_all(px, lfd);
	}
	g_array_free(pfd, TRUE);
	g_ptr_array_free(owner, TRUE);
	return why;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct px px = { 0 };
	int lfd = -1, sfd = -1, rc = 1;
	const char *why;
	guint i;

	pch_log_init("pch-proxy", PCH_LOG_INFO, 0);
	px.conns = g_ptr_array_new();
	if (parse_opts(argc, argv, &o, &px))
		goto out;
	if (o.log_file) {
		int fd = open(o.log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
			fprintf(stderr, "pch-proxy: --log %s: %s\n", o.log_file, strerror(errno));
			goto out;
		}
		close(fd);
	}
	px.dump_dir = o.dump_dir;
	if (resolve_target(&px, o.target))
		goto out;
	sfd = setup_signals();
	if (sfd < 0)
		goto out;
	lfd = setup_listener(&o);
	if (lfd < 0)
		goto out;
	for (i = 0; i < px.nfaults; i++)
		pch_info("fault %s armed", px.fault[i].spec);
	why = run(&px, lfd, sfd, pch_now_ns() + o.timeout_s * 1000000000ull);
	summary(&px, why);
	rc = strcmp(why, "poll failed") ? 0 : 1;
out:
	if (lfd >= 0)
		close(lfd);
	if (sfd >= 0)
		close(sfd);
	for (i = 0; i < px.conns->len; i++)
		px_conn_free(px.conns->pdata[i]);
	g_ptr_array_free(px.conns, TRUE);
	for (i = 0; i < px.nfaults; i++)
		g_free(px.fault[i].spec);
	free_opts(&o);
	return rc;
}
