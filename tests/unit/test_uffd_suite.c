// SPDX-License-Identifier: MIT
/*
 * test_uffd_suite.c - Check suite for pch-uffd-suite's skip decision
 * (tools/pch-uffd-suite/needs.c): a case needing a feature or an ioctl the
 * probe did not find is skipped naming it, never run and failed.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/pch-uffd-suite/suite.h"

#define IO(x) US_IOCTL(_UFFDIO_##x)

/* a probe that found everything this suite's cases use */
static void full_probe(struct us_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->uffd_ok = true;
	p->features = 0x1ffff;
	for (int k = 0; k < US_NKINDS; k++) {
		p->kind_ok[k] = true;
		for (int m = 0; m < US_NMODES; m++)
			p->reg_ioctls[k][m] = IO(WAKE) | IO(COPY) | IO(ZEROPAGE) | IO(MOVE) |
					      IO(WRITEPROTECT) | IO(CONTINUE) | IO(POISON);
	}
}

static const struct us_case poison = {
	"missing", "poison", US_ALL_KINDS, UFFD_FEATURE_POISON, UFFDIO_REGISTER_MODE_MISSING,
	IO(POISON) | IO(COPY), NULL, 0, "",
};
static const struct us_case cont = {
	"missing", "continue", US_SHARED_KINDS, 0, UFFDIO_REGISTER_MODE_MINOR, IO(CONTINUE), NULL,
	0, "",
};
static const struct us_case zero = {
	"missing", "zeropage", US_ALL_KINDS, 0, UFFDIO_REGISTER_MODE_MISSING, IO(ZEROPAGE), NULL,
	0, "",
};
static const struct us_case api = { "api", "handshake", 0, 0, 0, 0, NULL, 0, "" };

START_TEST(test_all_present_runs)
{
	struct us_probe p;
	char why[200];

	full_probe(&p);
	ck_assert_int_eq(us_decide(&p, &poison, US_ANON, why, sizeof(why)), 0);
	ck_assert_int_eq(us_decide(&p, &cont, US_SHMEM, why, sizeof(why)), 0);
	ck_assert_int_eq(us_decide(&p, &cont, US_HUGETLB_SHARED, why, sizeof(why)), 0);
	ck_assert_int_eq(us_decide(&p, &api, US_KIND_NONE, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
}
END_TEST

START_TEST(test_missing_feature_skips)
{
	struct us_probe p;
	char why[200];

	full_probe(&p);
	p.features &= ~(uint64_t)UFFD_FEATURE_POISON;
	ck_assert_int_eq(us_decide(&p, &poison, US_ANON, why, sizeof(why)), 1);
	ck_assert_str_eq(why, "missing UFFD_FEATURE_POISON");
	/* a case that does not need it still runs */
	ck_assert_int_eq(us_decide(&p, &zero, US_ANON, why, sizeof(why)), 0);
}
END_TEST

START_TEST(test_kind_feature_skips)
{
	struct us_probe p;
	char why[200];

	/* MINOR on shmem needs MINOR_SHMEM, on hugetlb MINOR_HUGETLBFS */
	full_probe(&p);
	p.features &= ~(uint64_t)UFFD_FEATURE_MINOR_SHMEM;
	ck_assert_int_eq(us_decide(&p, &cont, US_SHMEM, why, sizeof(why)), 1);
	ck_assert_str_eq(why, "missing UFFD_FEATURE_MINOR_SHMEM");
	ck_assert_int_eq(us_decide(&p, &cont, US_HUGETLB_SHARED, why, sizeof(why)), 0);

	/* several missing features are all named */
	full_probe(&p);
	p.features &= ~(uint64_t)(UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_HUGETLBFS);
	ck_assert_int_eq(us_decide(&p, &poison, US_HUGETLB, why, sizeof(why)), 1);
	ck_assert_ptr_nonnull(strstr(why, "UFFD_FEATURE_POISON"));
	ck_assert_ptr_nonnull(strstr(why, "UFFD_FEATURE_MISSING_HUGETLBFS"));
}
END_TEST

START_TEST(test_missing_ioctl_skips)
{
	struct us_probe p;
	char why[200];

	/* hugetlb registrations do not offer ZEROPAGE: that comes from the mask */
	full_probe(&p);
	p.reg_ioctls[US_HUGETLB][US_MODE_MISSING] &= ~IO(ZEROPAGE);
	ck_assert_int_eq(us_decide(&p, &zero, US_HUGETLB, why, sizeof(why)), 1);
	ck_assert_ptr_nonnull(strstr(why, "missing UFFDIO_ZEROPAGE"));
	ck_assert_ptr_nonnull(strstr(why, "hugetlb"));
	ck_assert_int_eq(us_decide(&p, &zero, US_ANON, why, sizeof(why)), 0);
}
END_TEST

START_TEST(test_unavailable_skips)
{
	struct us_probe p;
	char why[200];

	full_probe(&p);
	p.kind_ok[US_HUGETLB] = false;
	strcpy(p.kind_why[US_HUGETLB], "no free huge pages");
	ck_assert_int_eq(us_decide(&p, &zero, US_HUGETLB, why, sizeof(why)), 1);
	ck_assert_str_eq(why, "no free huge pages");

	full_probe(&p);
	p.reg_err[US_SHMEM][US_MODE_MINOR] = 22; /* EINVAL */
	ck_assert_int_eq(us_decide(&p, &cont, US_SHMEM, why, sizeof(why)), 1);
	ck_assert_ptr_nonnull(strstr(why, "UFFDIO_REGISTER_MODE_MINOR refused on shmem"));

	full_probe(&p);
	p.uffd_ok = false;
	strcpy(p.uffd_why, "userfaultfd(2) and /dev/userfaultfd: Operation not permitted");
	ck_assert_int_eq(us_decide(&p, &api, US_KIND_NONE, why, sizeof(why)), 1);
	ck_assert_ptr_nonnull(strstr(why, "userfaultfd unavailable"));
}
END_TEST

static Suite *uffd_suite_suite(void)
{
	Suite *s = suite_create("uffd_suite");
	TCase *tc = tcase_create("decide");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_all_present_runs);
	tcase_add_test(tc, test_missing_feature_skips);
	tcase_add_test(tc, test_kind_feature_skips);
	tcase_add_test(tc, test_missing_ioctl_skips);
	tcase_add_test(tc, test_unavailable_skips);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(uffd_suite_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
