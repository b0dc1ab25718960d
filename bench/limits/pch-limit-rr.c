// SPDX-License-Identifier: MIT
/*
 * pch-limit-rr - 16-byte request / 4 KiB reply round trip over loopback TCP.
 *
 * The network half of a remote fault: a client process sends a 16-byte
 * request (like pch-helper's urgent page request) and waits for a 4 KiB
 * reply (the page) from a server process, one at a time, over one
 * TCP_NODELAY connection on 127.0.0.1.  Each round trip is timed in the
 * client from before its send to after the last reply byte.
 *
 * Output: one JSON object, e.g.
 *   {"probe":"rr_16b_4k","p50_us":18.4,"p99_us":66,"p999_us":..,"max_us":..,
 *    "count":..,"per_s":..,"pinned":false,"client_cpu":..,"server_cpu":..,
 *    "retrans":..}   (retrans: the client socket's TCP retransmissions)
 */
#include "limits.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ 16
#define REPLY 4096
#define IO_TIMEOUT_S 5 /* no send or recv blocks longer than this */
#define CLIENT_CPU 0
#define SERVER_CPU 1

static pid_t main_pid, server_pid;

static void kill_server(void)
{
	if (getpid() != main_pid || server_pid <= 0)
		return;
	kill(server_pid, SIGKILL);
	lim_reap(server_pid, lim_now_ns() + 5000000000ull);
	server_pid = 0;
}

static void tune(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		lim_fail("setsockopt: %s", strerror(errno));
}

/* Read exactly len bytes; returns 0, or -1 on EOF before any byte. */
static int read_full(int fd, void *buf, size_t len, const char *who)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = recv(fd, (char *)buf + off, len - off, 0);

		if (n == 0 && off == 0)
			return -1;
		if (n == 0)
			lim_fail("%s: EOF in the middle of a message", who);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			lim_fail("%s: recv: %s", who, strerror(errno));
		}
		off += (size_t)n;
	}
	return 0;
}

static void write_full(int fd, const void *buf, size_t len, const char *who)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			lim_fail("%s: send: %s", who, strerror(errno));
		}
		off += (size_t)n;
	}
}

/* Serve requests until the client closes; then send our CPU and exit. */
static void __attribute__((noreturn)) server_main(int lfd, bool pin)
{
	unsigned char req[REQ], *reply = malloc(REPLY);
	int fd, cpu;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != main_pid)
		_exit(1);
	lim_prog = "pch-limit-rr: server";
	if (pin)
		lim_pin(SERVER_CPU);
	if (!reply)
		lim_fail("out of memory");
	lim_fill_nonzero(reply, REPLY, 7);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		lim_fail("accept: %s", strerror(errno));
	close(lfd);
	tune(fd);
	while (!read_full(fd, req, REQ, "server")) {
		if (req[0] == 'Q') {
			cpu = sched_getcpu();
			write_full(fd, &cpu, sizeof(cpu), "server");
			/* wait for the client's close, so none of our data is reset */
			read_full(fd, req, 1, "server");
			_exit(0);
		}
		write_full(fd, reply, REPLY, "server");
	}
	lim_fail("the client closed without QUIT");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pch-limit-rr [--seconds S] [--pin]\n"
		   "16-byte request / 4 KiB reply round trip over loopback TCP (TCP_NODELAY)\n"
		   "between two processes, for S seconds (default 3); one JSON object.\n"
		   "--pin: client on CPU %d, server on CPU %d.\n",
		CLIENT_CPU, SERVER_CPU);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "pin", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	unsigned char req[REQ], *reply;
	struct lim_pct pct;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	uint64_t *lat, t_begin, t_end, now;
	size_t n = 0, cap = 1u << 16;
	double seconds = 3;
	bool pin = false;
	int lfd, fd, c, server_cpu = -1, status;

	lim_init("pch-limit-rr");
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seconds = lim_parse_seconds(optarg);
			break;
		case 'p':
			pin = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		lim_fail("unexpected argument '%s'", argv[optind]);
	if (pin && sysconf(_SC_NPROCESSORS_ONLN) < 2)
		lim_fail("--pin needs 2 CPUs, this machine has %ld", sysconf(_SC_NPROCESSORS_ONLN));
	main_pid = getpid();
	reply = malloc(REPLY);
	lat = malloc(cap * sizeof(*lat));
	if (!reply || !lat)
		lim_fail("out of memory");

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		lim_fail("listen on 127.0.0.1: %s", strerror(errno));
	fflush(NULL);
	server_pid = fork();
	if (server_pid < 0)
		lim_fail("fork: %s", strerror(errno));
	if (!server_pid)
		server_main(lfd, pin);
	atexit(kill_server);
	close(lfd);
	if (pin)
		lim_pin(CLIENT_CPU);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		lim_fail("connect to 127.0.0.1:%u: %s", ntohs(sa.sin_port), strerror(errno));
	tune(fd);
	memset(req, 'R', sizeof(req));

	t_begin = lim_now_ns();
	t_end = t_begin + (uint64_t)(seconds * 1e9);
	do {
		uint64_t t0 = lim_now_ns();

		write_full(fd, req, REQ, "client");
		if (read_full(fd, reply, REPLY, "client"))
			lim_fail("client: the server closed the connection");
		now = lim_now_ns();
		if (n == cap) {
			cap *= 2;
			lat = realloc(lat, cap * sizeof(*lat));
			if (!lat)
				lim_fail("out of memory");
		}
		lat[n++] = now - t0;
	} while (now < t_end);

	/* loopback can drop under load: a retransmission shows as a 200+ ms round trip */
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl))
		lim_fail("getsockopt(TCP_INFO): %s", strerror(errno));
	req[0] = 'Q';
	write_full(fd, req, REQ, "client");
	if (read_full(fd, &server_cpu, sizeof(server_cpu), "client"))
		lim_fail("client: the server closed without its report");
	close(fd);
	status = lim_reap(server_pid, lim_now_ns() + 5000000000ull);
	server_pid = 0;
	if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		lim_fail("server: exited abnormally (status 0x%x)", status);

	lim_percentiles(lat, n, &pct);
	printf("{\"probe\":\"rr_16b_4k\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,"
	       "\"max_us\":%.2f,\"mean_us\":%.2f,\"count\":%zu,\"per_s\":%.0f,\"seconds\":%.3f,"
	       "\"pinned\":%s,\"client_cpu\":%d,\"server_cpu\":%d,\"retrans\":%u}\n",
	       pct.p50_us, pct.p99_us, pct.p999_us, pct.max_us, pct.mean_us, pct.count,
	       (double)n * 1e9 / (double)(now - t_begin), (double)(now - t_begin) / 1e9,
	       pin ? "true" : "false", sched_getcpu(), server_cpu, ti.tcpi_total_retrans);
	free(lat);
	free(reply);
	return 0;
}
