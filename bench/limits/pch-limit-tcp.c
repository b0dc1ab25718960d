// SPDX-License-Identifier: MIT
/*
 * pch-limit-tcp - loopback TCP throughput with N streams.
 *
 * The ceiling under pch's bulk transfer when source and helper share a
 * machine: N connections over 127.0.0.1, each with its own sender thread
 * writing 1 MiB buffers and its own receiver thread reading them, for
 * --seconds per stream count, split into --reps repetitions interleaved
 * over the stream counts.  Bytes received are counted after a short warm-up
 * (0.2 s per repetition); GB/s is 1e9 bytes per second.
 *
 * Output: one JSON object per stream count (JSON Lines), e.g.
 *   {"probe":"tcp","streams":4,"gbps":2.37,"median_gbps":..,"best_gbps":..,
 *    "reps":3,"bytes":...,"seconds":...,"chunk":1048576}
 * gbps is all bytes over all measured time; the others are over repetitions.
 */
#include "limits.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define MAX_COUNTS 16
#define MAX_STREAMS 64
#define WARMUP_NS 200000000ull /* 0.2 s, not counted */
#define IO_TIMEOUT_S 5	       /* no send or recv blocks longer than this */

struct stream {
	pthread_t snd, rcv;
	int sfd, rfd;
	const char *err; /* what failed in this stream's threads, or NULL */
	int err_no;
};

static atomic_ullong rx_bytes;
static atomic_bool stop;
static unsigned char *txbuf;

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void *sender(void *arg)
{
	struct stream *st = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		size_t off = 0;

		while (off < CHUNK) {
			ssize_t n = send(st->sfd, txbuf + off, CHUNK - off, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				st->err = "send";
				st->err_no = errno;
				goto out;
			}
			off += (size_t)n;
		}
	}
out:
	shutdown(st->sfd, SHUT_WR);
	return NULL;
}

static void *receiver(void *arg)
{
	struct stream *st = arg;
	unsigned char *buf = malloc(CHUNK);

	if (!buf) {
		st->err = "malloc";
		st->err_no = ENOMEM;
		return NULL;
	}
	for (;;) {
		ssize_t n = recv(st->rfd, buf, CHUNK, 0);

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			st->err = "recv";
			st->err_no = errno;
			break;
		}
		atomic_fetch_add_explicit(&rx_bytes, (unsigned long long)n, memory_order_relaxed);
	}
	free(buf);
	return NULL;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

#define MAX_REPS 64

/* What all repetitions with one stream count measured. */
struct result {
	unsigned streams, reps;
	unsigned long long bytes;
	uint64_t ns;
	double rep_gbps[MAX_REPS];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One measurement with n streams for seconds, added to r. */
static void run(unsigned n, double seconds, struct result *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct stream st[MAX_STREAMS];
	unsigned long long b0, b1;
	uint64_t t0, t1;
	int lfd, one = 1;

	memset(st, 0, sizeof(st));
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, MAX_STREAMS) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		lim_fail("listen on 127.0.0.1: %s", strerror(errno));
	for (unsigned i = 0; i < n; i++) {
		st[i].sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (st[i].sfd < 0 || connect(st[i].sfd, (struct sockaddr *)&sa, sizeof(sa)))
			lim_fail("stream %u: connect to 127.0.0.1:%u: %s", i, ntohs(sa.sin_port),
				 strerror(errno));
		st[i].rfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (st[i].rfd < 0)
			lim_fail("stream %u: accept: %s", i, strerror(errno));
		set_timeouts(st[i].sfd);
		set_timeouts(st[i].rfd);
	}
	close(lfd);
	atomic_store(&stop, false);
	atomic_store(&rx_bytes, 0);
	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&st[i].rcv, NULL, receiver, &st[i]) ||
		    pthread_create(&st[i].snd, NULL, sender, &st[i]))
			lim_fail("stream %u: pthread_create failed", i);
	sleep_ns(WARMUP_NS);
	t0 = lim_now_ns();
	b0 = atomic_load(&rx_bytes);
	sleep_ns((uint64_t)(seconds * 1e9));
	t1 = lim_now_ns();
	b1 = atomic_load(&rx_bytes);
	atomic_store(&stop, true);
	/* each sender ends within a chunk (or a send timeout), then its receiver sees EOF */
	for (unsigned i = 0; i < n; i++) {
		pthread_join(st[i].snd, NULL);
		pthread_join(st[i].rcv, NULL);
		close(st[i].sfd);
		close(st[i].rfd);
	}
	for (unsigned i = 0; i < n; i++)
		if (st[i].err)
			lim_fail("stream %u: %s: %s", i, st[i].err, strerror(st[i].err_no));
	r->bytes += b1 - b0;
	r->ns += t1 - t0;
	r->rep_gbps[r->reps++] = (double)(b1 - b0) / (double)(t1 - t0);
}

static void print_result(struct result *r)
{
	qsort(r->rep_gbps, r->reps, sizeof(double), cmp_double);
	printf("{\"probe\":\"tcp\",\"streams\":%u,\"gbps\":%.3f,\"median_gbps\":%.3f,"
	       "\"best_gbps\":%.3f,\"reps\":%u,\"bytes\":%llu,\"seconds\":%.3f,\"chunk\":%u}\n",
	       r->streams, (double)r->bytes / (double)r->ns, r->rep_gbps[r->reps / 2],
	       r->rep_gbps[r->reps - 1], r->reps, r->bytes, (double)r->ns / 1e9, CHUNK);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pch-limit-tcp [--seconds S] [--streams 1,2,4,8] [--reps R]\n"
		   "Loopback TCP throughput, one sender and one receiver thread per stream,\n"
		   "1 MiB writes, S seconds (default 2) per stream count, measured in R\n"
		   "(default 3) interleaved repetitions of S/R seconds; one JSON line per\n"
		   "stream count.  GB/s = 1e9 bytes/s.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "streams", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned counts[MAX_COUNTS] = { 1, 2, 4, 8 };
	static struct result res[MAX_COUNTS];
	unsigned reps = 3;
	int ncounts = 4, c;
	double seconds = 2;

	lim_init("pch-limit-tcp");
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seconds = lim_parse_seconds(optarg);
			break;
		case 'n':
			ncounts = lim_parse_list("--streams", optarg, counts, MAX_COUNTS);
			for (int i = 0; i < ncounts; i++)
				if (counts[i] > MAX_STREAMS)
					lim_fail("--streams: at most %d streams", MAX_STREAMS);
			break;
		case 'r':
			lim_parse_list("--reps", optarg, &reps, 1);
			if (reps > MAX_REPS)
				lim_fail("--reps: at most %d", MAX_REPS);
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
	txbuf = malloc(CHUNK);
	if (!txbuf)
		lim_fail("out of memory");
	lim_fill_nonzero(txbuf, CHUNK, 42);
	/* interleaved, so a slow spell of this shared machine hits every count */
	for (unsigned r = 0; r < reps; r++)
		for (int i = 0; i < ncounts; i++) {
			res[i].streams = counts[i];
			run(counts[i], seconds / reps, &res[i]);
		}
	for (int i = 0; i < ncounts; i++)
		print_result(&res[i]);
	free(txbuf);
	return 0;
}
