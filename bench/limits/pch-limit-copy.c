// SPDX-License-Identifier: MIT
/*
 * pch-limit-copy - batched UFFDIO_COPY install rate, no fault pending.
 *
 * The ceiling under pch's bulk install: how fast one thread can put pages
 * into a userfaultfd-registered anonymous area with UFFDIO_COPY, for each
 * batch size (bytes per ioctl).  The area (256 MiB by default) is filled
 * front to back, batch after batch, from a source buffer of random non-zero
 * bytes; then MADV_DONTNEED makes it missing again (not timed) for the next
 * pass.  Passes of the batch sizes are interleaved, so drift in the
 * machine's speed spreads over all of them, until --seconds have passed.
 *
 * Output: one JSON object per batch size (JSON Lines), e.g.
 *   {"probe":"uffd_copy","batch_kib":64,"gbps":4.4,"best_gbps":...,
 *    "median_gbps":...,"passes":...,"bytes":...,"us_per_ioctl":...}
 * gbps is all bytes over all time spent in UFFDIO_COPY (1e9 bytes/s).
 */
#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pch/uffd-compat.h"

#define PAGE 4096ul
#define MAX_BATCHES 16
#define MAX_PASSES 4096
#define SRC_BYTES (4ul << 20) /* cycled through, so the source is not one hot page */

struct batch {
	unsigned kib;
	uint64_t bytes, ns, ioctls;
	double pass_gbps[MAX_PASSES];
	unsigned passes;
};

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	int e = errno, dev;

	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	lim_skip("userfaultfd: %s (and /dev/userfaultfd: %s)", strerror(e), strerror(errno));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One pass over the area with UFFDIO_COPY of b->kib KiB each. */
static void pass(int uffd, unsigned char *area, size_t len, const unsigned char *src,
		 struct batch *b)
{
	size_t step = (size_t)b->kib << 10, soff = 0;
	uint64_t t0, t1, n = 0;

	t0 = lim_now_ns();
	for (size_t off = 0; off + step <= len; off += step) {
		struct uffdio_copy cp = { .dst = (unsigned long)(area + off),
					  .src = (unsigned long)(src + soff),
					  .len = step };

		while (ioctl(uffd, UFFDIO_COPY, &cp)) {
			/* EAGAIN: partial copy (cp.copy bytes done), go on after it */
			if (errno != EAGAIN || cp.copy <= 0)
				lim_fail("UFFDIO_COPY of %u KiB at offset %zu: %s", b->kib,
					 off, strerror(errno));
			cp.dst += (unsigned long)cp.copy;
			cp.src += (unsigned long)cp.copy;
			cp.len -= (unsigned long)cp.copy;
			cp.copy = 0;
		}
		n++;
		soff += step;
		if (soff + step > SRC_BYTES)
			soff = 0;
	}
	t1 = lim_now_ns();
	b->bytes += n * step;
	b->ns += t1 - t0;
	b->ioctls += n;
	if (b->passes < MAX_PASSES)
		b->pass_gbps[b->passes++] = (double)(n * step) / (double)(t1 - t0);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pch-limit-copy [--seconds S] [--batch-kib 4,64,1024] [--area-mib M]\n"
		   "UFFDIO_COPY install rate into a registered anonymous area (default\n"
		   "256 MiB) with no fault pending, per batch size; passes interleaved for\n"
		   "S seconds (default 3); one JSON line per batch size.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "batch-kib", required_argument, NULL, 'b' },
		{ "area-mib", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned kibs[MAX_BATCHES] = { 4, 64, 1024 }, mib = 256;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct batch *b;
	unsigned char *area, *src;
	size_t len;
	uint64_t t_end;
	double seconds = 3;
	int nb = 3, c, uffd;

	lim_init("pch-limit-copy");
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seconds = lim_parse_seconds(optarg);
			break;
		case 'b':
			nb = lim_parse_list("--batch-kib", optarg, kibs, MAX_BATCHES);
			break;
		case 'a':
			lim_parse_list("--area-mib", optarg, &mib, 1);
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
	len = (size_t)mib << 20;
	for (int i = 0; i < nb; i++)
		if (kibs[i] % (PAGE >> 10) || ((size_t)kibs[i] << 10) > len ||
		    ((size_t)kibs[i] << 10) > SRC_BYTES)
			lim_fail("--batch-kib: %u is not a multiple of 4 KiB of at most %lu KiB "
				 "and the area", kibs[i], SRC_BYTES >> 10);

	b = calloc(MAX_BATCHES, sizeof(*b));
	src = aligned_alloc(PAGE, SRC_BYTES);
	if (!b || !src)
		lim_fail("out of memory");
	lim_fill_nonzero(src, SRC_BYTES, 0x1234567);
	for (int i = 0; i < nb; i++)
		b[i].kib = kibs[i];

	uffd = open_uffd();
	if (ioctl(uffd, UFFDIO_API, &api))
		lim_fail("UFFDIO_API: %s", strerror(errno));
	area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		lim_fail("mmap %u MiB: %s", mib, strerror(errno));
	/* 4 KiB pages, as pch installs them */
	madvise(area, len, MADV_NOHUGEPAGE);
	reg = (struct uffdio_register){ .range = { (unsigned long)area, len },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		lim_fail("UFFDIO_REGISTER: %s", strerror(errno));
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
		lim_skip("userfaultfd: UFFDIO_COPY not offered on an anonymous area");

	t_end = lim_now_ns() + (uint64_t)(seconds * 1e9);
	do {
		for (int i = 0; i < nb; i++) {
			pass(uffd, area, len, src, &b[i]);
			if (madvise(area, len, MADV_DONTNEED))
				lim_fail("madvise(MADV_DONTNEED): %s", strerror(errno));
		}
	} while (lim_now_ns() < t_end);

	/* check that what was installed is the source's content */
	{
		struct uffdio_copy cp = { .dst = (unsigned long)area, .src = (unsigned long)src,
					  .len = PAGE };

		if (ioctl(uffd, UFFDIO_COPY, &cp) || memcmp(area, src, PAGE))
			lim_fail("installed page differs from the source (or UFFDIO_COPY: %s)",
				 strerror(errno));
	}

	for (int i = 0; i < nb; i++) {
		struct batch *x = &b[i];

		qsort(x->pass_gbps, x->passes, sizeof(double), cmp_double);
		printf("{\"probe\":\"uffd_copy\",\"batch_kib\":%u,\"gbps\":%.3f,"
		       "\"median_gbps\":%.3f,\"best_gbps\":%.3f,\"passes\":%u,\"bytes\":%llu,"
		       "\"us_per_ioctl\":%.3f,\"area_mib\":%u}\n",
		       x->kib, (double)x->bytes / (double)x->ns, x->pass_gbps[x->passes / 2],
		       x->pass_gbps[x->passes - 1], x->passes, (unsigned long long)x->bytes,
		       (double)x->ns / 1000.0 / (double)x->ioctls, mib);
	}
	free(src);
	free(b);
	return 0;
}
