// SPDX-License-Identifier: MIT
/* test_ctl.c - Check suite for lib/ctl.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ctl.h"
#include "pch/uffd-compat.h"

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

START_TEST(test_hello)
{
	struct pch_ctl_hello m;
	char why[128];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_HELLO, sizeof(m));
	m.version = PCH_CTL_VERSION;
	m.role = PCH_CTL_ROLE_VMM;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0);
	m.role = PCH_CTL_ROLE_MONITOR;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0);
	m.role = PCH_CTL_ROLE_MONITOR + 1;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "HELLO: unknown role 3");
	m.role = 0;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EINVAL);
	/* the version is looked at first */
	m.version = PCH_CTL_VERSION + 1;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EPROTO);
	ck_assert_str_eq(why, "HELLO: control protocol version 2, helper speaks 1");
	m.version = 0;
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EPROTO);
}
END_TEST

/* Two blocks: 100 pages of 4 KiB, 4 of 2 MiB. */
static void state_tab(struct pch_blocktab *t, uint64_t npages[2], uint32_t psz[2])
{
	const char *w = NULL;

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(pch_blocktab_add(t, "pc.ram", 100 * 4096, 4096, PCH_BACKING_ANON, &w), 0);
	ck_assert_int_eq(pch_blocktab_add(t, "huge", 8u << 20, 2u << 20, PCH_BACKING_HUGETLB, &w),
			 0);
	npages[0] = 100;
	npages[1] = 4;
	psz[0] = 4096;
	psz[1] = 2u << 20;
}

START_TEST(test_state)
{
	static struct pch_blocktab t;
	struct pch_ctl_state m;
	uint64_t npages[2];
	uint32_t psz[2];
	char why[128];

	state_tab(&t, npages, psz);
	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_STATE, sizeof(m));
	ck_assert_int_eq(pch_ctl_state_check(&m, why, sizeof(why)), 0);
	m.flags = 1;
	ck_assert_int_eq(pch_ctl_state_check(&m, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "STATE: expected one fd and no flags");
	m.flags = 0;
	m.reserved = 1;
	ck_assert_int_eq(pch_ctl_state_check(&m, why, sizeof(why)), -EINVAL);
	m.reserved = 0;
	/* size: exactly what the blocks need: header + 2 descriptors, 2 words x 5, 1 x 5 */
	m.size = pch_state_size(2, npages);
	ck_assert_uint_eq(m.size, 128 + 128 + 64);
	ck_assert_int_eq(pch_ctl_state_size_check(&m, &t, why, sizeof(why)), 0);
	m.size--;
	ck_assert_int_eq(pch_ctl_state_size_check(&m, &t, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "STATE: 319 bytes, the 2 blocks need 320");
	m.size += 2;
	ck_assert_int_eq(pch_ctl_state_size_check(&m, &t, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_state_layout)
{
	static struct pch_blocktab t;
	uint64_t npages[2], size, *mem;
	struct pch_state_block *sb;
	struct pch_state_hdr *sh;
	uint32_t psz[2];
	char why[128];

	state_tab(&t, npages, psz);
	size = pch_state_size(2, npages);
	mem = calloc(1, size);
	ck_assert_ptr_nonnull(mem);
	pch_state_init(mem, 2, npages, psz);
	sh = (struct pch_state_hdr *)mem;
	sb = (struct pch_state_block *)(sh + 1);
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), 0);
	/* header fields, each alone */
	sh->magic++;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "STATE: header does not describe the 2 blocks announced");
	sh->magic--;
	sh->version++;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sh->version--;
	sh->nr_blocks = 1;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sh->nr_blocks = 2;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size + 64, &t, why, sizeof(why)),
			 -EINVAL);
	/* descriptors: npages, page size, words, offset alignment and range */
	sb[1].npages++;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "STATE: block 1 descriptor does not match BLOCK huge");
	sb[1].npages--;
	sb[0].page_size = 8192;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sb[0].page_size = 4096;
	sb[0].words++;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sb[0].words--;
	sb[0].offset += 8;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	/* the last block's bitmaps end exactly at size: one 64-byte step more is out */
	sb[0].offset -= 8;
	ck_assert_uint_eq(sb[1].offset + PCH_STATE_BITMAPS * 8 * sb[1].words, size - 24);
	sb[1].offset += 64;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sb[1].offset = size;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	sb[1].offset = UINT64_MAX - 63;
	ck_assert_int_eq(pch_ctl_state_layout_check(sh, sb, size, &t, why, sizeof(why)), -EINVAL);
	free(mem);
}
END_TEST

START_TEST(test_sync)
{
	struct pch_ctl_sync m;
	char why[128];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_SYNC, sizeof(m));
	m.epoch = 0;
	ck_assert_int_eq(pch_ctl_sync_check(&m, 0, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "SYNC: epoch 0 not above 0");
	m.epoch = 1;
	ck_assert_int_eq(pch_ctl_sync_check(&m, 0, why, sizeof(why)), 0);
	m.epoch = 5;
	ck_assert_int_eq(pch_ctl_sync_check(&m, 5, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(pch_ctl_sync_check(&m, 4, why, sizeof(why)), 0);
	m.epoch = UINT64_MAX;
	ck_assert_int_eq(pch_ctl_sync_check(&m, UINT64_MAX - 1, why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_sync_check(&m, UINT64_MAX, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_uffd)
{
	struct pch_ctl_uffd m;
	char why[160];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_UFFD, sizeof(m));
	m.features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
		     UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM;
	ck_assert_int_eq(pch_ctl_uffd_check(&m, why, sizeof(why)), 0);
	m.features |= UFFD_FEATURE_EVENT_FORK;
	ck_assert_int_eq(pch_ctl_uffd_check(&m, why, sizeof(why)), -EOPNOTSUPP);
	ck_assert_ptr_nonnull(strstr(why, "EVENT_FORK"));
	m.features = UFFD_FEATURE_EVENT_REMAP;
	ck_assert_int_eq(pch_ctl_uffd_check(&m, why, sizeof(why)), -EOPNOTSUPP);
	ck_assert_ptr_nonnull(strstr(why, "EVENT_REMAP"));
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
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_state);
	tcase_add_test(tc, test_state_layout);
	tcase_add_test(tc, test_sync);
	tcase_add_test(tc, test_uffd);
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
