// SPDX-License-Identifier: MIT
/*
 * limits.c - the limit probes' common part: messages, clocks, option
 * parsing, percentiles, pinning and reaping children with a deadline.
 */
#include "limits.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *lim_prog = "pch-limit";

void lim_init(const char *prog)
{
	lim_prog = prog;
	/* a probe writing to a dead reader must fail with EPIPE, not die */
	signal(SIGPIPE, SIG_IGN);
}

void lim_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", lim_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void lim_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: SKIP: ", lim_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(LIM_EXIT_SKIP);
}

uint64_t lim_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double lim_parse_seconds(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 3600)
		lim_fail("--seconds: '%s' is not a number of seconds in (0, 3600]", s);
	return v;
}

int lim_parse_list(const char *opt, const char *s, unsigned *out, int max)
{
	const char *p = s;
	int n = 0;

	while (*p) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(p, &end, 10);
		if (errno || end == p || v == 0 || v > 1u << 20 || (*end && *end != ','))
			lim_fail("%s: '%s' is not a comma-separated list of positive integers", opt,
				 s);
		if (n == max)
			lim_fail("%s: more than %d values in '%s'", opt, max, s);
		out[n++] = (unsigned)v;
		p = *end ? end + 1 : end;
	}
	if (!n)
		lim_fail("%s: empty list", opt);
	return n;
}

void lim_pin(int cpu)
{
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	err = sched_setaffinity(0, sizeof(set), &set);
	if (err)
		lim_fail("pin to CPU %d: %s", cpu, strerror(errno));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array */
static double rank_us(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);

	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1000.0;
}

void lim_percentiles(uint64_t *v, size_t n, struct lim_pct *out)
{
	double sum = 0;

	memset(out, 0, sizeof(*out));
	out->count = n;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)v[i];
	out->p50_us = rank_us(v, n, 0.50);
	out->p99_us = rank_us(v, n, 0.99);
	out->p999_us = rank_us(v, n, 0.999);
	out->max_us = (double)v[n - 1] / 1000.0;
	out->mean_us = sum / (double)n / 1000.0;
}

int lim_reap(pid_t pid, uint64_t deadline_ns)
{
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (lim_now_ns() >= deadline_ns)
			break;
		usleep(2000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

void lim_fill_nonzero(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t x = seed | 1;

	for (size_t i = 0; i < len; i++) {
		/* xorshift64 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x % 255u) + 1u;
	}
}
