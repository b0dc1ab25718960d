// SPDX-License-Identifier: MIT
/* test_codec.c - Check suite for lib/codec.c. */
#include <check.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "codec.h"
#include "util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ret must be err, and *why must name the field (a substring of it). */
#define EXPECT(call, err, substr)                                                                  \
	do {                                                                                       \
		const char *why_ = NULL;                                                           \
		const char **why = &why_;                                                          \
		int ret_ = (call);                                                                 \
		ck_assert_msg(ret_ == (err), "%s: got %d want %d (%s)", #call, ret_, (err),        \
			      why_ ? why_ : "-");                                                  \
		if (err) {                                                                         \
			ck_assert_ptr_nonnull(why_);                                               \
			ck_assert_msg(strstr(why_, (substr)) != NULL,                              \
				      "%s: why \"%s\" lacks \"%s\"", #call, why_, (substr));       \
		}                                                                                  \
	} while (0)

static struct pch_session sess;
static struct pch_blocktab tab;

/* block 0: 64 MiB of 4 KiB, block 1: 8 MiB of 2 MiB, block 2: 4 pages */
static void setup(void)
{
	const char *why = NULL;
	unsigned i;

	for (i = 0; i < sizeof(sess.id); i++)
		sess.id[i] = (uint8_t)(0xa0 + i);
	for (i = 0; i < sizeof(sess.key); i++)
		sess.key[i] = (uint8_t)(3 * i + 1);
	memset(&tab, 0, sizeof(tab));
	ck_assert_int_eq(pch_blocktab_add(&tab, "pc.ram", 64 * MiB, 4096, PCH_BACKING_ANON, &why),
			 0);
	ck_assert_int_eq(
	    pch_blocktab_add(&tab, "hugemem", 8 * MiB, 2 * MiB, PCH_BACKING_HUGETLB, &why), 0);
	ck_assert_int_eq(pch_blocktab_add(&tab, "small", 16 * KiB, 4096, PCH_BACKING_MEMFD, &why),
			 0);
}

static void teardown(void)
{
}

/* ------------------------------------------------------------------ */
/* block table                                                          */
/* ------------------------------------------------------------------ */

START_TEST(test_blocktab_add)
{
	struct pch_blocktab t;
	char name[80];
	unsigned i;

	ck_assert_uint_eq(tab.count, 3);
	ck_assert_uint_eq(tab.min_page_size, 4096);
	ck_assert_uint_eq(tab.total_pages, 16384 + 4 + 4);
	ck_assert_uint_eq(tab.b[1].npages, 4);
	ck_assert_uint_eq(tab.b[1].page_shift, 21);
	ck_assert_uint_eq(tab.b[0].page_shift, 12);
	ck_assert_str_eq(tab.b[2].name, "small");

	memset(&t, 0, sizeof(t));
	EXPECT(pch_blocktab_add(&t, "huge", 4 * MiB, 2 * MiB, PCH_BACKING_HUGETLB, why), 0, "");
	ck_assert_uint_eq(t.min_page_size, 2 * MiB);
	EXPECT(pch_blocktab_add(&t, "", 4096, 4096, 1, why), -EBADMSG, "empty name");
	EXPECT(pch_blocktab_add(&t, NULL, 4096, 4096, 1, why), -EBADMSG, "empty name");
	memset(name, 'x', sizeof(name));
	name[PCH_BLOCK_NAME_LEN] = '\0'; /* 64 chars: no room for the NUL */
	EXPECT(pch_blocktab_add(&t, name, 4096, 4096, 1, why), -EBADMSG, "not NUL-terminated");
	name[PCH_BLOCK_NAME_LEN - 1] = '\0'; /* 63 chars: fits */
	EXPECT(pch_blocktab_add(&t, name, 4096, 4096, 1, why), 0, "");
	EXPECT(pch_blocktab_add(&t, "bad\nname", 4096, 4096, 1, why), -EBADMSG,
	       "control character");
	EXPECT(pch_blocktab_add(&t, "huge", 4096, 4096, 1, why), -EBADMSG, "duplicate");
	EXPECT(pch_blocktab_add(&t, "a", 4096, 0, 1, why), -EBADMSG, "page_size");
	EXPECT(pch_blocktab_add(&t, "a", 4096, 2048, 1, why), -EBADMSG, "page_size");
	EXPECT(pch_blocktab_add(&t, "a", 12288, 12288, 1, why), -EBADMSG, "page_size");
	EXPECT(pch_blocktab_add(&t, "a", 0, 4096, 1, why), -EBADMSG, "block: size");
	EXPECT(pch_blocktab_add(&t, "a", 4096 + 512, 4096, 1, why), -EBADMSG, "block: size");
	EXPECT(pch_blocktab_add(&t, "a", 2 * MiB + 4096, 2 * MiB, 1, why), -EBADMSG, "block: size");
	EXPECT(pch_blocktab_add(&t, "a", 4096, 4096, 0, why), -EBADMSG, "backing");
	EXPECT(pch_blocktab_add(&t, "a", 4096, 4096, PCH_BACKING_MAX, why), -EBADMSG, "backing");
	ck_assert_uint_eq(t.count, 2); /* failures added nothing */
	ck_assert_uint_eq(t.min_page_size, 4096);
	ck_assert_uint_eq(t.total_pages, 2 + 1);

	memset(&t, 0, sizeof(t));
	for (i = 0; i < PCH_MAX_BLOCKS; i++) {
		snprintf(name, sizeof(name), "b%u", i);
		EXPECT(pch_blocktab_add(&t, name, 4096, 4096, PCH_BACKING_THP, why), 0, "");
	}
	EXPECT(pch_blocktab_add(&t, "one-more", 4096, 4096, 1, why), -E2BIG, "too many");
}
END_TEST

START_TEST(test_blocktab_roundtrip)
{
	unsigned char buf[8 + PCH_MAX_BLOCKS * 80];
	struct pch_blocktab t;
	int n;

	n = pch_blocktab_encode(&tab, buf, sizeof(buf));
	ck_assert_int_eq(n, 8 + 3 * 80);
	ck_assert_int_eq(pch_blocktab_encode(&tab, buf, (size_t)n - 1), -E2BIG);
	memset(&t, 0xff, sizeof(t));
	EXPECT(pch_blocktab_decode(&t, buf, (size_t)n, why), 0, "");
	ck_assert_uint_eq(t.count, 3);
	ck_assert_uint_eq(t.total_pages, tab.total_pages);
	ck_assert_uint_eq(t.min_page_size, 4096);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_str_eq(t.b[i].name, tab.b[i].name);
		ck_assert_uint_eq(t.b[i].size, tab.b[i].size);
		ck_assert_uint_eq(t.b[i].page_size, tab.b[i].page_size);
		ck_assert_uint_eq(t.b[i].backing, tab.b[i].backing);
		ck_assert_uint_eq(t.b[i].npages, tab.b[i].npages);
		ck_assert_uint_eq(t.b[i].page_shift, tab.b[i].page_shift);
	}
	EXPECT(pch_blocktab_match(&tab, &t, why), 0, "");

	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(pch_blocktab_encode(&t, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* Encoded table, to corrupt. */
static int encoded(unsigned char *buf, size_t cap)
{
	int n = pch_blocktab_encode(&tab, buf, cap);

	ck_assert_int_gt(n, 0);
	return n;
}

#define WB(buf, i) ((struct pch_wire_block *)((buf) + 8 + (i)*80))

START_TEST(test_blocktab_decode_bad)
{
	unsigned char buf[8 + (PCH_MAX_BLOCKS + 2) * 80] __attribute__((aligned(8)));
	struct pch_cc_blocks *hdr = (struct pch_cc_blocks *)buf;
	struct pch_blocktab t;
	size_t n;

	n = (size_t)encoded(buf, sizeof(buf));
	/* truncated anywhere: header, inside an entry, one byte short */
	EXPECT(pch_blocktab_decode(&t, buf, 0, why), -EBADMSG, "shorter");
	EXPECT(pch_blocktab_decode(&t, buf, 7, why), -EBADMSG, "shorter");
	EXPECT(pch_blocktab_decode(&t, buf, 8, why), -EBADMSG, "length");
	EXPECT(pch_blocktab_decode(&t, buf, 8 + 80, why), -EBADMSG, "length");
	EXPECT(pch_blocktab_decode(&t, buf, n - 1, why), -EBADMSG, "length");
	EXPECT(pch_blocktab_decode(&t, buf, n + 1, why), -EBADMSG, "length");
	ck_assert_uint_eq(t.count, 0);

	hdr->reserved = 1;
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "reserved");
	hdr->reserved = 0;
	hdr->count = 0;
	EXPECT(pch_blocktab_decode(&t, buf, 8, why), -EBADMSG, "count 0");
	hdr->count = PCH_MAX_BLOCKS + 1;
	EXPECT(pch_blocktab_decode(&t, buf, 8 + (PCH_MAX_BLOCKS + 1) * 80, why), -E2BIG,
	       "PCH_MAX_BLOCKS");
	hdr->count = UINT32_MAX; /* must not overflow the length check */
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -E2BIG, "PCH_MAX_BLOCKS");
	hdr->count = 3;
	EXPECT(pch_blocktab_decode(&t, buf, n, why), 0, "");

	/* bad entries: the table is left empty */
	memset(WB(buf, 1)->name, 'n', PCH_BLOCK_NAME_LEN);
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "not NUL-terminated");
	ck_assert_uint_eq(t.count, 0);
	n = (size_t)encoded(buf, sizeof(buf));
	WB(buf, 2)->name[0] = '\0';
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "empty name");
	n = (size_t)encoded(buf, sizeof(buf));
	strcpy(WB(buf, 2)->name, "pc.ram");
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "duplicate");
	n = (size_t)encoded(buf, sizeof(buf));
	WB(buf, 0)->page_size = 4095;
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "page_size");
	n = (size_t)encoded(buf, sizeof(buf));
	WB(buf, 1)->size = 3 * MiB; /* not a multiple of 2 MiB */
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "block: size");
	n = (size_t)encoded(buf, sizeof(buf));
	WB(buf, 1)->size = 0;
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "block: size");
	n = (size_t)encoded(buf, sizeof(buf));
	WB(buf, 2)->backing = 77;
	EXPECT(pch_blocktab_decode(&t, buf, n, why), -EBADMSG, "backing");
	ck_assert_uint_eq(t.count, 0);
}
END_TEST

