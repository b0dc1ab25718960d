// SPDX-License-Identifier: MIT
/* test_bitmap.c - Check suite for lib/bitmap.c. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

START_TEST(test_init_free)
{
	struct pch_bitmap b;

	ck_assert_int_eq(pch_bitmap_init(&b, 0), -EINVAL);
	ck_assert_int_eq(pch_bitmap_init(&b, 1), 0);
	ck_assert_uint_eq(b.nbits, 1);
	ck_assert_uint_eq(pch_bitmap_count(&b), 0);
	pch_bitmap_free(&b);
	ck_assert_ptr_null(b.words);
	pch_bitmap_free(&b); /* idempotent */
}
END_TEST

START_TEST(test_set_clear_test)
{
	static const uint64_t bits[] = {0, 1, 62, 63, 64, 65, 127, 128, 129, 199};
	struct pch_bitmap b;
	size_t i;

	ck_assert_int_eq(pch_bitmap_init(&b, 200), 0);
	for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		ck_assert(!pch_bitmap_test(&b, bits[i]));
		ck_assert(pch_bitmap_set(&b, bits[i]));
		ck_assert(!pch_bitmap_set(&b, bits[i])); /* second set: not first */
		ck_assert(pch_bitmap_test(&b, bits[i]));
		ck_assert_uint_eq(pch_bitmap_count(&b), i + 1);
	}
	/* neighbours untouched */
	ck_assert(!pch_bitmap_test(&b, 2));
	ck_assert(!pch_bitmap_test(&b, 61));
	ck_assert(!pch_bitmap_test(&b, 130));
	/* out of range */
	ck_assert(!pch_bitmap_set(&b, 200));
	ck_assert(!pch_bitmap_test(&b, 200));
	ck_assert(!pch_bitmap_test(&b, UINT64_MAX));
	ck_assert(!pch_bitmap_clear(&b, 1000));

	ck_assert(pch_bitmap_clear(&b, 63));
	ck_assert(!pch_bitmap_clear(&b, 63));
	ck_assert(!pch_bitmap_test(&b, 63));
	ck_assert(pch_bitmap_test(&b, 64));
	ck_assert_uint_eq(pch_bitmap_count(&b), 9);
	pch_bitmap_free(&b);
}
END_TEST

START_TEST(test_next_set_clear)
{
	struct pch_bitmap b;
	uint64_t i;

	ck_assert_int_eq(pch_bitmap_init(&b, 130), 0);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 0), 130);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 0), 0);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 500), 130);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 130), 130);

	pch_bitmap_set(&b, 63);
	pch_bitmap_set(&b, 64);
	pch_bitmap_set(&b, 129);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 0), 63);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 63), 63);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 64), 64);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 65), 129);
	ck_assert_uint_eq(pch_bitmap_next_set(&b, 129), 129);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 63), 65);

	/* fill everything: next_clear must not report the bits past nbits */
	for (i = 0; i < 130; i++)
		pch_bitmap_set(&b, i);
	ck_assert_uint_eq(pch_bitmap_count(&b), 130);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 0), 130);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 128), 130);
	pch_bitmap_clear(&b, 128);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 0), 128);
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 129), 130);
	pch_bitmap_free(&b);
}
END_TEST

START_TEST(test_set_range)
{
	struct pch_bitmap b;

	ck_assert_int_eq(pch_bitmap_init(&b, 300), 0);
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 60, 8), 8); /* spans 63|64 */
	ck_assert(!pch_bitmap_test(&b, 59));
	ck_assert(pch_bitmap_test(&b, 60));
	ck_assert(pch_bitmap_test(&b, 67));
	ck_assert(!pch_bitmap_test(&b, 68));
	/* overlapping: only the new bits count */
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 64, 64), 60);
	ck_assert_uint_eq(pch_bitmap_count(&b), 68);
	ck_assert(pch_bitmap_all_set(&b, 60, 68));
	ck_assert(!pch_bitmap_all_set(&b, 59, 2));
	ck_assert(!pch_bitmap_all_set(&b, 127, 2));
	ck_assert(pch_bitmap_all_set(&b, 10, 0));
	/* exactly one aligned word */
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 192, 64), 64);
	ck_assert(pch_bitmap_test(&b, 255));
	ck_assert(!pch_bitmap_test(&b, 256));
	ck_assert(!pch_bitmap_test(&b, 191));
	/* clamped at nbits, huge n without overflow */
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 290, UINT64_MAX), 10);
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 300, 5), 0);
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 1000, 5), 0);
	ck_assert_uint_eq(pch_bitmap_set_range(&b, UINT64_MAX, UINT64_MAX), 0);
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 5, 0), 0);
	ck_assert(!pch_bitmap_all_set(&b, 290, 11)); /* reaches past nbits */
	ck_assert(pch_bitmap_all_set(&b, 290, 10));
	ck_assert_uint_eq(pch_bitmap_count(&b), 68 + 64 + 10);
	/* whole bitmap */
	ck_assert_uint_eq(pch_bitmap_set_range(&b, 0, 300), 300 - 142);
	ck_assert(pch_bitmap_all_set(&b, 0, 300));
	ck_assert_uint_eq(pch_bitmap_next_clear(&b, 0), 300);
	pch_bitmap_free(&b);
}
END_TEST

