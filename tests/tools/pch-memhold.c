// SPDX-License-Identifier: MIT
/*
 * pch-memhold - hold a memfd full of the synthetic image, the way a VMM holds
 * its shared guest RAM, so that pch-source can serve it with
 * --file /proc/PID/fd/N.  For the integration tests.
 *
 *   pch-memhold --kind memfd|hugetlb --size SIZE [--seed S] [--zero-fraction F]
 *               [--repeat-fraction F] [--page-size P] [--timeout-s T]
 *
 * Creates the memfd (shmem, or hugetlb with 2 MiB pages), fills every page
 * with pch_image_fill (block 0, the image pch-source and pch-vm generate with
 * the same seed, fractions and page size), prints "/proc/<pid>/fd/<n>" on
 * stdout and then holds it until stdin reaches EOF, SIGTERM or SIGINT
 * arrives, or --timeout-s (default 300) passes: never forever, so a test
 * that dies cannot leak it.  Keep stdin open (a pipe) while the fd is used;
 * /dev/null ends the hold at once.
 *
 * Exit status: 0 after EOF or a signal, 1 on failure or timeout, 2 on a
 * usage error, 77 when a hugetlb memfd cannot be had for lack of huge pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "image.h"
#include "util.h"

/* From linux/memfd.h (4.14); older libc headers lack it. */
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

#define HUGE_2M (2u << 20)
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

enum kind { KIND_MEMFD, KIND_HUGETLB };

struct opts {
	enum kind kind;
	uint64_t size;
	struct pch_image image;
	unsigned timeout_s;
};

static void usage(void)
{
	fprintf(stderr, "usage: pch-memhold --kind memfd|hugetlb --size SIZE [--seed S]\n"
			"  [--zero-fraction F] [--repeat-fraction F] [--page-size P] [--timeout-s T]\n");
	exit(2);
}

static void bad(const char *what)
{
	fprintf(stderr, "pch-memhold: %s\n", what);
	exit(2);
}

/* Defaults are pch-source's (source/main.c), so both make the same image. */
static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "kind", 1, 0, 'k' },		 { "size", 1, 0, 's' },
		{ "seed", 1, 0, 'S' },		 { "zero-fraction", 1, 0, 'z' },
		{ "repeat-fraction", 1, 0, 'r' }, { "page-size", 1, 0, 'p' },
		{ "timeout-s", 1, 0, 't' },	 { 0, 0, 0, 0 }
	};
	const char *kind = NULL;
	uint64_t v, ps = 0;
	int c;

	o->image.seed = 1;
	o->image.zero_frac = 0.1;
	o->image.repeat_frac = 0.05;
	o->timeout_s = 300;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kind = optarg;
			break;
		case 's':
			if (pch_parse_size(optarg, &o->size) || !o->size)
				bad("--size: expected a size such as 64M");
			break;
		case 'S':
			if (pch_parse_u64(optarg, 0, UINT64_MAX, &o->image.seed))
				bad("--seed: expected an unsigned integer");
			break;
		case 'z':
			if (pch_parse_double(optarg, 0, 1, &o->image.zero_frac))
				bad("--zero-fraction: expected 0..1");
			break;
		case 'r':
			if (pch_parse_double(optarg, 0, 1, &o->image.repeat_frac))
				bad("--repeat-fraction: expected 0..1");
			break;
		case 'p':
			if (pch_parse_size(optarg, &ps) || !pch_is_pow2(ps) || ps < 4096 ||
			    ps > (1u << 30))
				bad("--page-size: expected a power of two from 4096 to 1G");
			break;
		case 't':
			if (pch_parse_u64(optarg, 1, 1u << 30, &v))
				bad("--timeout-s: expected a positive number of seconds");
			o->timeout_s = v;
			break;
		default:
			usage();
		}
	}
	if (optind < argc || !kind || !o->size)
		usage();
	if (!strcmp(kind, "memfd"))
		o->kind = KIND_MEMFD;
	else if (!strcmp(kind, "hugetlb"))
		o->kind = KIND_HUGETLB;
	else
		bad("--kind: expected memfd or hugetlb");
	if (o->image.zero_frac + o->image.repeat_frac > 1)
		bad("--zero-fraction plus --repeat-fraction exceeds 1");
	/* MFD_HUGE_2MB: the huge page size is fixed, and it is the image's page */
	if (o->kind == KIND_HUGETLB && ps && ps != HUGE_2M)
		bad("--page-size: a hugetlb memfd has 2M pages");
	if (!ps)
		ps = o->kind == KIND_HUGETLB ? HUGE_2M : 4096;
	o->image.page_size = ps;
	if (o->size % ps)
		bad("--size: not a multiple of the page size");
}