START_TEST(test_blocktab_match)
{
	struct pch_blocktab v;
	const char *w = NULL;

	v = tab;
	v.b[0].backing = PCH_BACKING_MEMFD; /* backing may differ */
	EXPECT(pch_blocktab_match(&tab, &v, why), 0, "");
	v = tab;
	v.count = 2;
	EXPECT(pch_blocktab_match(&tab, &v, why), -EPROTO, "block count");
	v = tab;
	strcpy(v.b[1].name, "hugemen");
	EXPECT(pch_blocktab_match(&tab, &v, why), -EPROTO, "block name");
	v = tab;
	v.b[2].size += 4096;
	EXPECT(pch_blocktab_match(&tab, &v, why), -EPROTO, "size");
	v = tab;
	v.b[0].page_size = 8192;
	EXPECT(pch_blocktab_match(&tab, &v, why), -EPROTO, "page size");
	/* order matters */
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(pch_blocktab_add(&v, "hugemem", 8 * MiB, 2 * MiB, 3, &w), 0);
	ck_assert_int_eq(pch_blocktab_add(&v, "pc.ram", 64 * MiB, 4096, 1, &w), 0);
	ck_assert_int_eq(pch_blocktab_add(&v, "small", 16 * KiB, 4096, 2, &w), 0);
	EXPECT(pch_blocktab_match(&tab, &v, why), -EPROTO, "block name");
}
END_TEST

/* ------------------------------------------------------------------ */
/* hello / ack / refuse                                                 */
/* ------------------------------------------------------------------ */

static const struct pch_hello_params hp = {
    .kind = PCH_CHAN_PAGES,
    .index = 3,
    .count = 4,
    .page_size = 4096,
    .nonce = 0x0123456789abcdefull,
};

/* Re-sign h after a field was changed, so only that field is wrong. */
static void resign(struct pch_hello *h)
{
	pch_hmac_sha256(sess.key, sizeof(sess.key), h, offsetof(struct pch_hello, auth), h->auth);
}

START_TEST(test_hello_roundtrip)
{
	struct pch_hello_params p, in = hp;
	struct pch_hello h;
	int reason = -1;
	unsigned k;

	pch_hello_build(&h, &in, &sess, false);
	ck_assert_uint_eq(h.magic, PCH_HELLO_MAGIC);
	ck_assert_uint_eq(h.version, PCH_PROTO_VERSION);
	ck_assert_mem_eq(h.session, sess.id, PCH_SESSION_ID_LEN);
	memset(&p, 0, sizeof(p));
	EXPECT(pch_hello_check(&h, &sess, false, &p, &reason, why), 0, "");
	ck_assert_int_eq(reason, 0);
	ck_assert_uint_eq(p.kind, in.kind);
	ck_assert_uint_eq(p.index, in.index);
	ck_assert_uint_eq(p.count, in.count);
	ck_assert_uint_eq(p.page_size, in.page_size);
	ck_assert_uint_eq(p.nonce, in.nonce);

	/* the ack: other magic, other authenticator, not interchangeable */
	struct pch_hello a;

	pch_hello_build(&a, &in, &sess, true);
	ck_assert_uint_eq(a.magic, PCH_ACK_MAGIC);
	ck_assert(memcmp(a.auth, h.auth, PCH_AUTH_LEN));
	EXPECT(pch_hello_check(&a, &sess, true, &p, &reason, why), 0, "");
	ck_assert_uint_eq(p.nonce, in.nonce);
	EXPECT(pch_hello_check(&a, &sess, false, &p, &reason, why), -EBADMSG, "magic");
	ck_assert_int_eq(reason, PCH_REFUSE_MAGIC_BAD);
	EXPECT(pch_hello_check(&h, &sess, true, &p, &reason, why), -EBADMSG, "magic");

	/* CONTROL and URGENT carry index 0; 2 MiB pages are fine */
	for (k = PCH_CHAN_CONTROL; k <= PCH_CHAN_URGENT; k++) {
		in.kind = (uint8_t)k;
		in.index = 0;
		in.page_size = 2 * MiB;
		pch_hello_build(&h, &in, &sess, false);
		EXPECT(pch_hello_check(&h, &sess, false, &p, NULL, why), 0, "");
		ck_assert_uint_eq(p.kind, k);
	}
	/* NULL outputs are allowed */
	ck_assert_int_eq(pch_hello_check(&h, &sess, false, NULL, NULL, NULL), 0);

	/* a resuming helper flags its CONTROL hello; the ack never echoes it */
	in.kind = PCH_CHAN_CONTROL;
	in.flags = PCH_HELLO_F_RESUME;
	pch_hello_build(&h, &in, &sess, false);
	ck_assert_uint_eq(h.flags, PCH_HELLO_F_RESUME);
	EXPECT(pch_hello_check(&h, &sess, false, &p, NULL, why), 0, "");
	ck_assert_uint_eq(p.flags, PCH_HELLO_F_RESUME);
	pch_hello_build(&a, &in, &sess, true);
	ck_assert_uint_eq(a.flags, 0);
	EXPECT(pch_hello_check(&a, &sess, true, &p, NULL, why), 0, "");
	ck_assert_uint_eq(p.flags, 0);
}
END_TEST

/* The authenticator is HMAC-SHA256(key, bytes [0, 40)), checked with glib. */
START_TEST(test_hello_auth_wire)
{
	struct pch_hello h;
	GHmac *mac = g_hmac_new(G_CHECKSUM_SHA256, sess.key, sizeof(sess.key));
	guint8 out[32];
	gsize len = sizeof(out);

	pch_hello_build(&h, &hp, &sess, false);
	g_hmac_update(mac, (const guchar *)&h, 40);
	g_hmac_get_digest(mac, out, &len);
	g_hmac_unref(mac);
	ck_assert_uint_eq(len, 32);
	ck_assert_mem_eq(h.auth, out, 32);
}
END_TEST

/* Build a good hello, apply stmt, re-sign, expect err/reason/why. */
#define HELLO_BAD(stmt, err, rsn, substr)                                                          \
	do {                                                                                       \
		struct pch_hello h_;                                                               \
		int reason_ = 0;                                                                   \
		pch_hello_build(&h_, &hp, &sess, false);                                           \
		{                                                                                  \
			struct pch_hello *h = &h_;                                                 \
			stmt;                                                                      \
		}                                                                                  \
		resign(&h_);                                                                       \
		EXPECT(pch_hello_check(&h_, &sess, false, NULL, &reason_, why), err, substr);      \
		ck_assert_int_eq(reason_, rsn);                                                    \
	} while (0)

START_TEST(test_hello_bad_fields)
{
	HELLO_BAD(h->magic = PCH_FRAME_MAGIC, -EBADMSG, PCH_REFUSE_MAGIC_BAD, "magic");
	HELLO_BAD(h->magic = PCH_ACK_MAGIC, -EBADMSG, PCH_REFUSE_MAGIC_BAD, "magic");
	HELLO_BAD(h->version = 0, -EPROTO, PCH_REFUSE_VERSION, "version");
	HELLO_BAD(h->version = 2, -EPROTO, PCH_REFUSE_VERSION, "version");
	HELLO_BAD(h->kind = 0, -EBADMSG, PCH_REFUSE_KIND, "kind");
	HELLO_BAD(h->kind = 4, -EBADMSG, PCH_REFUSE_KIND, "kind");
	HELLO_BAD(h->flags = 1, -EBADMSG, PCH_REFUSE_VERSION, "flags");
	HELLO_BAD(h->flags = 0x80, -EBADMSG, PCH_REFUSE_VERSION, "flags");
	HELLO_BAD(h->flags = 2, -EBADMSG, PCH_REFUSE_VERSION, "unknown flags");
	HELLO_BAD((h->kind = PCH_CHAN_URGENT, h->index = 0, h->flags = PCH_HELLO_F_RESUME),
		  -EBADMSG, PCH_REFUSE_VERSION, "CONTROL only");
	HELLO_BAD((h->count = 0, h->index = 0), -EBADMSG, PCH_REFUSE_INDEX, "count 0");
	HELLO_BAD(h->count = PCH_MAX_CHANNELS + 1, -E2BIG, PCH_REFUSE_INDEX, "PCH_MAX_CHANNELS");
	HELLO_BAD(h->count = 0xffff, -E2BIG, PCH_REFUSE_INDEX, "PCH_MAX_CHANNELS");
	HELLO_BAD(h->index = 4, -EBADMSG, PCH_REFUSE_INDEX, "index >= count");
	HELLO_BAD(h->index = 0xffff, -EBADMSG, PCH_REFUSE_INDEX, "index >= count");
	HELLO_BAD((h->kind = PCH_CHAN_CONTROL, h->index = 1), -EBADMSG, PCH_REFUSE_INDEX,
		  "index not 0");
	HELLO_BAD((h->kind = PCH_CHAN_URGENT, h->index = 2), -EBADMSG, PCH_REFUSE_INDEX,
		  "index not 0");
	HELLO_BAD(h->page_size = 0, -EBADMSG, PCH_REFUSE_PAGE_SIZE, "page_size");
	HELLO_BAD(h->page_size = 2048, -EBADMSG, PCH_REFUSE_PAGE_SIZE, "page_size");
	HELLO_BAD(h->page_size = 4096 * 3, -EBADMSG, PCH_REFUSE_PAGE_SIZE, "page_size");
	HELLO_BAD(h->page_size = 0x80000001u, -EBADMSG, PCH_REFUSE_PAGE_SIZE, "page_size");
	HELLO_BAD(h->session[15] ^= 1, -EPROTO, PCH_REFUSE_SESSION, "stale session");
	HELLO_BAD(memset(h->session, 0, 16), -EPROTO, PCH_REFUSE_SESSION, "stale session");
	/* order: the first bad field is reported */
	HELLO_BAD((h->version = 9, h->kind = 9), -EPROTO, PCH_REFUSE_VERSION, "version");
	HELLO_BAD((h->kind = 9, h->page_size = 1), -EBADMSG, PCH_REFUSE_KIND, "kind");
	HELLO_BAD((h->index = 9, h->session[0] ^= 1), -EBADMSG, PCH_REFUSE_INDEX, "index >= count");
}
END_TEST

