// SPDX-License-Identifier: MIT
/* test_ctl.c - Check suite for lib/ctl.c. */
#include <check.h>
#include <stdbool.h>
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
	struct pch_ctl_simple m = { 0 };
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
	union {
		struct pch_ctl_hdr h;
		uint8_t b[128];
	} u = { 0 };
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
	hdr(&u.h, PCH_CTL_BITMAP, 48);
	ck_assert_int_eq(pch_ctl_check_len(&u.h, 48, why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_check_len(&u.h, 39, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(test_bitmap)
{
	struct pch_ctl_bitmap m = { 0 };
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
	/* a count that would wrap the word count: over the packet bound first */
	m.first_page = 0;
	m.npages = UINT64_MAX;
	ck_assert_int_eq(pch_ctl_bitmap_check(&m, 1024, "ram", why, sizeof(why)), -E2BIG);
}
END_TEST

START_TEST(test_block)
{
	struct pch_ctl_block m = { 0 };
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
	struct pch_ctl_hello m = { 0 };
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
	struct pch_ctl_state m = { 0 };
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
	struct pch_ctl_sync m = { 0 };
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
	struct pch_ctl_uffd m = { 0 };
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

/* Each request type's length: exact (or at least, BITMAP), from both sides. */
static const struct len_case {
	uint16_t type;
	size_t len;
	bool variable;
} len_cases[] = {
	{ PCH_CTL_HELLO, sizeof(struct pch_ctl_hello), false },
	{ PCH_CTL_BLOCK, sizeof(struct pch_ctl_block), false },
	{ PCH_CTL_BITMAP, sizeof(struct pch_ctl_bitmap), true },
	{ PCH_CTL_UFFD, sizeof(struct pch_ctl_uffd), false },
	{ PCH_CTL_RING, sizeof(struct pch_ctl_ring), false },
	{ PCH_CTL_START, sizeof(struct pch_ctl_simple), false },
	{ PCH_CTL_SYNC, sizeof(struct pch_ctl_sync), false },
	{ PCH_CTL_STATS, sizeof(struct pch_ctl_simple), false },
	{ PCH_CTL_SHUTDOWN, sizeof(struct pch_ctl_simple), false },
	{ PCH_CTL_STATE, sizeof(struct pch_ctl_state), false },
};

START_TEST(test_limits_len)
{
	const struct len_case *c = &len_cases[_i];
	union {
		struct pch_ctl_hdr h;
		uint8_t b[256];
	} u = { 0 };
	char why[128];

	hdr(&u.h, c->type, (uint32_t)c->len);
	ck_assert_int_eq(pch_ctl_check_len(&u.h, c->len, why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_check_len(&u.h, c->len - 1, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, pch_ctl_req_name(c->type)));
	ck_assert_int_eq(pch_ctl_check_len(&u.h, c->len + 1, why, sizeof(why)),
			 c->variable ? 0 : -EINVAL);
}
END_TEST

/* The header: at least 16 bytes, the magic, len == the packet's size. */
START_TEST(test_limits_hdr)
{
	static uint8_t buf[PCH_CTL_MAX_MSG + 8];
	struct pch_ctl_hdr *h = (void *)buf;

	hdr(h, PCH_CTL_START, sizeof(*h));
	ck_assert_int_eq(pch_ctl_check_hdr(buf, sizeof(*h)), 0);
	ck_assert_int_eq(pch_ctl_check_hdr(buf, sizeof(*h) - 1), -EBADMSG);
	ck_assert_int_eq(pch_ctl_check_hdr(buf, 0), -EBADMSG);
	h->len = sizeof(*h) + 1;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, sizeof(*h)), -EBADMSG);
	h->len = sizeof(*h) - 1;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, sizeof(*h)), -EBADMSG);
	hdr(h, PCH_CTL_BITMAP, PCH_CTL_MAX_MSG);
	ck_assert_int_eq(pch_ctl_check_hdr(buf, PCH_CTL_MAX_MSG), 0);
	h->len = PCH_CTL_MAX_MSG + 1;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, PCH_CTL_MAX_MSG + 1), -E2BIG);
	h->len = PCH_CTL_MAX_MSG;
	h->flags = 1;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, PCH_CTL_MAX_MSG), -EBADMSG);
	h->flags = 0x8000;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, PCH_CTL_MAX_MSG), -EBADMSG);
	h->flags = 0;
	h->magic = PCH_CTL_MAGIC + 1;
	ck_assert_int_eq(pch_ctl_check_hdr(buf, PCH_CTL_MAX_MSG), -EBADMSG);
	/* unknown types, REPLY included: a VMM never sends one */
	hdr(h, 0, 24);
	ck_assert_int_eq(pch_ctl_check_len(h, 24, (char[64]){ 0 }, 64), -EINVAL);
	hdr(h, PCH_CTL_TYPE_MAX - 1, sizeof(struct pch_ctl_state));
	ck_assert_int_eq(pch_ctl_check_len(h, sizeof(struct pch_ctl_state), (char[64]){ 0 }, 64),
			 0);
	hdr(h, PCH_CTL_TYPE_MAX, sizeof(struct pch_ctl_state));
	ck_assert_int_eq(pch_ctl_check_len(h, sizeof(struct pch_ctl_state), (char[64]){ 0 }, 64),
			 -EINVAL);
}
END_TEST

