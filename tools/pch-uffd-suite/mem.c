// SPDX-License-Identifier: MIT
/*
 * mem.c - areas of each memory kind, page patterns, huge page reservation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "suite.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

#define HUGE_2M (2UL << 20)

size_t us_kind_psize(enum us_kind k)
{
	return k == US_HUGETLB || k == US_HUGETLB_SHARED ? HUGE_2M : (size_t)getpagesize();
}

int us_area_map(struct us_area *a, enum us_kind k, size_t npages, bool want_alias)
{
	int prot = PROT_READ | PROT_WRITE;
	int ret;

	memset(a, 0, sizeof(*a));
	a->kind = k;
	a->memfd = -1;
	a->psize = us_kind_psize(k);
	a->len = npages * a->psize;
	switch (k) {
	case US_ANON:
		a->p = mmap(NULL, a->len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		break;
	case US_HUGETLB:
		a->p = mmap(NULL, a->len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		break;
	case US_SHMEM:
	case US_SHMEM_PRIVATE:
	case US_HUGETLB_SHARED:
		a->memfd = memfd_create("pch-uffd-suite",
					MFD_CLOEXEC | (k == US_HUGETLB_SHARED ? MFD_HUGETLB : 0));
		if (a->memfd < 0)
			return -errno;
		if (ftruncate(a->memfd, (off_t)a->len) < 0) {
			ret = -errno;
			close(a->memfd);
			return ret;
		}
		a->p = mmap(NULL, a->len, prot, k == US_SHMEM_PRIVATE ? MAP_PRIVATE : MAP_SHARED,
			    a->memfd, 0);
		if (a->p != MAP_FAILED && want_alias) {
			a->alias = mmap(NULL, a->len, prot, MAP_SHARED, a->memfd, 0);
			if (a->alias == MAP_FAILED) {
				ret = -errno;
				munmap(a->p, a->len);
				close(a->memfd);
				return ret;
			}
		}
		break;
	default:
		return -EINVAL;
	}
	if (a->p == MAP_FAILED) {
		ret = -errno;
		if (a->memfd >= 0)
			close(a->memfd);
		a->p = NULL;
		return ret;
	}
	/* 4 KiB faults on anon, whatever THP is set to */
	if (k == US_ANON)
		madvise(a->p, a->len, MADV_NOHUGEPAGE);
	return 0;
}

void us_area_unmap(struct us_area *a)
{
	if (a->p)
		munmap(a->p, a->len);
	if (a->alias)
		munmap(a->alias, a->len);
	if (a->memfd >= 0)
		close(a->memfd);
	a->p = a->alias = NULL;
	a->memfd = -1;
}

static uint64_t pat_word(size_t pg, size_t i, uint64_t seed)
{
	uint64_t x = seed ^ ((uint64_t)pg << 32) ^ i;

	x *= 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

void us_pattern(void *buf, size_t psize, size_t pg, uint64_t seed)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < psize / 8; i++)
		w[i] = pat_word(pg, i, seed);
}

size_t us_pattern_check(const void *buf, size_t psize, size_t pg, uint64_t seed)
{
	const uint64_t *w = buf;

	for (size_t i = 0; i < psize / 8; i++)
		if (w[i] != pat_word(pg, i, seed))
			return i * 8 + 1;
	return 0;
}

static const char nr_huge[] = "/proc/sys/vm/nr_hugepages";
static long huge_added;	/* huge pages this process added to vm.nr_hugepages */
static pid_t huge_pid;	/* which process: a forked case never gives them back */

static long meminfo(const char *key)
{
	char line[128];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static long huge_free(void)
{
	long f = meminfo("HugePages_Free"), r = meminfo("HugePages_Rsvd");

	return f < 0 ? 0 : f - (r < 0 ? 0 : r);
}

static long read_long(const char *path)
{
	long v = -1;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fprintf(f, "%ld\n", v);
		fclose(f);
	}
}

long us_hugepages_reserve(long n)
{
	long free_now = huge_free(), old, now;

	if (meminfo("Hugepagesize") != 2048 || free_now >= n)
		return free_now;
	old = read_long(nr_huge);
	if (old < 0)
		return free_now;
	write_long(nr_huge, old + n - free_now);
	/* what the kernel could allocate, which may be less than asked */
	now = read_long(nr_huge);
	if (now > old) {
		huge_added += now - old;
		huge_pid = getpid();
	}
	return huge_free();
}

/* Give back only the pages added: a run beside this one keeps its own. */
void us_hugepages_restore(void)
{
	long cur;

	if (huge_added <= 0 || huge_pid != getpid())
		return;
	cur = read_long(nr_huge);
	if (cur >= 0)
		write_long(nr_huge, cur > huge_added ? cur - huge_added : 0);
	huge_added = 0;
}