START_TEST(test_hello_bad_auth)
{
	struct pch_session other = sess;
	struct pch_hello h;
	int reason = 0;
	unsigned i;

	pch_hello_build(&h, &hp, &sess, false);
	/* every authenticator byte matters */
	for (i = 0; i < PCH_AUTH_LEN; i++) {
		h.auth[i] ^= 0x10;
		EXPECT(pch_hello_check(&h, &sess, false, NULL, &reason, why), -EPROTO,
		       "authenticator");
		ck_assert_int_eq(reason, PCH_REFUSE_AUTH);
		h.auth[i] ^= 0x10;
	}
	/* the authenticator covers the nonce (and every other signed byte) */
	h.nonce ^= 1;
	EXPECT(pch_hello_check(&h, &sess, false, NULL, &reason, why), -EPROTO, "authenticator");
	h.nonce ^= 1;
	h.index = 2;
	EXPECT(pch_hello_check(&h, &sess, false, NULL, &reason, why), -EPROTO, "authenticator");
	h.index = 3;
	EXPECT(pch_hello_check(&h, &sess, false, NULL, &reason, why), 0, "");
	/* same session id, wrong key */
	other.key[0] ^= 1;
	pch_hello_build(&h, &hp, &other, false);
	EXPECT(pch_hello_check(&h, &sess, false, NULL, &reason, why), -EPROTO, "authenticator");
	ck_assert_int_eq(reason, PCH_REFUSE_AUTH);
	/* an ack signed as a hello (magic swapped, auth kept) does not verify */
	pch_hello_build(&h, &hp, &sess, false);
	h.magic = PCH_ACK_MAGIC;
	EXPECT(pch_hello_check(&h, &sess, true, NULL, &reason, why), -EPROTO, "authenticator");
}
END_TEST

START_TEST(test_refuse)
{
	struct pch_refuse r;
	struct pch_hello h;
	char longtext[200];
	int reason = 0;

	pch_refuse_build(&r, PCH_REFUSE_DUPLICATE, "channel 3 already connected");
	ck_assert_uint_eq(r.magic, PCH_REFUSE_MAGIC);
	ck_assert_uint_eq(r.version, PCH_PROTO_VERSION);
	ck_assert_uint_eq(r.reason, PCH_REFUSE_DUPLICATE);
	ck_assert_str_eq(r.text, "channel 3 already connected");

	memset(longtext, 'z', sizeof(longtext));
	longtext[sizeof(longtext) - 1] = '\0';
	pch_refuse_build(&r, PCH_REFUSE_BUSY, longtext);
	ck_assert_uint_eq(strlen(r.text), sizeof(r.text) - 1);
	pch_refuse_build(&r, PCH_REFUSE_AUTH, NULL);
	ck_assert_str_eq(r.text, pch_refuse_name(PCH_REFUSE_AUTH));

	ck_assert_str_eq(pch_refuse_name(PCH_REFUSE_DUPLICATE), "duplicate channel");
	ck_assert_int_eq(PCH_REFUSE_REPLAY, 10);
	ck_assert_str_eq(pch_refuse_name(PCH_REFUSE_REPLAY), "replayed hello");
	for (int i = 1; i < PCH_REFUSE_MAX; i++)
		ck_assert_str_ne(pch_refuse_name(i), "?");
	ck_assert_str_eq(pch_refuse_name(0), "?");
	ck_assert_str_eq(pch_refuse_name(PCH_REFUSE_MAX), "?");
	ck_assert_str_eq(pch_refuse_name(-1), "?");

	ck_assert_str_eq(pch_chan_kind_name(PCH_CHAN_CONTROL), "CONTROL");
	ck_assert_str_eq(pch_chan_kind_name(PCH_CHAN_URGENT), "URGENT");
	ck_assert_str_eq(pch_chan_kind_name(PCH_CHAN_PAGES), "PAGES");
	ck_assert_str_eq(pch_chan_kind_name(0), "?");
	ck_assert_str_eq(pch_chan_kind_name(4), "?");
	ck_assert_str_eq(pch_chan_kind_name(~0u), "?");

	/* a refusal read where an ack was expected is recognised */
	_Static_assert(sizeof(r) == sizeof(h), "refuse and hello are read alike");
	memcpy(&h, &r, sizeof(h));
	EXPECT(pch_hello_check(&h, &sess, true, NULL, &reason, why), -EBADMSG, "refusal");
}
END_TEST

/* ------------------------------------------------------------------ */
/* frames                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_frame_roundtrip)
{
	struct pch_frame_hdr h;
	uint64_t offs[4] = {0, 4096, 8192 * 4, 64 * MiB - 4096};

	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 0, 4, 17, 0);
	ck_assert_uint_eq(h.magic, PCH_FRAME_MAGIC);
	EXPECT(pch_frame_check_hdr(&h, &tab, 17, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_offsets_len(&h), 32);
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 4 * 4096);
	EXPECT(pch_frame_check_offsets(&h, offs, &tab, why), 0, "");

	pch_frame_build(&h, PCH_FRAME_ZERO, 0, 0, 1024, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_offsets_len(&h), 8192);
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 0);

	pch_frame_build(&h, PCH_FRAME_SYNC, 0, 0, 0, 5, 12);
	EXPECT(pch_frame_check_hdr(&h, &tab, 5, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_offsets_len(&h), 0);
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 0);

	pch_frame_build(&h, PCH_FRAME_END, 0, 0, 0, 6, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 6, false, why), 0, "");

	/* URGENT answers carry the request id in arg */
	pch_frame_build(&h, PCH_FRAME_PAGES, PCH_FRAME_F_URGENT, 2, 2, 0, 0xdead);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, true, why), 0, "");
	pch_frame_build(&h, PCH_FRAME_ZERO, PCH_FRAME_F_URGENT, 1, 1, 1, 7);
	EXPECT(pch_frame_check_hdr(&h, &tab, 1, true, why), 0, "");

	/* keep-alives: on PAGES plain, on URGENT flagged */
	pch_frame_build(&h, PCH_FRAME_KEEPALIVE, 0, 0, 0, 3, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 3, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_offsets_len(&h), 0);
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 0);
	pch_frame_build(&h, PCH_FRAME_KEEPALIVE, PCH_FRAME_F_URGENT, 0, 0, 4, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 4, true, why), 0, "");
}
END_TEST

START_TEST(test_frame_limits)
{
	struct pch_frame_hdr h;

	/* 4 KiB pages: 256 fill PCH_FRAME_MAX_DATA, 257 do not */
	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 0, PCH_FRAME_MAX_DATA / 4096, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), PCH_FRAME_MAX_DATA);
	h.count++;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -E2BIG, "data over");
	/* 2 MiB pages: one page is allowed although over 1 MiB, two are not */
	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 1, 1, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 2 * MiB);
	h.count = 2;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -E2BIG, "data over");
	/* ZERO frames: only the page count limit */
	pch_frame_build(&h, PCH_FRAME_ZERO, 0, 1, 4, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
	pch_frame_build(&h, PCH_FRAME_ZERO, 0, 0, PCH_FRAME_MAX_PAGES, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
	h.count++;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -E2BIG, "PCH_FRAME_MAX_PAGES");
	h.count = UINT32_MAX;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -E2BIG, "PCH_FRAME_MAX_PAGES");
	h.type = PCH_FRAME_PAGES;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -E2BIG, "PCH_FRAME_MAX_PAGES");
	/* more pages than the block has */
	pch_frame_build(&h, PCH_FRAME_ZERO, 0, 2, 5, 0, 0);
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), -EBADMSG, "block pages");
	h.count = 4;
	EXPECT(pch_frame_check_hdr(&h, &tab, 0, false, why), 0, "");
}
END_TEST

#define FRAME_BAD(type, flags, block, count, seq, arg, expect_seq, urgent_ok, err, substr)         \
	do {                                                                                       \
		struct pch_frame_hdr h_;                                                           \
		pch_frame_build(&h_, type, flags, block, count, seq, arg);                         \
		EXPECT(pch_frame_check_hdr(&h_, &tab, expect_seq, urgent_ok, why), err, substr);   \
	} while (0)

