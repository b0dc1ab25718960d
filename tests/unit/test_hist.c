// SPDX-License-Identifier: MIT
/* test_hist.c - Check suite for lib/hist.c. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "hist.h"

/* Exact quantile of a sorted array: the ceil(q*n)-th smallest. */
static uint64_t exact_q(const uint64_t *v, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* |got - want| <= want / 16 (and never below want: upper bucket bound) */
static void check_rel(uint64_t got, uint64_t want, const char *what, double q)
{
	ck_assert_msg(got >= want && got - want <= want / 16, "%s q=%.3f: got %llu want %llu", what,
		      q, (unsigned long long)got, (unsigned long long)want);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

START_TEST(test_empty)
{
	struct pch_hist h;
	uint64_t out[4] = {9, 9, 9, 9};

	pch_hist_init(&h);
	ck_assert_uint_eq(h.count, 0);
	ck_assert_uint_eq(h.min, UINT64_MAX);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.5), 0);
	ck_assert_uint_eq(pch_hist_mean(&h), 0);
	pch_hist_log2_us(&h, out, 4);
	ck_assert_uint_eq(out[0] + out[1] + out[2] + out[3], 0);
}
END_TEST

START_TEST(test_min_max_mean)
{
	struct pch_hist h;

	pch_hist_init(&h);
	pch_hist_add(&h, 1000);
	pch_hist_add(&h, 3000);
	pch_hist_add(&h, 5);
	pch_hist_add(&h, 123456789);
	ck_assert_uint_eq(h.count, 4);
	ck_assert_uint_eq(h.min, 5);
	ck_assert_uint_eq(h.max, 123456789);
	ck_assert_uint_eq(pch_hist_mean(&h), (1000 + 3000 + 5 + 123456789) / 4);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0), 5);
	ck_assert_uint_eq(pch_hist_quantile(&h, 1), 123456789);
	/* quantiles are clamped to [min, max] */
	ck_assert_uint_le(pch_hist_quantile(&h, 0.99), 123456789);
	ck_assert_uint_ge(pch_hist_quantile(&h, 0.01), 5);
	/* q = 0 is the exact minimum, not its bucket's upper bound */
	pch_hist_init(&h);
	pch_hist_add(&h, 1000);
	pch_hist_add(&h, 5000);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0), 1000);
	ck_assert_uint_eq(pch_hist_quantile(&h, -1), 1000);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.5), 1023);
	ck_assert_uint_eq(pch_hist_quantile(&h, 2), 5000);
	/* a single value: every quantile is that value */
	pch_hist_init(&h);
	pch_hist_add(&h, 777777);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.5), 777777);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.999), 777777);
	ck_assert_uint_eq(pch_hist_mean(&h), 777777);
	/* zero and huge values */
	pch_hist_add(&h, 0);
	pch_hist_add(&h, UINT64_MAX);
	ck_assert_uint_eq(h.min, 0);
	ck_assert_uint_eq(h.max, UINT64_MAX);
	ck_assert_uint_eq(pch_hist_quantile(&h, 1.0), UINT64_MAX);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.0), 0);
}
END_TEST

START_TEST(test_bucket_consistency)
{
	uint64_t lo, hi, prev_hi = 0;
	unsigned i;

	/* buckets tile [0, UINT64_MAX] in order, each within 1/16 */
	for (i = 0; i < PCH_HIST_BUCKETS; i++) {
		pch_hist_bucket_range(i, &lo, &hi);
		ck_assert_uint_le(lo, hi);
		if (i)
			ck_assert_uint_eq(lo, prev_hi + 1);
		else
			ck_assert_uint_eq(lo, 0);
		ck_assert_uint_eq(pch_hist_bucket_of(lo), i);
		ck_assert_uint_eq(pch_hist_bucket_of(hi), i);
		if (i + 1 < PCH_HIST_BUCKETS)
			ck_assert_uint_le(hi - lo, lo / 16);
		prev_hi = hi;
	}
	ck_assert_uint_eq(prev_hi, UINT64_MAX);
	ck_assert_uint_eq(pch_hist_bucket_of(UINT64_MAX), PCH_HIST_BUCKETS - 1);
	/* random values land in a bucket whose range holds them */
	uint64_t s = 0x1234567;
	for (i = 0; i < 100000; i++) {
		uint64_t v = xorshift(&s) >> (xorshift(&s) % 64);
		unsigned b = pch_hist_bucket_of(v);

		ck_assert_uint_lt(b, PCH_HIST_BUCKETS);
		pch_hist_bucket_range(b, &lo, &hi);
		ck_assert(lo <= v && v <= hi);
	}
	for (i = 0; i < PCH_HIST_SUB; i++)
		ck_assert_uint_eq(pch_hist_bucket_of(i), i);
}
END_TEST