/* Exit 77: the host has no hugetlb pages to give (a skip, not a failure). */
static void no_huge(const struct opts *o, const char *step, int err)
{
	fprintf(stderr, "pch-memhold: hugetlb memfd of %llu bytes: %s: %s; it needs %llu free "
			"2 MiB huge pages: raise " NR_HUGEPAGES "\n",
		(unsigned long long)o->size, step, strerror(err),
		(unsigned long long)(o->size / HUGE_2M));
	exit(77);
}

/* Create the memfd, size it and fill it with the image.  The fd, or exit. */
static int make_memfd(const struct opts *o)
{
	bool huge = o->kind == KIND_HUGETLB;
	uint32_t ps = o->image.page_size;
	uint8_t *map;
	uint64_t i;
	int fd;

	/* not CLOEXEC: nothing is exec'd, and the fd must stay open */
	fd = memfd_create("pch-memhold", huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0);
	if (fd < 0) {
		if (huge)
			no_huge(o, "memfd_create(MFD_HUGETLB)", errno);
		fprintf(stderr, "pch-memhold: memfd_create: %s\n", strerror(errno));
		exit(1);
	}
	if (ftruncate(fd, (off_t)o->size) < 0) {
		fprintf(stderr, "pch-memhold: ftruncate %llu: %s\n", (unsigned long long)o->size,
			strerror(errno));
		exit(1);
	}
	/*
	 * Allocate every huge page now: a pool too small fails here with
	 * ENOSPC, not later with SIGBUS while we fill.
	 */
	if (huge && fallocate(fd, 0, 0, (off_t)o->size) < 0)
		no_huge(o, "fallocate", errno);
	map = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		if (huge && errno == ENOMEM)
			no_huge(o, "mmap", errno);
		fprintf(stderr, "pch-memhold: mmap %llu bytes: %s\n", (unsigned long long)o->size,
			strerror(errno));
		exit(1);
	}
	for (i = 0; i < o->size / ps; i++)
		pch_image_fill(&o->image, 0, i, map + i * ps);
	/* the fd holds the pages; our mapping is not needed any more */
	munmap(map, o->size);
	return fd;
}

/* Wait for EOF on stdin, SIGTERM/SIGINT, or the timeout.  Exit status. */
static int hold(const struct opts *o)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
	struct pollfd pfd[2] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = -1, .events = POLLIN },
	};
	sigset_t set;
	char buf[4096];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pfd[1].fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (pfd[1].fd < 0) {
		fprintf(stderr, "pch-memhold: signalfd: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		int ms = pch_ms_until(deadline), n;

		if (ms == 0) {
			fprintf(stderr, "pch-memhold: timed out after %u s; releasing the memfd\n",
				o->timeout_s);
			return 1;
		}
		n = poll(pfd, 2, ms);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "pch-memhold: poll: %s\n", strerror(errno));
			return 1;
		}
		if (n <= 0)
			continue;
		if (pfd[1].revents)
			return 0;
		if (pfd[0].revents) {
			ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));

			/* EOF, or a stdin we cannot read: the holder's owner is gone */
			if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
				return 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	int fd;

	parse(argc, argv, &o);
	fd = make_memfd(&o);
	printf("/proc/%d/fd/%d\n", (int)getpid(), fd);
	if (fflush(stdout)) {
		fprintf(stderr, "pch-memhold: stdout: %s\n", strerror(errno));
		return 1;
	}
	fprintf(stderr, "pch-memhold: %s memfd of %llu bytes, %u-byte pages, seed %llu\n",
		o.kind == KIND_HUGETLB ? "hugetlb" : "shmem", (unsigned long long)o.size,
		o.image.page_size, (unsigned long long)o.image.seed);
	return hold(&o);
}