START_TEST(test_frame_bad_hdr)
{
	struct pch_frame_hdr h;
	const char *w = NULL;

	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 0, 1, 0, 0);
	h.magic = PCH_REQ_MAGIC;
	ck_assert_int_eq(pch_frame_check_hdr(&h, &tab, 0, false, &w), -EBADMSG);
	ck_assert_str_eq(w, "frame: bad magic");

	FRAME_BAD(0, 0, 0, 1, 0, 0, 0, false, -EBADMSG, "type");
	FRAME_BAD(PCH_FRAME_TYPE_MAX, 0, 0, 1, 0, 0, 0, false, -EBADMSG, "type");
	FRAME_BAD(0xffff, 0, 0, 1, 0, 0, 0, false, -EBADMSG, "type");
	FRAME_BAD(PCH_FRAME_PAGES, 0x0002, 0, 1, 0, 0, 0, true, -EBADMSG, "flags");
	FRAME_BAD(PCH_FRAME_PAGES, 0x8001, 0, 1, 0, 0, 0, true, -EBADMSG, "flags");
	FRAME_BAD(PCH_FRAME_PAGES, 0, 3, 1, 0, 0, 0, false, -EBADMSG, "block out of range");
	FRAME_BAD(PCH_FRAME_ZERO, 0, UINT32_MAX, 1, 0, 0, 0, false, -EBADMSG, "block out of range");
	FRAME_BAD(PCH_FRAME_PAGES, 0, 0, 0, 0, 0, 0, false, -EBADMSG, "count 0");
	FRAME_BAD(PCH_FRAME_ZERO, 0, 0, 0, 0, 0, 0, false, -EBADMSG, "count 0");
	FRAME_BAD(PCH_FRAME_PAGES, 0, 0, 1, 0, 1, 0, false, -EBADMSG, "arg not 0");
	FRAME_BAD(PCH_FRAME_PAGES, 0, 0, 1, 1, 0, 0, false, -EPROTO, "seq");
	FRAME_BAD(PCH_FRAME_PAGES, 0, 0, 1, 0, 0, 1, false, -EPROTO, "seq");
	FRAME_BAD(PCH_FRAME_SYNC, 0, 0, 0, UINT64_MAX, 1, 0, false, -EPROTO, "seq");
	FRAME_BAD(PCH_FRAME_PAGES, PCH_FRAME_F_URGENT, 0, 1, 0, 9, 0, false, -EPROTO, "URGENT");
	FRAME_BAD(PCH_FRAME_ZERO, PCH_FRAME_F_URGENT, 0, 1, 0, 9, 0, false, -EPROTO, "URGENT");
	/* KEEPALIVE: count, block, arg 0; either kind of channel */
	FRAME_BAD(PCH_FRAME_KEEPALIVE, 0, 0, 1, 0, 0, 0, false, -EBADMSG, "KEEPALIVE");
	FRAME_BAD(PCH_FRAME_KEEPALIVE, 0, 1, 0, 0, 0, 0, false, -EBADMSG, "KEEPALIVE");
	FRAME_BAD(PCH_FRAME_KEEPALIVE, PCH_FRAME_F_URGENT, 0, 0, 0, 7, 0, true, -EBADMSG,
		  "KEEPALIVE");
	FRAME_BAD(PCH_FRAME_KEEPALIVE, PCH_FRAME_F_URGENT, 0, 0, 0, 0, 0, false, -EPROTO, "URGENT");
	/* SYNC and END: count 0, block 0, never urgent; END arg 0 */
	FRAME_BAD(PCH_FRAME_SYNC, 0, 0, 1, 0, 1, 0, false, -EBADMSG, "count not 0");
	FRAME_BAD(PCH_FRAME_END, 0, 0, 1, 0, 0, 0, false, -EBADMSG, "count not 0");
	FRAME_BAD(PCH_FRAME_SYNC, 0, 1, 0, 0, 1, 0, false, -EBADMSG, "block not 0");
	FRAME_BAD(PCH_FRAME_END, 0, 2, 0, 0, 0, 0, false, -EBADMSG, "block not 0");
	FRAME_BAD(PCH_FRAME_SYNC, PCH_FRAME_F_URGENT, 0, 0, 0, 1, 0, true, -EBADMSG, "URGENT");
	FRAME_BAD(PCH_FRAME_END, PCH_FRAME_F_URGENT, 0, 0, 0, 0, 0, true, -EBADMSG, "URGENT");
	FRAME_BAD(PCH_FRAME_END, 0, 0, 0, 0, 5, 0, false, -EBADMSG, "arg not 0");
	/* urgent_ok also accepts plain frames */
	FRAME_BAD(PCH_FRAME_PAGES, 0, 0, 1, 0, 0, 0, true, 0, "");
}
END_TEST

START_TEST(test_frame_offsets)
{
	struct pch_frame_hdr h;
	uint64_t o[4];

	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 0, 3, 0, 0);
#define OFFS(a, b, c) (o[0] = (a), o[1] = (b), o[2] = (c), o)
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 64 * MiB - 4096), &tab, why), 0, "");
	EXPECT(pch_frame_check_offsets(&h, OFFS(1, 4096, 8192), &tab, why), -EBADMSG, "aligned");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 8192 + 2048), &tab, why), -EBADMSG,
	       "aligned");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 64 * MiB), &tab, why), -EBADMSG, "range");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, UINT64_MAX & ~4095ull), &tab, why),
	       -EBADMSG, "range");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 4096), &tab, why), -EBADMSG, "increasing");
	EXPECT(pch_frame_check_offsets(&h, OFFS(8192, 4096, 12288), &tab, why), -EBADMSG,
	       "increasing");
	/* 2 MiB block: 4 KiB alignment is not enough */
	h.block = 1;
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 2 * MiB, 6 * MiB), &tab, why), 0, "");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 2 * MiB + 4096, 6 * MiB), &tab, why), -EBADMSG,
	       "aligned");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 2 * MiB, 8 * MiB), &tab, why), -EBADMSG,
	       "range");
	/* the small block */
	h.block = 2;
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 12288), &tab, why), 0, "");
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 16384), &tab, why), -EBADMSG, "range");
	/* a header that was not checked still cannot run past the limits */
	h.block = 0;
	h.count = PCH_FRAME_MAX_PAGES + 1;
	EXPECT(pch_frame_check_offsets(&h, o, &tab, why), -E2BIG, "PCH_FRAME_MAX_PAGES");
	h.count = 3;
	h.block = 3;
	EXPECT(pch_frame_check_offsets(&h, OFFS(0, 4096, 8192), &tab, why), -EBADMSG,
	       "block out of range");
	ck_assert_uint_eq(pch_frame_data_len(&h, &tab), 0);
#undef OFFS
}
END_TEST

/* ------------------------------------------------------------------ */
/* requests                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_req)
{
	struct pch_req r;

	pch_req_build(&r, 0, 64 * MiB - 64 * 4096, PCH_REQ_MAX_PAGES, 99);
	ck_assert_uint_eq(r.magic, PCH_REQ_MAGIC);
	ck_assert_uint_eq(r.type, PCH_REQ_PAGE);
	ck_assert_uint_eq(r.id, 99);
	EXPECT(pch_req_check(&r, &tab, why), 0, "");
	pch_req_build(&r, 1, 6 * MiB, 1, 1);
	EXPECT(pch_req_check(&r, &tab, why), 0, "");

	pch_req_build(&r, 0, 0, 1, 0);
	r.magic = PCH_FRAME_MAGIC;
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "magic");
	pch_req_build(&r, 0, 0, 1, 0);
	r.type = 2;
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "type");
	pch_req_build(&r, 0, 0, 1, 0);
	r.flags = 1;
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "flags");
	pch_req_build(&r, 3, 0, 1, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "block out of range");
	pch_req_build(&r, 0, 0, 0, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "count 0");
	pch_req_build(&r, 0, 0, PCH_REQ_MAX_PAGES + 1, 0);
	EXPECT(pch_req_check(&r, &tab, why), -E2BIG, "PCH_REQ_MAX_PAGES");
	pch_req_build(&r, 0, 0, UINT32_MAX, 0);
	EXPECT(pch_req_check(&r, &tab, why), -E2BIG, "PCH_REQ_MAX_PAGES");
	pch_req_build(&r, 0, 100, 1, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "aligned");
	pch_req_build(&r, 1, 4096, 1, 0); /* 4 KiB aligned, not 2 MiB */
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "aligned");
	pch_req_build(&r, 0, 64 * MiB, 1, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "range");
	pch_req_build(&r, 0, 64 * MiB - 4096, 2, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "range");
	pch_req_build(&r, 2, 0, 5, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "range");
	/* offset + length would wrap */
	pch_req_build(&r, 0, UINT64_MAX & ~4095ull, 64, 0);
	EXPECT(pch_req_check(&r, &tab, why), -EBADMSG, "range");
}
END_TEST

/* ------------------------------------------------------------------ */
/* CONTROL messages                                                     */
/* ------------------------------------------------------------------ */

