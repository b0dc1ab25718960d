// SPDX-License-Identifier: MIT
/* test_nonce.c - Check suite for lib/nonce.c (the source's replay cache). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "nonce.h"

START_TEST(test_nonce_add_has)
{
	struct pch_nonce_set s;

	ck_assert_int_eq(pch_nonce_set_init(&s, 8), 0);
	ck_assert(!pch_nonce_set_has(&s, 42));
	ck_assert_int_eq(pch_nonce_set_add(&s, 42), 0);
	ck_assert(pch_nonce_set_has(&s, 42));
	ck_assert_int_eq(pch_nonce_set_add(&s, 42), -EEXIST);
	/* 0 is a nonce like any other, though it cannot live in a slot */
	ck_assert(!pch_nonce_set_has(&s, 0));
	ck_assert_int_eq(pch_nonce_set_add(&s, 0), 0);
	ck_assert_int_eq(pch_nonce_set_add(&s, 0), -EEXIST);
	ck_assert(pch_nonce_set_has(&s, 0));
	ck_assert_int_eq(pch_nonce_set_add(&s, UINT64_MAX), 0);
	ck_assert_int_eq(pch_nonce_set_add(&s, UINT64_MAX), -EEXIST);
	ck_assert_uint_eq(s.n, 3);
	pch_nonce_set_free(&s);
	ck_assert(!pch_nonce_set_has(&s, 42));
	ck_assert_int_eq(pch_nonce_set_add(&s, 42), -ENOSPC);
}
END_TEST

/* Full: new nonces are refused, never an old one evicted; replays stay replays. */
START_TEST(test_nonce_bound)
{
	struct pch_nonce_set s;
	uint64_t i;

	ck_assert_int_eq(pch_nonce_set_init(&s, 4096), 0);
	ck_assert_uint_ge(s.nslots, 2 * 4096);
	/* sequential nonces: the hash spreads them; each found again */
	for (i = 1; i <= 4096; i++)
		ck_assert_int_eq(pch_nonce_set_add(&s, i << 32), 0);
	ck_assert_uint_eq(s.n, 4096);
	ck_assert_int_eq(pch_nonce_set_add(&s, 5000ull << 32), -ENOSPC);
	ck_assert(!pch_nonce_set_has(&s, 5000ull << 32));
	for (i = 1; i <= 4096; i++) {
		ck_assert(pch_nonce_set_has(&s, i << 32));
		ck_assert_int_eq(pch_nonce_set_add(&s, i << 32), -EEXIST);
	}
	ck_assert_uint_eq(s.n, 4096);
	pch_nonce_set_free(&s);
}
END_TEST

START_TEST(test_nonce_random)
{
	struct pch_nonce_set s;
	unsigned seed = 7, i;
	uint64_t *v = malloc(1000 * sizeof(*v));

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(pch_nonce_set_init(&s, 1000), 0);
	for (i = 0; i < 1000; i++) {
		v[i] = ((uint64_t)rand_r(&seed) << 33) ^ ((uint64_t)rand_r(&seed) << 2) ^ i;
		ck_assert_int_eq(pch_nonce_set_add(&s, v[i]), 0);
	}
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(pch_nonce_set_add(&s, v[i]), -EEXIST);
	ck_assert(!pch_nonce_set_has(&s, v[0] ^ 1ull << 63));
	pch_nonce_set_free(&s);
	free(v);
}
END_TEST

START_TEST(test_nonce_init_bad)
{
	struct pch_nonce_set s;

	ck_assert_int_eq(pch_nonce_set_init(&s, 0), -EINVAL);
	ck_assert_int_eq(pch_nonce_set_init(&s, (1u << 24) + 1), -EINVAL);
	ck_assert_int_eq(pch_nonce_set_init(&s, 1), 0);
	ck_assert_int_eq(pch_nonce_set_add(&s, 9), 0);
	ck_assert_int_eq(pch_nonce_set_add(&s, 10), -ENOSPC);
	ck_assert_int_eq(pch_nonce_set_add(&s, 9), -EEXIST);
	pch_nonce_set_free(&s);
}
END_TEST

static Suite *nonce_suite(void)
{
	Suite *s = suite_create("nonce");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_nonce_add_has);
	tcase_add_test(tc, test_nonce_bound);
	tcase_add_test(tc, test_nonce_random);
	tcase_add_test(tc, test_nonce_init_bad);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(nonce_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