/* BITMAP: first_page x64, the range in the block, exact length. */
START_TEST(test_limits_bitmap)
{
	struct {
		struct pch_ctl_bitmap m;
		uint64_t w[2];
	} b;
	char why[128];

	memset(&b, 0, sizeof(b));
	hdr(&b.m.hdr, PCH_CTL_BITMAP, sizeof(b.m) + 8);
	b.m.first_page = 64;
	b.m.npages = 64;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 128, "r", why, sizeof(why)), 0);
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 127, "r", why, sizeof(why)), -EINVAL);
	b.m.first_page = 63;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), -EINVAL);
	b.m.first_page = 0;
	b.m.npages = 1;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1, "r", why, sizeof(why)), 0);
	b.m.npages = 65; /* two words, one sent */
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), -EINVAL);
	b.m.hdr.len += 8;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), 0);
	b.m.hdr.len += 8;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), -EINVAL);
	/* first_page past the block with npages 0 */
	b.m.hdr.len = sizeof(b.m);
	b.m.npages = 0;
	b.m.first_page = 1024;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), 0);
	b.m.first_page = 1088;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1024, "r", why, sizeof(why)), -EINVAL);
	/* the most bits one packet carries fill PCH_CTL_MAX_MSG exactly */
	b.m.first_page = 0;
	b.m.npages = PCH_CTL_BITMAP_MAX_PAGES;
	b.m.hdr.len = (uint32_t)(sizeof(b.m) + PCH_CTL_BITMAP_MAX_PAGES / 8);
	ck_assert_uint_eq(b.m.hdr.len, PCH_CTL_MAX_MSG);
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1ull << 32, "r", why, sizeof(why)), 0);
	b.m.npages++;
	b.m.hdr.len += 8;
	ck_assert_int_eq(pch_ctl_bitmap_check(&b.m, 1ull << 32, "r", why, sizeof(why)), -E2BIG);
	ck_assert_str_eq(why, "BITMAP: 523969 pages for block r, at most 523968 a packet");
}
END_TEST

/* Fields that must be 0: checked with the length, once n covers them. */
START_TEST(test_limits_reserved)
{
	union {
		struct pch_ctl_hdr h;
		struct pch_ctl_simple s;
		struct pch_ctl_ring r;
		struct pch_ctl_bitmap b;
		uint8_t raw[64];
	} u;
	static const uint16_t simple[] = { PCH_CTL_START, PCH_CTL_STATS, PCH_CTL_SHUTDOWN };
	char why[128];
	unsigned i;

	for (i = 0; i < 3; i++) {
		memset(&u, 0, sizeof(u));
		hdr(&u.h, simple[i], sizeof(u.s));
		ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.s), why, sizeof(why)), 0);
		u.s.flags = 1;
		ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.s), why, sizeof(why)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(why, "flags or reserved not 0"));
		u.s.flags = 0;
		u.s.reserved = 1u << 31;
		ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.s), why, sizeof(why)), -EINVAL);
	}
	memset(&u, 0, sizeof(u));
	hdr(&u.h, PCH_CTL_RING, sizeof(u.r));
	u.r.nr_entries = 64;
	u.r.size = 1 << 16;
	ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.r), why, sizeof(why)), 0);
	u.r.reserved = 1;
	ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.r), why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "RING: reserved not 0");
	memset(&u, 0, sizeof(u));
	hdr(&u.h, PCH_CTL_BITMAP, sizeof(u.b));
	ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.b), why, sizeof(why)), 0);
	u.b.reserved = 1;
	ck_assert_int_eq(pch_ctl_check_len(&u.h, sizeof(u.b), why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "BITMAP: reserved not 0");
}
END_TEST