START_TEST(test_cc_hdr)
{
	static const struct {
		uint16_t type;
		uint32_t len;
	} good[] = {
	    {PCH_CC_BLOCKS, 8 + 80},
	    {PCH_CC_HAVE, 24 + 8},
	    {PCH_CC_START, 0},
	    {PCH_CC_SYNC_REQ, 8},
	    {PCH_CC_DONE, 0},
	    {PCH_CC_ERROR, 128},
	    {PCH_CC_KEEPALIVE, 0},
	    {PCH_CC_HAVE, PCH_CC_MAX_PAYLOAD},
	};
	struct pch_cc_hdr h;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		pch_cc_build(&h, good[i].type, good[i].len);
		ck_assert_uint_eq(h.magic, PCH_CC_MAGIC);
		ck_assert_uint_eq(h.len, good[i].len);
		EXPECT(pch_cc_check_hdr(&h, why), 0, "");
	}
	pch_cc_build(&h, PCH_CC_START, 0);
	h.magic = PCH_HELLO_MAGIC;
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "magic");
	pch_cc_build(&h, 0, 0);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "type");
	pch_cc_build(&h, PCH_CC_TYPE_MAX, 0);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "type");
	pch_cc_build(&h, PCH_CC_START, 0);
	h.flags = 4;
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "flags");
	pch_cc_build(&h, PCH_CC_START, 0);
	h.reserved = 4;
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "reserved");
	pch_cc_build(&h, PCH_CC_HAVE, PCH_CC_MAX_PAYLOAD + 1);
	EXPECT(pch_cc_check_hdr(&h, why), -E2BIG, "PCH_CC_MAX_PAYLOAD");
	pch_cc_build(&h, PCH_CC_BLOCKS, UINT32_MAX);
	EXPECT(pch_cc_check_hdr(&h, why), -E2BIG, "PCH_CC_MAX_PAYLOAD");
	pch_cc_build(&h, PCH_CC_START, 1);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "no payload");
	pch_cc_build(&h, PCH_CC_DONE, 8);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "no payload");
	pch_cc_build(&h, PCH_CC_KEEPALIVE, 1);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "no payload");
	pch_cc_build(&h, PCH_CC_SYNC_REQ, 7);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "SYNC_REQ");
	pch_cc_build(&h, PCH_CC_ERROR, 127);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "ERROR");
	pch_cc_build(&h, PCH_CC_BLOCKS, 7);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "BLOCKS");
	pch_cc_build(&h, PCH_CC_HAVE, 23);
	EXPECT(pch_cc_check_hdr(&h, why), -EBADMSG, "HAVE");
}
END_TEST

/* HAVE payload in buf: header and nwords words, all bits of npages set. */
static size_t have_build(uint64_t *buf, uint32_t block, uint64_t first, uint64_t npages,
			 size_t nwords)
{
	struct pch_cc_have hv = {.block = block, .first_page = first, .npages = npages};
	size_t i;

	memcpy(buf, &hv, sizeof(hv));
	for (i = 0; i < nwords; i++)
		buf[3 + i] = 0;
	for (i = 0; i < npages && i / 64 < nwords; i++)
		buf[3 + i / 64] |= 1ull << (i % 64);
	return sizeof(hv) + nwords * 8;
}

START_TEST(test_backing_names)
{
	uint32_t k;

	/* every kind has a name that parses back to it; nothing else parses */
	for (k = PCH_BACKING_ANON; k < PCH_BACKING_MAX; k++)
		ck_assert_uint_eq(pch_backing_parse(pch_backing_name(k)), k);
	ck_assert_str_eq(pch_backing_name(PCH_BACKING_HUGETLB_PRIVATE), "hugetlb-private");
	ck_assert_str_eq(pch_backing_name(0), "?");
	ck_assert_str_eq(pch_backing_name(PCH_BACKING_MAX), "?");
	ck_assert_uint_eq(pch_backing_parse("?"), 0);
	ck_assert_uint_eq(pch_backing_parse(""), 0);
	ck_assert_uint_eq(pch_backing_parse("hugetlb-privat"), 0);
}
END_TEST

START_TEST(test_cc_have)
{
	static uint64_t buf[3 + 16384 / 64 + 2];
	struct pch_cc_have *hv = (struct pch_cc_have *)buf;
	size_t len;

	/* whole 64 MiB block: 16384 pages, 256 words */
	len = have_build(buf, 0, 0, 16384, 256);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), 0, "");
	/* partial last word */
	len = have_build(buf, 0, 128, 100, 2);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), 0, "");
	/* the tail of the small block: 4 pages, one word */
	len = have_build(buf, 2, 0, 4, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), 0, "");

	/* truncated payloads */
	len = have_build(buf, 0, 128, 100, 2);
	EXPECT(pch_cc_have_check(buf, 0, &tab, why), -EBADMSG, "shorter");
	EXPECT(pch_cc_have_check(buf, 23, &tab, why), -EBADMSG, "shorter");
	EXPECT(pch_cc_have_check(buf, 24, &tab, why), -EBADMSG, "length");
	EXPECT(pch_cc_have_check(buf, len - 8, &tab, why), -EBADMSG, "length");
	EXPECT(pch_cc_have_check(buf, len - 1, &tab, why), -EBADMSG, "length");
	EXPECT(pch_cc_have_check(buf, len + 8, &tab, why), -EBADMSG, "length");
	EXPECT(pch_cc_have_check(buf, PCH_CC_MAX_PAYLOAD + 1, &tab, why), -E2BIG,
	       "PCH_CC_MAX_PAYLOAD");

	/* bad fields */
	len = have_build(buf, 0, 128, 100, 2);
	hv->reserved = 1;
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "reserved");
	len = have_build(buf, 3, 0, 64, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "block out of range");
	len = have_build(buf, UINT32_MAX, 0, 64, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "block out of range");
	len = have_build(buf, 0, 32, 64, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "first_page");
	len = have_build(buf, 0, 0, 0, 0);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "npages");
	len = have_build(buf, 2, 0, 5, 1); /* the small block has 4 pages */
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "out of block");
	len = have_build(buf, 0, 16384, 1, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "out of block");
	len = have_build(buf, 0, 16320, 65, 2);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "out of block");
	/* first_page + npages would wrap */
	len = have_build(buf, 0, UINT64_MAX & ~63ull, 64, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "out of block");
	len = have_build(buf, 0, 64, UINT64_MAX - 63, 1);
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "out of block");
	/* bits set past npages */
	len = have_build(buf, 0, 128, 100, 2);
	buf[3 + 1] |= 1ull << 36;
	EXPECT(pch_cc_have_check(buf, len, &tab, why), -EBADMSG, "past npages");
	buf[3 + 1] &= ~(1ull << 36);
	buf[3 + 1] |= 1ull << 35; /* page 99: the last one, fine */
	EXPECT(pch_cc_have_check(buf, len, &tab, why), 0, "");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Every decoder limit from both sides: the last good value accepted,   */
/* the first bad one refused with its code, reason and why.             */
/* ------------------------------------------------------------------ */

#define CASE_CHECK(name, ret, want_err, why_, substr)                                              \
	do {                                                                                       \
		ck_assert_msg((ret) == (want_err), "%s: got %d want %d (%s)", (name), (ret),       \
			      (want_err), (why_) ? (why_) : "-");                                  \
		if (want_err)                                                                      \
			ck_assert_msg((why_) && strstr((why_), (substr)), "%s: why \"%s\" lacks "   \
				      "\"%s\"", (name), (why_) ? (why_) : "-", (substr));          \
	} while (0)

enum hello_field { HF_MAGIC, HF_VERSION, HF_KIND, HF_FLAGS, HF_INDEX, HF_COUNT, HF_PAGE_SIZE,
		   HF_SESSION, HF_AUTH };

static const struct hello_case {
	const char *name;
	uint8_t kind;    /* the hello's kind before the field is set */
	uint16_t count;  /* its count (index count - 1 on PAGES, else 0) */
	enum hello_field f;
	uint64_t v;
	int err, reason;
	const char *why;
} hello_cases[] = {
	{ "magic", 3, 4, HF_MAGIC, PCH_HELLO_MAGIC, 0, 0, "" },
	{ "magic+1", 3, 4, HF_MAGIC, PCH_HELLO_MAGIC + 1, -EBADMSG, PCH_REFUSE_MAGIC_BAD, "bad magic" },
	{ "version 1", 3, 4, HF_VERSION, PCH_PROTO_VERSION, 0, 0, "" },
	{ "version 2", 3, 4, HF_VERSION, PCH_PROTO_VERSION + 1, -EPROTO, PCH_REFUSE_VERSION, "version" },
	{ "version 0", 3, 4, HF_VERSION, 0, -EPROTO, PCH_REFUSE_VERSION, "version" },
	{ "kind CONTROL", 1, 4, HF_KIND, PCH_CHAN_CONTROL, 0, 0, "" },
	{ "kind 0", 1, 4, HF_KIND, 0, -EBADMSG, PCH_REFUSE_KIND, "kind" },
	{ "kind PAGES", 3, 4, HF_KIND, PCH_CHAN_PAGES, 0, 0, "" },
	{ "kind 4", 3, 4, HF_KIND, PCH_CHAN_PAGES + 1, -EBADMSG, PCH_REFUSE_KIND, "kind" },
	{ "RESUME on CONTROL", 1, 4, HF_FLAGS, PCH_HELLO_F_RESUME, 0, 0, "" },
	{ "RESUME on URGENT", 2, 4, HF_FLAGS, PCH_HELLO_F_RESUME, -EBADMSG, PCH_REFUSE_VERSION,
	  "CONTROL only" },
	{ "RESUME on PAGES", 3, 4, HF_FLAGS, PCH_HELLO_F_RESUME, -EBADMSG, PCH_REFUSE_VERSION,
	  "CONTROL only" },
	{ "flags 2", 1, 4, HF_FLAGS, 2, -EBADMSG, PCH_REFUSE_VERSION, "unknown flags" },
	{ "count 1", 3, 1, HF_COUNT, 1, 0, 0, "" },
	{ "count 0", 1, 1, HF_COUNT, 0, -EBADMSG, PCH_REFUSE_INDEX, "count 0" },
	{ "count max", 1, 4, HF_COUNT, PCH_MAX_CHANNELS, 0, 0, "" },
	{ "count max+1", 1, 4, HF_COUNT, PCH_MAX_CHANNELS + 1, -E2BIG, PCH_REFUSE_INDEX,
	  "PCH_MAX_CHANNELS" },
	{ "index count-1", 3, PCH_MAX_CHANNELS, HF_INDEX, PCH_MAX_CHANNELS - 1, 0, 0, "" },
	{ "index count", 3, PCH_MAX_CHANNELS, HF_INDEX, PCH_MAX_CHANNELS, -EBADMSG, PCH_REFUSE_INDEX,
	  "index >= count" },
	{ "URGENT index 0", 2, 4, HF_INDEX, 0, 0, 0, "" },
	{ "URGENT index 1", 2, 4, HF_INDEX, 1, -EBADMSG, PCH_REFUSE_INDEX, "index not 0" },
	{ "CONTROL index 1", 1, 4, HF_INDEX, 1, -EBADMSG, PCH_REFUSE_INDEX, "index not 0" },
	{ "page 4096", 3, 4, HF_PAGE_SIZE, 4096, 0, 0, "" },
	{ "page 2048", 3, 4, HF_PAGE_SIZE, 2048, -EBADMSG, PCH_REFUSE_PAGE_SIZE, "page_size" },
	{ "page 2^31", 3, 4, HF_PAGE_SIZE, 1u << 31, 0, 0, "" },
	{ "page 4096+4096", 3, 4, HF_PAGE_SIZE, 8192 + 4096, -EBADMSG, PCH_REFUSE_PAGE_SIZE,
	  "page_size" },
	{ "session", 3, 4, HF_SESSION, 0, 0, 0, "" },
	{ "session last byte", 3, 4, HF_SESSION, 1, -EPROTO, PCH_REFUSE_SESSION, "stale session" },
	{ "auth", 3, 4, HF_AUTH, 0, 0, 0, "" },
	{ "auth last byte", 3, 4, HF_AUTH, 1, -EPROTO, PCH_REFUSE_AUTH, "authenticator" },
};

