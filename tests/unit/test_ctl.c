// SPDX-License-Identifier: MIT
/* test_ctl.c - Check suite for lib/ctl.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static void hdr(struct pch_ctl_hdr *h, uint16_t type, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = PCH_CTL_MAGIC;
	h->type = type;
	h->len = len;
}

START_TEST(test_hdr)
{
	struct pch_ctl_simple m;
	char why[128];

	hdr(&m.hdr, PCH_CTL_START, sizeof(m));
	ck_assert_int_eq(pch_ctl_check_hdr(&m, sizeof(m)), 0);
	ck_assert_int_eq(pch_ctl_check_len(&m.hdr, sizeof(m), why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_check_hdr(&m, sizeof(m.hdr) - 1), -EBADMSG);
	ck_assert_int_eq(pch_ctl_check_hdr(&m, sizeof(m) + 8), -EBADMSG);
	m.hdr.magic++;
	ck_assert_int_eq(pch_ctl_check_hdr(&m, sizeof(m)), -EBADMSG);
}
END_TEST

START_TEST(test_len)
{
	struct pch_ctl_hdr h;
	char why[128];

	hdr(&h, PCH_CTL_REPLY, 32);
	ck_assert_int_eq(pch_ctl_check_len(&h, 32, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "unknown message type 10");
	hdr(&h, PCH_CTL_TYPE_MAX, 32);
	ck_assert_int_eq(pch_ctl_check_len(&h, 32, why, sizeof(why)), -EINVAL);
	hdr(&h, PCH_CTL_HELLO, 65);
	ck_assert_int_eq(pch_ctl_check_len(&h, 65, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "HELLO: 65 bytes, expected 64");
	/* BITMAP: at least its struct */
	hdr(&h, PCH_CTL_BITMAP, 48);
	ck_assert_int_eq(pch_ctl_check_len(&h, 48, why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_check_len(&h, 39, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_bitmap)
{
	struct pch_ctl_bitmap m;
	char why[128];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_BITMAP, sizeof(m) + 2 * 8);
	m.first_page = 64;
	m.npages = 65;
	ck_assert_int_eq(pch_ctl_bitmap_check(&m, 129, "ram", why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_bitmap_check(&m, 128, "ram", why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "BITMAP: range or length wrong for block ram");
	m.first_page = 1;
	ck_assert_int_eq(pch_ctl_bitmap_check(&m, 1024, "ram", why, sizeof(why)), -EINVAL);
	/* a count that would wrap the word count */
	m.first_page = 0;
	m.npages = UINT64_MAX;
	ck_assert_int_eq(pch_ctl_bitmap_check(&m, 1024, "ram", why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_block)
{
	struct pch_ctl_block m;
	char why[128];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_BLOCK, sizeof(m));
	m.page_size = 4096;
	m.backing = PCH_BACKING_ANON;
	m.host_addr = 0x7f0000000000ull;
	m.length = 1 << 20;
	strcpy(m.name, "pc.ram");
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.host_addr += 8;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	m.host_addr = UINT64_MAX - 4095;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	m.host_addr = 0;
	m.length = (PCH_CTL_BLOCK_MAX_PAGES + 1) * 4096;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -E2BIG);
	m.length = 4096;
	m.flags = 2;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	m.flags = 0;
	memset(m.name, 'a', sizeof(m.name));
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "BLOCK: name not NUL-terminated");
	m.name[0] = '\0';
	m.page_size = 0;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_hdr);
	tcase_add_test(tc, test_len);
	tcase_add_test(tc, test_bitmap);
	tcase_add_test(tc, test_block);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ctl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