/* HELLO's name: NUL within 32 bytes, no control characters (< 0x20, 0x7f). */
START_TEST(test_limits_hello_name)
{
	struct pch_ctl_hello m = { 0 };
	char why[128];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_HELLO, sizeof(m));
	m.version = PCH_CTL_VERSION;
	m.role = PCH_CTL_ROLE_VMM;
	memset(m.name, 'q', sizeof(m.name) - 1);
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0);
	m.name[sizeof(m.name) - 1] = 'q';
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "HELLO: name not NUL-terminated");
	memset(m.name, 0, sizeof(m.name));
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0); /* empty: fine */
	strcpy(m.name, " ~");
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0);
	strcpy(m.name, "a\x1f");
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "HELLO: character 0x1f in name");
	strcpy(m.name, "a\x7f");
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), -EINVAL);
	strcpy(m.name, "caf\xc3\xa9"); /* UTF-8 */
	ck_assert_int_eq(pch_ctl_hello_check(&m, why, sizeof(why)), 0);
}
END_TEST

/* BLOCK: alignment, wrap, page count, flags, name, from both sides. */
START_TEST(test_limits_block)
{
	struct pch_ctl_block m = { 0 };
	char why[160];

	memset(&m, 0, sizeof(m));
	hdr(&m.hdr, PCH_CTL_BLOCK, sizeof(m));
	m.page_size = 4096;
	m.backing = PCH_BACKING_ANON;
	strcpy(m.name, "pc.ram");
	m.length = PCH_CTL_BLOCK_MAX_PAGES * 4096;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.length += 4096;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -E2BIG);
	ck_assert_str_eq(why, "BLOCK pc.ram: 4294967297 pages, at most 4294967296");
	/* 2 MiB pages: the bound is in pages, not bytes */
	m.page_size = 2u << 20;
	m.length = PCH_CTL_BLOCK_MAX_PAGES * (2ull << 20);
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.length += 2u << 20;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -E2BIG);
	m.host_addr = 1ull << 21;
	m.length = 1ull << 21;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.host_addr += 4096;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	/* the highest block that does not wrap, and one page further */
	m.page_size = 4096;
	m.host_addr = 0ull - 8192;
	m.length = 8191;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.length = 8192;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	m.host_addr = 0;
	m.flags = PCH_CTL_BLOCK_F_FD;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.flags = PCH_CTL_BLOCK_F_FD << 1;
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	m.flags = 0;
	memset(m.name, 'n', sizeof(m.name) - 1);
	m.name[sizeof(m.name) - 1] = '\0';
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), 0);
	m.name[sizeof(m.name) - 1] = 'n';
	ck_assert_int_eq(pch_ctl_block_check(&m, why, sizeof(why)), -EINVAL);
	strcpy(m.name, "x");
	m.page_size = 4096 + 4096 / 2;
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
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_state);
	tcase_add_test(tc, test_state_layout);
	tcase_add_test(tc, test_sync);
	tcase_add_test(tc, test_uffd);
	suite_add_tcase(s, tc);

	/* every limit from both sides */
	tc = tcase_create("limits");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_limits_len, 0,
			    (int)(sizeof(len_cases) / sizeof(len_cases[0])));
	tcase_add_test(tc, test_limits_hdr);
	tcase_add_test(tc, test_limits_bitmap);
	tcase_add_test(tc, test_limits_block);
	tcase_add_test(tc, test_limits_reserved);
	tcase_add_test(tc, test_limits_hello_name);
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