START_TEST(test_limits_hello)
{
	const struct hello_case *c = &hello_cases[_i];
	struct pch_hello_params p = { .kind = c->kind, .count = c->count, .page_size = 4096,
				      .index = c->kind == PCH_CHAN_PAGES ? c->count - 1 : 0 };
	struct pch_hello h;
	const char *why = NULL;
	int reason = -1, ret;

	pch_hello_build(&h, &p, &sess, false);
	switch (c->f) {
	case HF_MAGIC: h.magic = (uint32_t)c->v; break;
	case HF_VERSION: h.version = (uint16_t)c->v; break;
	case HF_KIND: h.kind = (uint8_t)c->v; break;
	case HF_FLAGS: h.flags = (uint8_t)c->v; break;
	case HF_INDEX: h.index = (uint16_t)c->v; break;
	case HF_COUNT: h.count = (uint16_t)c->v; break;
	case HF_PAGE_SIZE: h.page_size = (uint32_t)c->v; break;
	case HF_SESSION: h.session[PCH_SESSION_ID_LEN - 1] ^= (uint8_t)c->v; break;
	case HF_AUTH: break;
	}
	resign(&h);
	if (c->f == HF_AUTH)
		h.auth[PCH_AUTH_LEN - 1] ^= (uint8_t)c->v;
	ret = pch_hello_check(&h, &sess, false, NULL, &reason, &why);
	CASE_CHECK(c->name, ret, c->err, why, c->why);
	ck_assert_int_eq(reason, c->reason);
}
END_TEST

static const struct frame_case {
	const char *name;
	uint32_t magic;
	uint16_t type, flags;
	uint32_t block, count;
	uint64_t seq, arg;
	bool urgent_ok;
	int err;
	const char *why;
} frame_cases[] = {
#define F(n, t, fl, b, cnt, seq, arg, uok, e, w) \
	{ n, PCH_FRAME_MAGIC, t, fl, b, cnt, seq, arg, uok, e, w }
	{ "magic+1", PCH_FRAME_MAGIC + 1, 2, 0, 0, 1, 7, 0, false, -EBADMSG, "bad magic" },
	F("type 0", 0, 0, 0, 0, 7, 0, false, -EBADMSG, "unknown type"),
	F("type KEEPALIVE", PCH_FRAME_KEEPALIVE, 0, 0, 0, 7, 0, false, 0, ""),
	F("type MAX", PCH_FRAME_TYPE_MAX, 0, 0, 0, 7, 0, false, -EBADMSG, "unknown type"),
	F("flags URGENT", 2, PCH_FRAME_F_URGENT, 0, 1, 7, 9, true, 0, ""),
	F("flags 2", 2, 2, 0, 1, 7, 0, true, -EBADMSG, "unknown flags"),
	F("URGENT not allowed", 2, PCH_FRAME_F_URGENT, 0, 1, 7, 9, false, -EPROTO, "URGENT flag"),
	F("block last", 2, 0, 2, 1, 7, 0, false, 0, ""),
	F("block count", 2, 0, 3, 1, 7, 0, false, -EBADMSG, "block out of range"),
	F("ZERO count 0", 2, 0, 0, 0, 7, 0, false, -EBADMSG, "count 0"),
	F("PAGES count 0", 1, 0, 0, 0, 7, 0, false, -EBADMSG, "count 0"),
	F("ZERO count max", 2, 0, 0, PCH_FRAME_MAX_PAGES, 7, 0, false, 0, ""),
	F("ZERO count max+1", 2, 0, 0, PCH_FRAME_MAX_PAGES + 1, 7, 0, false, -E2BIG,
	  "PCH_FRAME_MAX_PAGES"),
	F("PAGES 4K data 1 MiB", 1, 0, 0, 256, 7, 0, false, 0, ""),
	F("PAGES 4K data 1 MiB+4K", 1, 0, 0, 257, 7, 0, false, -E2BIG, "PCH_FRAME_MAX_DATA"),
	F("PAGES 2M one page", 1, 0, 1, 1, 7, 0, false, 0, ""),
	F("PAGES 2M two pages", 1, 0, 1, 2, 7, 0, false, -E2BIG, "PCH_FRAME_MAX_DATA"),
	F("ZERO 2M all pages", 2, 0, 1, 4, 7, 0, false, 0, ""),
	F("ZERO block pages+1", 2, 0, 2, 5, 7, 0, false, -EBADMSG, "count over block pages"),
	F("PAGES arg 0", 1, 0, 0, 1, 7, 0, false, 0, ""),
	F("PAGES arg 1", 1, 0, 0, 1, 7, 1, false, -EBADMSG, "arg not 0"),
	F("URGENT arg max", 1, PCH_FRAME_F_URGENT, 0, 1, 7, UINT64_MAX, true, 0, ""),
	F("SYNC epoch max", 3, 0, 0, 0, 7, UINT64_MAX, false, 0, ""),
	F("SYNC count 1", 3, 0, 0, 1, 7, 1, false, -EBADMSG, "count not 0"),
	F("SYNC block 1", 3, 0, 1, 0, 7, 1, false, -EBADMSG, "block not 0"),
	F("SYNC URGENT", 3, PCH_FRAME_F_URGENT, 0, 0, 7, 1, true, -EBADMSG, "URGENT flag on"),
	F("END arg 0", 4, 0, 0, 0, 7, 0, false, 0, ""),
	F("END arg 1", 4, 0, 0, 0, 7, 1, false, -EBADMSG, "arg not 0 on END"),
	F("END count 1", 4, 0, 0, 1, 7, 0, false, -EBADMSG, "count not 0"),
	F("KEEPALIVE URGENT", 5, PCH_FRAME_F_URGENT, 0, 0, 7, 0, true, 0, ""),
	F("KEEPALIVE count 1", 5, 0, 0, 1, 7, 0, false, -EBADMSG, "KEEPALIVE"),
	F("KEEPALIVE block 1", 5, 0, 1, 0, 7, 0, false, -EBADMSG, "KEEPALIVE"),
	F("KEEPALIVE arg 1", 5, 0, 0, 0, 7, 1, false, -EBADMSG, "KEEPALIVE"),
	F("seq expected-1", 2, 0, 0, 1, 6, 0, false, -EPROTO, "seq mismatch"),
	F("seq expected+1", 2, 0, 0, 1, 8, 0, false, -EPROTO, "seq mismatch"),
#undef F
};

START_TEST(test_limits_frame)
{
	const struct frame_case *c = &frame_cases[_i];
	struct pch_frame_hdr h;
	const char *why = NULL;

	pch_frame_build(&h, c->type, c->flags, c->block, c->count, c->seq, c->arg);
	h.magic = c->magic;
	CASE_CHECK(c->name, pch_frame_check_hdr(&h, &tab, 7, c->urgent_ok, &why), c->err, why,
		   c->why);
}
END_TEST

static const struct offs_case {
	const char *name;
	uint32_t block, count;
	uint64_t offs[3];
	int err;
	const char *why;
} offs_cases[] = {
	{ "aligned", 0, 1, { 4096 }, 0, "" },
	{ "aligned+1", 0, 1, { 4097 }, -EBADMSG, "not page aligned" },
	{ "last page", 0, 1, { 64 * MiB - 4096 }, 0, "" },
	{ "block size", 0, 1, { 64 * MiB }, -EBADMSG, "out of range" },
	{ "u64 max page", 0, 1, { UINT64_MAX & ~4095ull }, -EBADMSG, "out of range" },
	{ "increasing", 0, 3, { 0, 4096, 8192 }, 0, "" },
	{ "equal", 0, 2, { 4096, 4096 }, -EBADMSG, "not increasing" },
	{ "decreasing", 0, 2, { 8192, 4096 }, -EBADMSG, "not increasing" },
	{ "2M last page", 1, 1, { 6 * MiB }, 0, "" },
	{ "2M aligned+4K", 1, 1, { 6 * MiB + 4096 }, -EBADMSG, "not page aligned" },
	{ "2M block size", 1, 1, { 8 * MiB }, -EBADMSG, "out of range" },
	{ "small last", 2, 1, { 12 * KiB }, 0, "" },
	{ "small size", 2, 1, { 16 * KiB }, -EBADMSG, "out of range" },
};

