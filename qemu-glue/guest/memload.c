// SPDX-License-Identifier: MIT
/*
 * memload: the guest's memory workload for make qemu-check.
 *
 * Fills N MiB with per-page content and keeps a checksum per page; then loops
 * forever: each step rewrites one random page (new content, new checksum)
 * and verifies the next few pages of the current verify pass.  A pass ends
 * when every page has been verified once.  The gaps between steps are the
 * guest-visible stalls (a vCPU blocked on a postcopy fault shows up here;
 * a stopped VM does not, its clock stops too).
 *
 * Serial console lines (the harness parses them):
 *   MEMLOAD fill mib=M pages=P ms=T
 *   MEMLOAD start pass=N
 *   MEMLOAD ok pass=N pages=P stall_p99_us=X stall_max_us=Y ms=T
 *   MEMLOAD FAIL page=I pass=N want=H got=H       (then carries on)
 *   MEMLOAD bad pass=N fails=F pages=P ...        (a pass with failures)
 *
 *   memload [MiB]       default 256
 *
 * Built static by scripts/qemu-guest.sh (gcc -static -O2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define VERIFY_PER_STEP 4u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* new content for page idx, generation gen; returns its checksum */
static uint64_t fill_page(uint64_t *p, uint64_t idx, uint64_t gen)
{
	uint64_t s = mix(idx * 0x9e3779b97f4a7c15ull ^ mix(gen + 1));
	uint64_t h = 0xcbf29ce484222325ull;

	p[0] = idx;
	p[1] = gen;
	h = (h ^ p[0]) * 0x100000001b3ull;
	h = (h ^ p[1]) * 0x100000001b3ull;
	for (unsigned i = 2; i < WORDS; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = s;
		h = (h ^ s) * 0x100000001b3ull;
	}
	return h;
}

static uint64_t sum_page(const volatile uint64_t *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < WORDS; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	unsigned long mib = 256;

	if (argc > 1) {
		char *end;

		mib = strtoul(argv[1], &end, 10);
		if (*end || mib == 0 || mib > (1ul << 20)) {
			fprintf(stderr, "memload: bad size '%s' (MiB, 1..%lu)\n", argv[1], 1ul << 20);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	size_t pages = (size_t)mib * (1u << 20) / PAGE;
	uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *sums = calloc(pages, sizeof(*sums));
	uint64_t *gens = calloc(pages, sizeof(*gens));
	size_t steps_max = pages / VERIFY_PER_STEP + 2;
	uint32_t *gaps = calloc(steps_max, sizeof(*gaps));

	if (mem == MAP_FAILED || !sums || !gens || !gaps) {
		printf("MEMLOAD FAIL alloc mib=%lu: out of memory\n", mib);
		return 1;
	}

	uint64_t t0 = now_ns();
	for (size_t i = 0; i < pages; i++)
		sums[i] = fill_page(mem + i * WORDS, i, 0);
	printf("MEMLOAD fill mib=%lu pages=%zu ms=%llu\n", mib, pages,
	       (unsigned long long)((now_ns() - t0) / 1000000u));

	uint64_t rng = mix(now_ns());
	for (unsigned long pass = 1;; pass++) {
		size_t nsteps = 0;
		unsigned long fails = 0;
		uint64_t start = now_ns(), last = start;

		printf("MEMLOAD start pass=%lu\n", pass);
		for (size_t cur = 0; cur < pages;) {
			/* rewrite one random page */
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			size_t r = (size_t)(rng % pages);

			gens[r]++;
			sums[r] = fill_page(mem + r * WORDS, r, gens[r]);

			/* verify the next pages of this pass */
			for (unsigned k = 0; k < VERIFY_PER_STEP && cur < pages; k++, cur++) {
				uint64_t got = sum_page(mem + cur * WORDS);

				if (got != sums[cur]) {
					fails++;
					printf("MEMLOAD FAIL page=%zu pass=%lu want=%016llx got=%016llx"
					       " word0=%llu word1=%llu gen=%llu\n", cur, pass,
					       (unsigned long long)sums[cur], (unsigned long long)got,
					       (unsigned long long)mem[cur * WORDS],
					       (unsigned long long)mem[cur * WORDS + 1],
					       (unsigned long long)gens[cur]);
					/* fresh content, so the next pass checks it again */
					gens[cur]++;
					sums[cur] = fill_page(mem + cur * WORDS, cur, gens[cur]);
				}
			}

			uint64_t t = now_ns();
			uint64_t gap = (t - last) / 1000u;

			if (nsteps < steps_max)
				gaps[nsteps++] = gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap;
			last = t;
		}

		qsort(gaps, nsteps, sizeof(*gaps), cmp_u32);
		uint32_t p99 = nsteps ? gaps[(nsteps * 99) / 100] : 0;
		uint32_t mx = nsteps ? gaps[nsteps - 1] : 0;
		unsigned long long ms = (last - start) / 1000000u;

		if (fails)
			printf("MEMLOAD bad pass=%lu fails=%lu pages=%zu stall_p99_us=%u"
			       " stall_max_us=%u ms=%llu\n", pass, fails, pages, p99, mx, ms);
		else
			printf("MEMLOAD ok pass=%lu pages=%zu stall_p99_us=%u stall_max_us=%u"
			       " ms=%llu\n", pass, pages, p99, mx, ms);
	}
}
