/* SPDX-License-Identifier: MIT */
/* util.h - small helpers shared by every pch program. */
#ifndef PCH_UTIL_H
#define PCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PCH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PCH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PCH_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PCH_DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

static inline uint64_t pch_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline bool pch_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Parse "512M", "1G", "4096", "2m" (binary units) into bytes; -EINVAL. */
int pch_parse_size(const char *s, uint64_t *out);
/* Parse a double in [lo, hi]; -EINVAL otherwise. */
int pch_parse_double(const char *s, double lo, double hi, double *out);
/* Parse an unsigned integer in [lo, hi] (decimal or 0x hex); -EINVAL. */
int pch_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Remaining milliseconds until deadline_ns (>= 0), for poll(). */
int pch_ms_until(uint64_t deadline_ns);

/*
 * Change this thread's niceness by inc (positive: lower priority; negative
 * needs CAP_SYS_NICE).  0 or -errno; the thread keeps its old priority on
 * failure.
 */
int pch_thread_nice(int inc);
/* Name this thread (visible in /proc, top, perf). */
void pch_thread_name(const char *name);

/*
 * True when fd is the anonymous-inode file of the given kind ("eventfd",
 * "userfaultfd", ...), as /proc/self/fd shows it: "anon_inode:[kind]".
 */
bool pch_fd_is_anon(int fd, const char *kind);

/* Fill buf with len bytes from getrandom(); 0 or -errno. */
int pch_random_bytes(void *buf, size_t len);
/* The value of "key:" in /proc/meminfo (kB for sizes), or -1. */
long long pch_meminfo(const char *key);

#endif