START_TEST(test_limits_offsets)
{
	const struct offs_case *c = &offs_cases[_i];
	struct pch_frame_hdr h;
	const char *why = NULL;

	pch_frame_build(&h, PCH_FRAME_ZERO, 0, c->block, c->count, 0, 0);
	CASE_CHECK(c->name, pch_frame_check_offsets(&h, c->offs, &tab, &why), c->err, why, c->why);
}
END_TEST

static const struct req_case {
	const char *name;
	uint32_t magic;
	uint16_t type, flags;
	uint32_t block, count;
	uint64_t offset, id;
	int err;
	const char *why;
} req_cases[] = {
#define R(n, fl, b, cnt, off, id, e, w) { n, PCH_REQ_MAGIC, PCH_REQ_PAGE, fl, b, cnt, off, id, e, w }
	{ "magic+1", PCH_REQ_MAGIC + 1, 1, 0, 0, 1, 0, 0, -EBADMSG, "bad magic" },
	{ "type 2", PCH_REQ_MAGIC, 2, 0, 0, 1, 0, 0, -EBADMSG, "unknown type" },
	R("flags 1", 1, 0, 1, 0, 0, -EBADMSG, "unknown flags"),
	R("block last", 0, 2, 1, 0, 0, 0, ""),
	R("block count", 0, 3, 1, 0, 0, -EBADMSG, "block out of range"),
	R("count 0", 0, 0, 0, 0, 0, -EBADMSG, "count 0"),
	R("count 1", 0, 0, 1, 0, 0, 0, ""),
	R("count max", 0, 0, PCH_REQ_MAX_PAGES, 0, 0, 0, ""),
	R("count max+1", 0, 0, PCH_REQ_MAX_PAGES + 1, 0, 0, -E2BIG, "PCH_REQ_MAX_PAGES"),
	R("offset aligned+1", 0, 0, 1, 1, 0, -EBADMSG, "not page aligned"),
	R("range to the end", 0, 2, 4, 0, 0, 0, ""),
	R("range end+1 page", 0, 2, 2, 12 * KiB, 0, -EBADMSG, "range out of block"),
	R("offset last page", 0, 0, 1, 64 * MiB - 4096, 0, 0, ""),
	R("offset size", 0, 0, 1, 64 * MiB, 0, -EBADMSG, "range out of block"),
	R("offset u64 max page", 0, 0, 1, UINT64_MAX & ~4095ull, 0, -EBADMSG, "range out of block"),
	R("2M all pages", 0, 1, 4, 0, 0, 0, ""),
	R("2M one page too many", 0, 1, 4, 2 * MiB, 0, -EBADMSG, "range out of block"),
	R("id any", 0, 0, 1, 0, UINT64_MAX, 0, ""),
#undef R
};

START_TEST(test_limits_req)
{
	const struct req_case *c = &req_cases[_i];
	struct pch_req r;
	const char *why = NULL;

	pch_req_build(&r, c->block, c->offset, c->count, c->id);
	r.magic = c->magic;
	r.type = c->type;
	r.flags = c->flags;
	CASE_CHECK(c->name, pch_req_check(&r, &tab, &why), c->err, why, c->why);
}
END_TEST

static const struct cc_case {
	const char *name;
	uint32_t magic;
	uint16_t type, flags;
	uint32_t len, reserved;
	int err;
	const char *why;
} cc_cases[] = {
#define C(n, t, len, e, w) { n, PCH_CC_MAGIC, t, 0, len, 0, e, w }
	{ "magic+1", PCH_CC_MAGIC + 1, PCH_CC_START, 0, 0, 0, -EBADMSG, "bad magic" },
	{ "flags 1", PCH_CC_MAGIC, PCH_CC_START, 1, 0, 0, -EBADMSG, "unknown flags" },
	{ "reserved 1", PCH_CC_MAGIC, PCH_CC_START, 0, 0, 1, -EBADMSG, "reserved" },
	C("type 0", 0, 0, -EBADMSG, "unknown type"),
	C("type KEEPALIVE", PCH_CC_KEEPALIVE, 0, 0, ""),
	C("type MAX", PCH_CC_TYPE_MAX, 0, -EBADMSG, "unknown type"),
	C("BLOCKS len max", PCH_CC_BLOCKS, PCH_CC_MAX_PAYLOAD, 0, ""),
	C("BLOCKS len max+1", PCH_CC_BLOCKS, PCH_CC_MAX_PAYLOAD + 1, -E2BIG, "PCH_CC_MAX_PAYLOAD"),
	C("HAVE len max+1", PCH_CC_HAVE, PCH_CC_MAX_PAYLOAD + 1, -E2BIG, "PCH_CC_MAX_PAYLOAD"),
	C("ERROR len u32 max", PCH_CC_ERROR, UINT32_MAX, -E2BIG, "PCH_CC_MAX_PAYLOAD"),
	C("BLOCKS len 8", PCH_CC_BLOCKS, 8, 0, ""),
	C("BLOCKS len 7", PCH_CC_BLOCKS, 7, -EBADMSG, "BLOCKS payload too short"),
	C("HAVE len 24", PCH_CC_HAVE, 24, 0, ""),
	C("HAVE len 23", PCH_CC_HAVE, 23, -EBADMSG, "HAVE payload too short"),
	C("START len 0", PCH_CC_START, 0, 0, ""),
	C("START len 1", PCH_CC_START, 1, -EBADMSG, "carry no payload"),
	C("DONE len 1", PCH_CC_DONE, 1, -EBADMSG, "carry no payload"),
	C("KEEPALIVE len 1", PCH_CC_KEEPALIVE, 1, -EBADMSG, "carry no payload"),
	C("SYNC_REQ len 8", PCH_CC_SYNC_REQ, 8, 0, ""),
	C("SYNC_REQ len 7", PCH_CC_SYNC_REQ, 7, -EBADMSG, "SYNC_REQ payload size"),
	C("SYNC_REQ len 9", PCH_CC_SYNC_REQ, 9, -EBADMSG, "SYNC_REQ payload size"),
	C("ERROR len 128", PCH_CC_ERROR, 128, 0, ""),
	C("ERROR len 127", PCH_CC_ERROR, 127, -EBADMSG, "ERROR payload size"),
	C("ERROR len 129", PCH_CC_ERROR, 129, -EBADMSG, "ERROR payload size"),
#undef C
};

START_TEST(test_limits_cc)
{
	const struct cc_case *c = &cc_cases[_i];
	struct pch_cc_hdr h;
	const char *why = NULL;

	pch_cc_build(&h, c->type, c->len);
	h.magic = c->magic;
	h.flags = c->flags;
	h.reserved = c->reserved;
	CASE_CHECK(c->name, pch_cc_check_hdr(&h, &why), c->err, why, c->why);
}
END_TEST

/* An URGENT answer against the request it claims: 4 pages at 64 KiB of block 0, id 42. */
static const struct answer_case {
	const char *name;
	uint64_t arg;
	uint32_t block, count, left;
	uint64_t offs[4];
	int err;
	const char *why;
} answer_cases[] = {
	{ "whole request", 42, 0, 4, 4, { 64 * KiB, 68 * KiB, 72 * KiB, 76 * KiB }, 0, "" },
	{ "first page", 42, 0, 1, 4, { 64 * KiB }, 0, "" },
	{ "last page", 42, 0, 1, 1, { 76 * KiB }, 0, "" },
	{ "page before", 42, 0, 1, 4, { 60 * KiB }, -EPROTO, "outside the request" },
	{ "page after", 42, 0, 1, 4, { 80 * KiB }, -EPROTO, "outside the request" },
	{ "last beyond", 42, 0, 2, 4, { 64 * KiB, 80 * KiB }, -EPROTO, "outside the request" },
	{ "count = left", 42, 0, 2, 2, { 64 * KiB, 68 * KiB }, 0, "" },
	{ "count left+1", 42, 0, 2, 1, { 64 * KiB, 68 * KiB }, -EPROTO, "more pages" },
	{ "nothing left", 42, 0, 1, 0, { 64 * KiB }, -EPROTO, "more pages" },
	{ "other id", 43, 0, 1, 4, { 64 * KiB }, -EPROTO, "id" },
	{ "other block", 42, 2, 1, 4, { 0 }, -EPROTO, "block" },
};

START_TEST(test_limits_answer)
{
	const struct answer_case *c = &answer_cases[_i];
	struct pch_frame_hdr h;
	struct pch_req r;
	const char *why = NULL;
	int ret;

	pch_req_build(&r, 0, 64 * KiB, 4, 42);
	ck_assert_int_eq(pch_req_check(&r, &tab, NULL), 0);
	pch_frame_build(&h, PCH_FRAME_PAGES, PCH_FRAME_F_URGENT, c->block, c->count, 0, c->arg);
	ck_assert_int_eq(pch_frame_check_hdr(&h, &tab, 0, true, NULL), 0);
	ck_assert_int_eq(pch_frame_check_offsets(&h, c->offs, &tab, NULL), 0);
	ret = pch_frame_check_answer(&h, c->offs, &r, c->left, &tab, &why);
	CASE_CHECK(c->name, ret, c->err, why, c->why);
}
END_TEST

