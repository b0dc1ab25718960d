/* SPDX-License-Identifier: MIT */
/*
 * limits.h - what the limit probes (bench/limits/pch-limit-*.c) share.
 *
 * Each probe measures one ceiling of this machine that a pch figure is
 * bounded by, for a bounded time, and prints JSON on stdout.  Errors go to
 * stderr as "pch-limit-NAME: what: why"; exit 1 on an error, 77 when the
 * kernel lacks (or forbids) a feature the probe needs.
 */
#ifndef PCH_BENCH_LIMITS_H
#define PCH_BENCH_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LIM_EXIT_SKIP 77

/* The program's name for messages; set by lim_init(). */
extern const char *lim_prog;

void lim_init(const char *prog);

/* Print "prog: msg" and exit 1. */
__attribute__((noreturn, format(printf, 1, 2))) void lim_fail(const char *fmt, ...);
/* Print "prog: SKIP: msg" and exit 77 (a kernel feature is missing). */
__attribute__((noreturn, format(printf, 1, 2))) void lim_skip(const char *fmt, ...);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t lim_now_ns(void);

/* Parse a positive number of seconds (fractions allowed); exits on error. */
double lim_parse_seconds(const char *s);
/*
 * Parse a comma-separated list of positive integers ("1,2,4,8") into out
 * (at most max); returns how many.  Exits on error.
 */
int lim_parse_list(const char *opt, const char *s, unsigned *out, int max);

/* Pin the calling thread to cpu; exits on error. */
void lim_pin(int cpu);

/* Percentiles of n latencies in nanoseconds (sorts v in place). */
struct lim_pct {
	double p50_us, p99_us, p999_us, max_us, mean_us;
	size_t count;
};
void lim_percentiles(uint64_t *v, size_t n, struct lim_pct *out);

/*
 * Wait for child pid until deadline_ns (CLOCK_MONOTONIC); kill it with
 * SIGKILL when the deadline passes, and reap it.  Returns its wait status,
 * or -1 if it could not be reaped.
 */
int lim_reap(pid_t pid, uint64_t deadline_ns);

/* Fill buf with random bytes, none of them zero. */
void lim_fill_nonzero(void *buf, size_t len, uint64_t seed);

#endif
