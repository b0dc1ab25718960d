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