/* BLOCKS: count bounds, length, names (NUL, characters, duplicates) */
START_TEST(test_limits_blocks)
{
	static struct pch_blocktab t, out;
	static uint8_t buf[sizeof(struct pch_cc_blocks) +
			   (PCH_MAX_BLOCKS + 1) * sizeof(struct pch_wire_block)];
	struct pch_cc_blocks *bh = (void *)buf;
	struct pch_wire_block *wb = (void *)(bh + 1);
	const char *why = NULL;
	char name[PCH_BLOCK_NAME_LEN + 1];
	size_t len;
	int n, ret;
	unsigned i;

	memset(&t, 0, sizeof(t));
	for (i = 0; i < PCH_MAX_BLOCKS; i++) {
		snprintf(name, sizeof(name), "b%u", i);
		ck_assert_int_eq(pch_blocktab_add(&t, name, 4096, 4096, PCH_BACKING_ANON, &why), 0);
	}
	ret = pch_blocktab_add(&t, "one more", 4096, 4096, PCH_BACKING_ANON, &why);
	CASE_CHECK("add block max+1", ret, -E2BIG, why, "too many blocks");
	n = pch_blocktab_encode(&t, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ret = pch_blocktab_decode(&out, buf, (size_t)n, &why);
	CASE_CHECK("blocks count max", ret, 0, why, "");
	/* one more entry, and the count that says so */
	wb[PCH_MAX_BLOCKS] = wb[0];
	strcpy(wb[PCH_MAX_BLOCKS].name, "b64");
	bh->count = PCH_MAX_BLOCKS + 1;
	ret = pch_blocktab_decode(&out, buf, sizeof(buf), &why);
	CASE_CHECK("blocks count max+1", ret, -E2BIG, why, "PCH_MAX_BLOCKS");
	bh->count = 0;
	ret = pch_blocktab_decode(&out, buf, sizeof(*bh), &why);
	CASE_CHECK("blocks count 0", ret, -EBADMSG, why, "count 0");
	bh->count = 1;
	len = sizeof(*bh) + sizeof(*wb);
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("blocks count 1", ret, 0, why, "");
	ret = pch_blocktab_decode(&out, buf, len + 1, &why);
	CASE_CHECK("blocks len+1", ret, -EBADMSG, why, "length does not match");
	ret = pch_blocktab_decode(&out, buf, len - 1, &why);
	CASE_CHECK("blocks len-1", ret, -EBADMSG, why, "length does not match");
	ret = pch_blocktab_decode(&out, buf, sizeof(*bh) - 1, &why);
	CASE_CHECK("blocks len < header", ret, -EBADMSG, why, "shorter than its header");
	bh->reserved = 1;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("blocks reserved 1", ret, -EBADMSG, why, "reserved");
	bh->reserved = 0;
	/* names: 63 characters and a NUL fit; 64 do not */
	memset(wb[0].name, 'n', PCH_BLOCK_NAME_LEN - 1);
	wb[0].name[PCH_BLOCK_NAME_LEN - 1] = '\0';
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name 63 chars", ret, 0, why, "");
	wb[0].name[PCH_BLOCK_NAME_LEN - 1] = 'n';
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name 64 chars", ret, -EBADMSG, why, "not NUL-terminated");
	strcpy(wb[0].name, " ~");
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name space and tilde", ret, 0, why, "");
	strcpy(wb[0].name, "a\x1f");
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name 0x1f", ret, -EBADMSG, why, "control character");
	strcpy(wb[0].name, "a\x7f");
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name 0x7f", ret, -EBADMSG, why, "control character");
	wb[0].name[0] = '\0';
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("name empty", ret, -EBADMSG, why, "empty name");
	strcpy(wb[0].name, "same");
	strcpy(wb[1].name, "same");
	bh->count = 2;
	ret = pch_blocktab_decode(&out, buf, len + sizeof(*wb), &why);
	CASE_CHECK("name duplicate", ret, -EBADMSG, why, "duplicate name");
	/* page size, size and backing of an entry */
	bh->count = 1;
	strcpy(wb[0].name, "x");
	wb[0].page_size = 2048;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry page 2048", ret, -EBADMSG, why, "page_size");
	wb[0].page_size = 4096;
	wb[0].size = 4096 + 512;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry size not pages", ret, -EBADMSG, why, "multiple of page_size");
	wb[0].size = 0;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry size 0", ret, -EBADMSG, why, "multiple of page_size");
	wb[0].size = 4096;
	wb[0].backing = PCH_BACKING_MAX - 1;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry backing max", ret, 0, why, "");
	wb[0].backing = PCH_BACKING_MAX;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry backing max+1", ret, -EBADMSG, why, "unknown backing");
	wb[0].backing = 0;
	ret = pch_blocktab_decode(&out, buf, len, &why);
	CASE_CHECK("entry backing 0", ret, -EBADMSG, why, "unknown backing");
}
END_TEST

/* HAVE: the range, first_page, length, the last bit, the payload limit. */
START_TEST(test_limits_have)
{
	static uint8_t buf[PCH_CC_MAX_PAYLOAD + 8];
	static struct pch_blocktab big;
	struct pch_cc_have *hv = (void *)buf;
	uint64_t *w = (uint64_t *)(hv + 1), maxbits;
	const char *why = NULL;
	size_t len;
	int ret;

	/* block 2 of tab: 4 pages */
	memset(buf, 0, sizeof(buf));
	hv->block = 2;
	hv->npages = 4;
	len = sizeof(*hv) + 8;
	w[0] = 0x8; /* bit npages - 1 */
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have whole block, last bit", ret, 0, why, "");
	w[0] = 0x10; /* bit npages */
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have bit past npages", ret, -EBADMSG, why, "bits set past npages");
	w[0] = 0;
	hv->npages = 5;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have npages block+1", ret, -EBADMSG, why, "pages out of block");
	hv->npages = 0;
	ret = pch_cc_have_check(buf, sizeof(*hv), &tab, &why);
	CASE_CHECK("have npages 0", ret, -EBADMSG, why, "npages 0");
	hv->npages = 4;
	ret = pch_cc_have_check(buf, len + 8, &tab, &why);
	CASE_CHECK("have len word+1", ret, -EBADMSG, why, "length does not match");
	ret = pch_cc_have_check(buf, len - 1, &tab, &why);
	CASE_CHECK("have len-1", ret, -EBADMSG, why, "length does not match");
	ret = pch_cc_have_check(buf, sizeof(*hv) - 1, &tab, &why);
	CASE_CHECK("have len < header", ret, -EBADMSG, why, "shorter than its header");
	hv->block = 3;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have block count", ret, -EBADMSG, why, "block out of range");
	hv->block = 0;
	hv->reserved = 1;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have reserved 1", ret, -EBADMSG, why, "reserved");
	hv->reserved = 0;
	/* block 0: 16384 pages; first_page 64 and the last 64 pages */
	hv->first_page = 16384 - 64;
	hv->npages = 64;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have last 64 pages", ret, 0, why, "");
	hv->first_page = 16384 - 63;
	hv->npages = 63;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have first_page not x64", ret, -EBADMSG, why, "multiple of 64");
	hv->first_page = 16384;
	hv->npages = 1;
	ret = pch_cc_have_check(buf, len, &tab, &why);
	CASE_CHECK("have first_page = npages", ret, -EBADMSG, why, "pages out of block");
	/* the most bits one HAVE carries: (PCH_CC_MAX_PAYLOAD - 24) / 8 words */
	memset(&big, 0, sizeof(big));
	ck_assert_int_eq(pch_blocktab_add(&big, "big", 4ull << 30, 4096, PCH_BACKING_ANON, &why),
			 0);
	maxbits = (PCH_CC_MAX_PAYLOAD - sizeof(*hv)) / 8 * 64;
	hv->first_page = 0;
	hv->npages = maxbits;
	ret = pch_cc_have_check(buf, PCH_CC_MAX_PAYLOAD, &big, &why);
	CASE_CHECK("have max bits", ret, 0, why, "");
	hv->npages = maxbits + 1;
	ret = pch_cc_have_check(buf, PCH_CC_MAX_PAYLOAD + 8, &big, &why);
	CASE_CHECK("have max bits+1", ret, -E2BIG, why, "PCH_CC_MAX_PAYLOAD");
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_blocktab_add);
	tcase_add_test(tc, test_blocktab_roundtrip);
	tcase_add_test(tc, test_blocktab_decode_bad);
	tcase_add_test(tc, test_blocktab_match);
	tcase_add_test(tc, test_hello_roundtrip);
	tcase_add_test(tc, test_hello_auth_wire);
	tcase_add_test(tc, test_hello_bad_fields);
	tcase_add_test(tc, test_hello_bad_auth);
	tcase_add_test(tc, test_refuse);
	tcase_add_test(tc, test_frame_roundtrip);
	tcase_add_test(tc, test_frame_limits);
	tcase_add_test(tc, test_frame_bad_hdr);
	tcase_add_test(tc, test_frame_offsets);
	tcase_add_test(tc, test_req);
	tcase_add_test(tc, test_cc_hdr);
	tcase_add_test(tc, test_cc_have);
	tcase_add_test(tc, test_backing_names);
	suite_add_tcase(s, tc);

	/* every decoder limit from both sides; one check per table row */
	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_limits_hello, 0, (int)PCH_ARRAY_SIZE(hello_cases));
	tcase_add_loop_test(tc, test_limits_frame, 0, (int)PCH_ARRAY_SIZE(frame_cases));
	tcase_add_loop_test(tc, test_limits_offsets, 0, (int)PCH_ARRAY_SIZE(offs_cases));
	tcase_add_loop_test(tc, test_limits_req, 0, (int)PCH_ARRAY_SIZE(req_cases));
	tcase_add_loop_test(tc, test_limits_cc, 0, (int)PCH_ARRAY_SIZE(cc_cases));
	tcase_add_loop_test(tc, test_limits_answer, 0, (int)PCH_ARRAY_SIZE(answer_cases));
	tcase_add_test(tc, test_limits_blocks);
	tcase_add_test(tc, test_limits_have);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(codec_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
