// SPDX-License-Identifier: MIT
/* test_image.c - Check suite for lib/image.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"

#define PS 4096u

static const struct pch_image base = {
    .seed = 0x5eed,
    .zero_frac = 0.25,
    .repeat_frac = 0.15,
    .page_size = PS,
};

START_TEST(test_deterministic)
{
	unsigned char *a = malloc(PS), *b = malloc(PS);
	struct pch_image other = base;
	unsigned differ = 0;
	uint64_t i;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	for (i = 0; i < 2000; i++) {
		memset(a, 0x11, PS);
		memset(b, 0x22, PS);
		pch_image_fill(&base, 3, i, a);
		pch_image_fill(&base, 3, i, b);
		ck_assert_mem_eq(a, b, PS);
		ck_assert_int_eq(pch_image_kind(&base, 3, i), pch_image_kind(&base, 3, i));
		ck_assert(pch_image_verify(&base, 3, i, a));
	}
	/* another seed, block or index gives other RANDOM pages */
	other.seed = 0x5eee;
	for (i = 0; i < 200; i++) {
		if (pch_image_kind(&base, 0, i) != PCH_PAGE_RANDOM)
			continue;
		pch_image_fill(&base, 0, i, a);
		pch_image_fill(&other, 0, i, b);
		differ += memcmp(a, b, PS) != 0;
		pch_image_fill(&base, 1, i, b);
		ck_assert(memcmp(a, b, PS));
		pch_image_fill(&base, 0, i + 1, b);
		ck_assert(memcmp(a, b, PS));
		/* pages (0, i) and (i, 0) are distinct: block and idx do not commute */
		pch_image_fill(&base, (uint32_t)i, 0, b);
		if (i)
			ck_assert(memcmp(a, b, PS));
	}
	ck_assert_uint_gt(differ, 50);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_fractions)
{
	const uint64_t n = 100000;
	uint64_t cnt[3] = {0}, i;
	uint32_t blk;

	for (blk = 0; blk < 2; blk++)
		for (i = 0; i < n / 2; i++)
			cnt[pch_image_kind(&base, blk, i)]++;
	/* binomial sd at n=100k is ~0.0014: 0.01 is a safe band */
	ck_assert_msg(cnt[PCH_PAGE_ZERO] > n * 0.24 && cnt[PCH_PAGE_ZERO] < n * 0.26, "zero %llu",
		      (unsigned long long)cnt[PCH_PAGE_ZERO]);
	ck_assert_msg(cnt[PCH_PAGE_REPEAT] > n * 0.14 && cnt[PCH_PAGE_REPEAT] < n * 0.16,
		      "repeat %llu", (unsigned long long)cnt[PCH_PAGE_REPEAT]);
	ck_assert_msg(cnt[PCH_PAGE_RANDOM] > n * 0.59 && cnt[PCH_PAGE_RANDOM] < n * 0.61,
		      "random %llu", (unsigned long long)cnt[PCH_PAGE_RANDOM]);
}
END_TEST

START_TEST(test_extreme_fractions)
{
	struct pch_image im = base;
	uint64_t i;

	im.zero_frac = 0;
	im.repeat_frac = 0;
	for (i = 0; i < 10000; i++)
		ck_assert_int_eq(pch_image_kind(&im, 0, i), PCH_PAGE_RANDOM);
	im.zero_frac = 1;
	for (i = 0; i < 10000; i++)
		ck_assert_int_eq(pch_image_kind(&im, 0, i), PCH_PAGE_ZERO);
	im.zero_frac = 0;
	im.repeat_frac = 1;
	for (i = 0; i < 10000; i++)
		ck_assert_int_eq(pch_image_kind(&im, 0, i), PCH_PAGE_REPEAT);
}
END_TEST

START_TEST(test_kinds_content)
{
	unsigned char *p = malloc(PS);
	unsigned seen[3] = {0}, bytes[256] = {0}, distinct = 0;
	uint64_t i;
	size_t j;

	ck_assert_ptr_nonnull(p);
	for (i = 0; i < 3000; i++) {
		enum pch_page_kind k = pch_image_kind(&base, 2, i);

		memset(p, 0xee, PS);
		pch_image_fill(&base, 2, i, p);
		seen[k]++;
		switch (k) {
		case PCH_PAGE_ZERO:
			ck_assert(pch_page_is_zero(p, PS));
			break;
		case PCH_PAGE_REPEAT:
			ck_assert_uint_ne(p[0], 0);
			/* every byte equals the first (no ck_assert per byte: slow) */
			ck_assert(!memcmp(p, p + 1, PS - 1));
			bytes[p[0]]++;
			break;
		case PCH_PAGE_RANDOM: {
			unsigned hist[256] = {0}, maxc = 0;

			ck_assert(!pch_page_is_zero(p, PS));
			for (j = 0; j < PS; j++)
				hist[p[j]]++;
			for (j = 0; j < 256; j++)
				maxc = hist[j] > maxc ? hist[j] : maxc;
			/* 16 expected per byte value; 64 would be absurd */
			ck_assert_uint_lt(maxc, 64);
			break;
		}
		}
	}
	for (j = 0; j < 256; j++)
		distinct += bytes[j] != 0;
	ck_assert_uint_eq(bytes[0], 0);
	ck_assert_uint_gt(distinct, 100); /* ~450 repeat pages over 255 values */
	ck_assert_uint_gt(seen[0], 0);
	ck_assert_uint_gt(seen[1], 0);
	ck_assert_uint_gt(seen[2], 0);
	free(p);
}
END_TEST