static void quantile_check(uint64_t *v, size_t n, const char *what)
{
	static const double qs[] = {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999};
	struct pch_hist h;
	size_t i;

	pch_hist_init(&h);
	for (i = 0; i < n; i++)
		pch_hist_add(&h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		check_rel(pch_hist_quantile(&h, qs[i]), exact_q(v, n, qs[i]), what, qs[i]);
	ck_assert_uint_eq(h.min, v[0]);
	ck_assert_uint_eq(h.max, v[n - 1]);
}

START_TEST(test_quantile_uniform)
{
	size_t n = 200000, i;
	uint64_t *v = malloc(n * sizeof(*v)), s = 42;

	ck_assert_ptr_nonnull(v);
	for (i = 0; i < n; i++)
		v[i] = 10000 + xorshift(&s) % 990000; /* 10 us .. 1 ms */
	quantile_check(v, n, "uniform");
	free(v);
}
END_TEST

START_TEST(test_quantile_exponential)
{
	size_t n = 200000, i;
	uint64_t *v = malloc(n * sizeof(*v)), s = 7;

	ck_assert_ptr_nonnull(v);
	for (i = 0; i < n; i++) {
		double u = ((double)(xorshift(&s) >> 11) + 0.5) * 0x1.0p-53;

		v[i] = (uint64_t)(-log(u) * 50000.0); /* mean 50 us */
	}
	quantile_check(v, n, "exponential");
	free(v);
}
END_TEST

START_TEST(test_quantile_exact_small)
{
	struct pch_hist h;
	unsigned i;

	/* 1..100: small values have one bucket each up to 31, then 1/16 */
	pch_hist_init(&h);
	for (i = 1; i <= 100; i++)
		pch_hist_add(&h, i);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.10), 10);
	ck_assert_uint_eq(pch_hist_quantile(&h, 0.30), 30);
	check_rel(pch_hist_quantile(&h, 0.5), 50, "1..100", 0.5);
	check_rel(pch_hist_quantile(&h, 0.9), 90, "1..100", 0.9);
	ck_assert_uint_eq(pch_hist_mean(&h), 50);
}
END_TEST

START_TEST(test_merge)
{
	struct pch_hist a, b, all;
	uint64_t s = 99;
	unsigned i;

	pch_hist_init(&a);
	pch_hist_init(&b);
	pch_hist_init(&all);
	for (i = 0; i < 50000; i++) {
		uint64_t v = xorshift(&s) % 10000000;

		pch_hist_add(i % 3 ? &a : &b, v);
		pch_hist_add(&all, v);
	}
	pch_hist_add(&b, 3); /* b holds the min */
	pch_hist_add(&all, 3);
	pch_hist_merge(&a, &b);
	ck_assert_uint_eq(a.count, all.count);
	ck_assert_uint_eq(a.sum, all.sum);
	ck_assert_uint_eq(a.min, 3);
	ck_assert_uint_eq(a.max, all.max);
	for (i = 0; i < PCH_HIST_BUCKETS; i++)
		ck_assert_uint_eq(a.bucket[i], all.bucket[i]);
	ck_assert_uint_eq(pch_hist_quantile(&a, 0.5), pch_hist_quantile(&all, 0.5));

	/* merging an empty histogram changes nothing, into empty copies */
	pch_hist_init(&b);
	pch_hist_merge(&a, &b);
	ck_assert_uint_eq(a.min, 3);
	ck_assert_uint_eq(a.count, all.count);
	pch_hist_merge(&b, &a);
	ck_assert_uint_eq(b.min, 3);
	ck_assert_uint_eq(b.max, all.max);
	ck_assert_uint_eq(pch_hist_mean(&b), pch_hist_mean(&all));
}
END_TEST

START_TEST(test_log2_us)
{
	struct pch_hist h;
	uint64_t out[8];

	pch_hist_init(&h);
	pch_hist_add(&h, 500);	       /* 0.5 us -> 0 */
	pch_hist_add(&h, 1500);	       /* 1 us   -> 0 */
	pch_hist_add(&h, 2500);	       /* 2 us   -> 1 */
	pch_hist_add(&h, 3100);	       /* 3 us   -> 1 */
	pch_hist_add(&h, 5000);	       /* 5 us   -> 2 */
	pch_hist_add(&h, 2040);	       /* 2 us (not 1.99 "us" of 1024 ns) -> 1 */
	pch_hist_add(&h, 65000);       /* 65 us  -> 6 */
	pch_hist_add(&h, 100000);      /* 100 us -> 6 */
	pch_hist_add(&h, 1000000);     /* 1 ms   -> 9 -> clamped to 7 */
	pch_hist_add(&h, 10000000000); /* 10 s   -> clamped to 7 */
	pch_hist_log2_us(&h, out, 8);
	ck_assert_uint_eq(out[0], 2);
	ck_assert_uint_eq(out[1], 3);
	ck_assert_uint_eq(out[2], 1);
	ck_assert_uint_eq(out[3], 0);
	ck_assert_uint_eq(out[5], 0);
	ck_assert_uint_eq(out[6], 2);
	ck_assert_uint_eq(out[7], 2);

	/* totals are preserved over a wide random spread */
	uint64_t s = 5, sum = 0, big[40];
	unsigned i;

	pch_hist_init(&h);
	for (i = 0; i < 10000; i++)
		pch_hist_add(&h, xorshift(&s) >> (20 + xorshift(&s) % 44));
	pch_hist_log2_us(&h, big, 40);
	for (i = 0; i < 40; i++)
		sum += big[i];
	ck_assert_uint_eq(sum, 10000);
}
END_TEST

static Suite *hist_suite(void)
{
	Suite *s = suite_create("hist");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_min_max_mean);
	tcase_add_test(tc, test_bucket_consistency);
	tcase_add_test(tc, test_quantile_uniform);
	tcase_add_test(tc, test_quantile_exponential);
	tcase_add_test(tc, test_quantile_exact_small);
	tcase_add_test(tc, test_merge);
	tcase_add_test(tc, test_log2_us);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hist_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