START_TEST(test_import_export)
{
	struct pch_bitmap b;
	uint64_t in[3] = {0x8000000000000001ull, 0xffull, ~0ull};
	uint64_t out[3];

	ck_assert_int_eq(pch_bitmap_init(&b, 250), 0);
	/* bits 64..64+140: words 1..3; the last word's bits past 140 ignored */
	ck_assert_int_eq(pch_bitmap_import(&b, 64, in, 140), 2 + 8 + 12);
	ck_assert(pch_bitmap_test(&b, 64));
	ck_assert(pch_bitmap_test(&b, 127));
	ck_assert(pch_bitmap_test(&b, 128 + 7));
	ck_assert(!pch_bitmap_test(&b, 128 + 8));
	ck_assert(pch_bitmap_test(&b, 192 + 11));
	ck_assert(!pch_bitmap_test(&b, 192 + 12));
	/* importing again changes nothing */
	ck_assert_int_eq(pch_bitmap_import(&b, 64, in, 140), 0);

	memset(out, 0xa5, sizeof(out));
	ck_assert_int_eq(pch_bitmap_export(&b, 64, out, 140), 0);
	ck_assert_uint_eq(out[0], in[0]);
	ck_assert_uint_eq(out[1], in[1]);
	ck_assert_uint_eq(out[2], 0xfffull); /* trailing bits zero */

	ck_assert_int_eq(pch_bitmap_export(&b, 0, out, 64), 0);
	ck_assert_uint_eq(out[0], 0);

	/* range errors */
	ck_assert_int_eq(pch_bitmap_import(&b, 1, in, 10), -EINVAL);
	ck_assert_int_eq(pch_bitmap_import(&b, 192, in, 59), -EINVAL);
	ck_assert_int_eq(pch_bitmap_import(&b, 256, in, 0), -EINVAL);
	ck_assert_int_eq(pch_bitmap_import(&b, 0, in, UINT64_MAX), -EINVAL);
	ck_assert_int_eq(pch_bitmap_export(&b, 32, out, 10), -EINVAL);
	ck_assert_int_eq(pch_bitmap_export(&b, 128, out, 123), -EINVAL);
	/* bit 192 is already set: nothing new */
	ck_assert_int_eq(pch_bitmap_import(&b, 192, in, 58), 0);
	ck_assert_uint_eq(pch_bitmap_count(&b), 22);
	pch_bitmap_free(&b);
}
END_TEST

#define NTHREADS 6
#define CONC_BITS 200003u

struct worker {
	struct pch_bitmap *b;
	unsigned id;
	uint64_t won;
	uint64_t won_range;
	pthread_barrier_t *bar;
};

static void *conc_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t i, n = w->b->nbits;

	/*
	 * Every thread walks all bits in the same order, in chunks started
	 * together, so threads race for the same bit and the same word all the
	 * time: a lost "first" or a double "first" shows in the totals.
	 */
	for (i = 0; i < n; i += 4096) {
		uint64_t j, end = i + 4096 < n ? i + 4096 : n;

		pthread_barrier_wait(w->bar);
		for (j = i; j < end; j++)
			w->won += pch_bitmap_set(w->b, j);
	}
	return NULL;
}

static void *range_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t i, first, n = w->b->nbits;

	/*
	 * Short overlapping ranges (some crossing a word boundary), shifted
	 * per thread, in lockstep chunks so threads hit the same words at once.
	 */
	for (i = 0; i < n; i += 4096) {
		pthread_barrier_wait(w->bar);
		for (first = i + w->id % 3; first < i + 4096 && first < n; first += 2)
			w->won_range += pch_bitmap_set_range(w->b, first, 3);
	}
	return NULL;
}

static void run_conc(void *(*fn)(void *), bool range)
{
	struct pch_bitmap b;
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	pthread_barrier_t bar;
	uint64_t total = 0, expect = 0, i;
	unsigned t;

	ck_assert_int_eq(pch_bitmap_init(&b, CONC_BITS), 0);
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (t = 0; t < NTHREADS; t++) {
		w[t] = (struct worker){.b = &b, .id = t, .bar = &bar};
		ck_assert_int_eq(pthread_create(&th[t], NULL, fn, &w[t]), 0);
	}
	for (t = 0; t < NTHREADS; t++) {
		pthread_join(th[t], NULL);
		total += range ? w[t].won_range : w[t].won;
	}
	pthread_barrier_destroy(&bar);
	for (i = 0; i < CONC_BITS; i++)
		expect += pch_bitmap_test(&b, i);
	ck_assert_uint_eq(pch_bitmap_count(&b), expect);
	ck_assert_uint_eq(total, expect);
	/* thread 0's ranges (step 2, length 3) cover every bit */
	ck_assert_uint_eq(expect, CONC_BITS);
	pch_bitmap_free(&b);
}

START_TEST(test_concurrent_set)
{
	run_conc(conc_worker, false);
}
END_TEST

START_TEST(test_concurrent_set_range)
{
	run_conc(range_worker, true);
}
END_TEST

static Suite *bitmap_suite(void)
{
	Suite *s = suite_create("bitmap");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_init_free);
	tcase_add_test(tc, test_set_clear_test);
	tcase_add_test(tc, test_next_set_clear);
	tcase_add_test(tc, test_set_range);
	tcase_add_test(tc, test_import_export);
	tcase_add_test(tc, test_concurrent_set);
	tcase_add_test(tc, test_concurrent_set_range);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(bitmap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