/* Flip each single byte position of some pages of each kind. */
START_TEST(test_verify_detects_flip)
{
	unsigned char *p = malloc(PS);
	unsigned done[3] = {0};
	uint64_t i;
	size_t pos;

	ck_assert_ptr_nonnull(p);
	for (i = 0; i < 500 && (done[0] < 3 || done[1] < 3 || done[2] < 3); i++) {
		enum pch_page_kind k = pch_image_kind(&base, 9, i);

		if (done[k] >= 3)
			continue;
		done[k]++;
		pch_image_fill(&base, 9, i, p);
		ck_assert(pch_image_verify(&base, 9, i, p));
		for (pos = 0; pos < PS; pos += 1 + (pos % 7)) {
			p[pos] ^= 0x01;
			ck_assert_msg(!pch_image_verify(&base, 9, i, p), "kind %d pos %zu", k, pos);
			p[pos] ^= 0x01;
		}
		/* first and last byte, high bit */
		p[0] ^= 0x80;
		ck_assert(!pch_image_verify(&base, 9, i, p));
		p[0] ^= 0x80;
		p[PS - 1] ^= 0x80;
		ck_assert(!pch_image_verify(&base, 9, i, p));
		p[PS - 1] ^= 0x80;
		ck_assert(pch_image_verify(&base, 9, i, p));
		/* right bytes, wrong page */
		ck_assert(!pch_image_verify(&base, 9, i + 1, p) ||
			  pch_image_kind(&base, 9, i + 1) == PCH_PAGE_ZERO);
	}
	ck_assert_uint_eq(done[0] + done[1] + done[2], 9);
	free(p);
}
END_TEST

START_TEST(test_unaligned_and_sizes)
{
	struct pch_image im = base;
	unsigned char *buf = malloc(65536 + 16);
	uint64_t i;

	ck_assert_ptr_nonnull(buf);
	im.page_size = 65536;
	for (i = 0; i < 20; i++) {
		pch_image_fill(&im, 1, i, buf + 3);
		ck_assert(pch_image_verify(&im, 1, i, buf + 3));
		buf[3 + 65535] ^= 4;
		ck_assert(!pch_image_verify(&im, 1, i, buf + 3));
	}
	free(buf);
}
END_TEST

START_TEST(test_page_is_zero)
{
	unsigned char buf[4096 + 16];
	size_t i;

	memset(buf, 0, sizeof(buf));
	ck_assert(pch_page_is_zero(buf, 4096));
	ck_assert(pch_page_is_zero(buf + 1, 4096));
	ck_assert(pch_page_is_zero(buf, 0));
	for (i = 0; i < 4096; i += 37) {
		buf[i] = 0x40;
		ck_assert(!pch_page_is_zero(buf, 4096));
		buf[i] = 0;
	}
	buf[4095] = 1;
	ck_assert(!pch_page_is_zero(buf, 4096));
	ck_assert(pch_page_is_zero(buf, 4095)); /* tail shorter than a word */
	ck_assert(!pch_page_is_zero(buf + 4090, 6));
	buf[4095] = 0;
	/* a size that is not a multiple of 64: the word tail is checked too */
	buf[8 * 509 + 3] = 2;
	ck_assert(!pch_page_is_zero(buf, 4095));
	ck_assert(pch_page_is_zero(buf, 8 * 509));
	buf[8 * 509 + 3] = 0;
	buf[4096] = 1; /* past the page: ignored */
	ck_assert(pch_page_is_zero(buf, 4096));
}
END_TEST

/* Not a benchmark, but catches a fill that got pathologically slow. */
START_TEST(test_fill_speed)
{
	struct pch_image im = base;
	struct timespec t0, t1;
	unsigned char *p = malloc(PS);
	uint64_t i, n = 50000;
	double sec;

	ck_assert_ptr_nonnull(p);
	im.zero_frac = 0;
	im.repeat_frac = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		pch_image_fill(&im, 0, i, p);
		ck_assert(pch_image_verify(&im, 0, i, p));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	/* 200 MB filled and verified; even an -O0 build does this in ~1 s */
	ck_assert_msg(sec < 5, "fill+verify of %llu pages took %.2f s", (unsigned long long)n, sec);
	free(p);
}
END_TEST

static Suite *image_suite(void)
{
	Suite *s = suite_create("image");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_deterministic);
	tcase_add_test(tc, test_fractions);
	tcase_add_test(tc, test_extreme_fractions);
	tcase_add_test(tc, test_kinds_content);
	tcase_add_test(tc, test_verify_detects_flip);
	tcase_add_test(tc, test_unaligned_and_sizes);
	tcase_add_test(tc, test_page_is_zero);
	tcase_add_test(tc, test_fill_speed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(image_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
